//! Validation, one file per section. Each section checks its tables and
//! reports every problem through `problem(span, message)`; [`validate`]
//! collects them all, locates each at its line, and fails only at the end,
//! so one run shows everything that is wrong.
//!
//! Sections run in a fixed order (problems on the same line keep it): the
//! upper bounds of every duration and size (`bounds.rs`), then redis,
//! observability, retry defaults, dead-letter defaults, daemon, queues,
//! jobs, breakers, schedules, admin.

pub(super) mod admin;
mod bounds;
mod breakers;
mod certs;
mod daemon;
mod jobs;
pub(super) mod observability;
mod outputs;
mod queues;
mod redis;
mod retry;
mod schedules;
mod upstreams;

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

pub use jobs::check_plugin_file;
pub use queues::check_name;
pub use retry::check_retry;

use super::raw::RawConfig;
use super::{Config, ConfigError, Problem, line_col};

/// Turns the file as written into a [`Config`], or lists every problem.
pub(super) fn validate(
    raw: RawConfig,
    path: &Path,
    base: &Path,
    text: &str,
) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |span: Range<usize>, message: String| {
        problems.push(Problem {
            line: line_col(text, span.start).0,
            message,
        });
    };

    bounds::check(&raw, &mut problem);
    let (redis_url, redis_ca) = redis::redis(raw.redis, base, &mut problem);
    let mut obs = observability::validate(raw.metrics, raw.log, raw.alerts, base, &mut problem);
    obs.tracing = observability::tracing(raw.tracing, &mut problem);
    let default_retry = retry::defaults(raw.defaults.retry.as_ref(), &mut problem);
    let default_payload_max =
        queues::default_payload_max(raw.defaults.dead_payload_max.as_ref(), &mut problem);
    let mut raw_daemon = raw.daemon;
    let compile_cache = daemon::compile_cache(raw_daemon.compile_cache.take(), base, &mut problem);
    let pid_file = raw_daemon
        .pid_file
        .take()
        .map(|p| base.join(p.into_inner()));
    let perf_map = daemon::perf_map(raw_daemon.profiler.take(), &mut problem);
    let slot_pages = daemon::slot_pages(raw_daemon.slot_pages.take(), &mut problem);
    let threads = daemon::threads(raw_daemon, &mut problem);
    let mut queues = queues::queues(raw.queues, default_payload_max, &mut problem);
    jobs::jobs(raw.jobs, base, default_retry, &mut queues, &mut problem);
    let breaker = breakers::breaker(raw.defaults.breaker.as_ref(), &mut problem);
    let schedules = schedules::schedules(raw.schedules, &queues, &mut problem);
    let admin = admin::validate(raw.admin, &mut problem);
    let upstreams = upstreams::upstreams(raw.upstreams, breaker, &mut problem);

    if problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            redis_url,
            redis_ca,
            queues,
            obs,
            threads,
            compile_cache,
            perf_map,
            slot_pages,
            pid_file,
            schedules,
            breaker,
            admin,
            upstreams,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// `value` when it is given and `why` finds nothing wrong with it; else
/// `default`, after reporting `why`'s message at the value.
fn checked<T>(
    value: Option<Spanned<T>>,
    default: T,
    problem: &mut dyn FnMut(Range<usize>, String),
    why: impl FnOnce(&T) -> Option<String>,
) -> T {
    let Some(value) = value else {
        return default;
    };
    match why(value.get_ref()) {
        Some(message) => {
            problem(value.span(), message);
            default
        }
        None => value.into_inner(),
    }
}
