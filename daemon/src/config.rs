//! The daemon's TOML configuration: raw serde structs, then one validation
//! pass that reports *every* problem at once, with the file and line of each.
//!
//! Loading goes in two steps, as in Vector: [`RawConfig`] mirrors the file
//! (`deny_unknown_fields` everywhere, so a typo is an error rather than a
//! silently ignored key), and [`Config::load`] turns it into a validated
//! [`Config`] whose values are ready to use (durations parsed, plugin paths
//! resolved against the config file's folder, queue references checked).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::policy::{Jitter, RetryPolicy, TreatAs};

/// Redis URL used when neither the config nor `--redis` gives one.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Parallel attempts per queue when `[[queue]] concurrency` is not given.
pub const DEFAULT_CONCURRENCY: u32 = 16;
/// Wall-clock limit of one attempt when `[[job]] timeout` is not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Visibility timeout of a delivery when `[[queue]] lease` is not given.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// The shortest lease allowed: heartbeats must fit several times into it.
pub const MIN_LEASE: Duration = Duration::from_millis(300);
/// How long an idempotency key is remembered when `[[job]] idempotency_ttl` is not given.
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Upper bound on `concurrency`; each slot reserves a pooled wasm instance.
pub const MAX_CONCURRENCY: u32 = 4096;

/// Everything that can be wrong with a config file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or does not have the expected shape.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The config file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the TOML parser or serde said.
        message: String,
    },
    /// The file parsed, but its values do not make sense together.
    #[error("{path}: {} problem(s):\n{}", .problems.len(), ProblemList(.problems))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

/// One validation problem, located at a line of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the config file (0 when the problem has no location).
    pub line: usize,
    /// What is wrong and what would be right.
    pub message: String,
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.line > 0 {
                write!(f, "  line {}: {}", p.line, p.message)?;
            } else {
                write!(f, "  {}", p.message)?;
            }
        }
        Ok(())
    }
}

/// The file as written. Field docs are the user-facing reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `[redis]`: where the queues live.
    #[serde(default)]
    pub redis: RawRedis,
    /// `[[queue]]`: the streams this daemon consumes.
    #[serde(default, rename = "queue")]
    pub queues: Vec<RawQueue>,
    /// `[[job]]`: job types, each mapped to a plugin.
    #[serde(default, rename = "job")]
    pub jobs: Vec<RawJob>,
    /// `[defaults]`: values every job type inherits unless it overrides them.
    #[serde(default)]
    pub defaults: RawDefaults,
    /// `[metrics]`: the Prometheus and health endpoint (see [`crate::obs::config`]).
    #[serde(default)]
    pub metrics: crate::obs::config::RawMetrics,
    /// `[log]`: the log level.
    #[serde(default)]
    pub log: crate::obs::config::RawLog,
    /// `[alerts]` and `[[alerts.webhook]]`.
    #[serde(default)]
    pub alerts: crate::obs::config::RawAlerts,
}

/// `[defaults]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `[defaults.retry]`: the central retry policy.
    pub retry: Option<Spanned<RawRetry>>,
}

/// A retry table (`[defaults.retry]` or a job's `retry = {..}`); every field
/// is optional and inherits from the level above.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Attempts in all, the first included.
    pub max_attempts: Option<u32>,
    /// Time from the first attempt after which no attempt starts.
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_elapsed: Option<Spanned<Duration>>,
    /// Delay after the first failure.
    #[serde(default, deserialize_with = "opt_duration")]
    pub initial_delay: Option<Spanned<Duration>>,
    /// Growth per further failure.
    pub multiplier: Option<f64>,
    /// Longest computed delay.
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_delay: Option<Spanned<Duration>>,
    /// `none | full | equal | decorrelated`.
    pub jitter: Option<Jitter>,
    /// Delay after the first recoverable failure.
    #[serde(default, deserialize_with = "opt_duration")]
    pub recoverable_initial_delay: Option<Spanned<Duration>>,
    /// How a timeout is treated: `transient | recoverable | permanent`.
    pub on_timeout: Option<TreatAs>,
    /// How a crash is treated: `transient | recoverable | permanent`.
    pub on_crash: Option<TreatAs>,
    /// Lost leases after which a job is dead-lettered as a poison pill.
    pub max_lease_expiries: Option<u32>,
}

impl RawRetry {
    /// `base` with every field this table sets replaced.
    fn over(&self, base: RetryPolicy) -> RetryPolicy {
        let d = |v: &Option<Spanned<Duration>>, b: Duration| v.as_ref().map_or(b, |s| *s.get_ref());
        RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(base.max_attempts),
            max_elapsed: d(&self.max_elapsed, base.max_elapsed),
            initial_delay: d(&self.initial_delay, base.initial_delay),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            max_delay: d(&self.max_delay, base.max_delay),
            jitter: self.jitter.unwrap_or(base.jitter),
            recoverable_initial_delay: d(
                &self.recoverable_initial_delay,
                base.recoverable_initial_delay,
            ),
            timeout_as: self.on_timeout.unwrap_or(base.timeout_as),
            crash_as: self.on_crash.unwrap_or(base.crash_as),
            max_lease_expiries: self.max_lease_expiries.unwrap_or(base.max_lease_expiries),
        }
    }
}

/// What is wrong with a resolved retry policy, one message per problem.
#[must_use]
pub fn check_retry(p: &RetryPolicy) -> Vec<String> {
    let mut out = Vec::new();
    if p.max_attempts == 0 {
        out.push(
            "max_attempts is 0; it counts the first attempt too, so use at least 1".to_string(),
        );
    }
    if !p.multiplier.is_finite() || p.multiplier < 1.0 {
        out.push(format!(
            "multiplier {} would shrink the delays; use 1.0 (constant) or more",
            p.multiplier
        ));
    }
    if p.max_delay < p.initial_delay {
        out.push(format!(
            "max_delay {} is less than initial_delay {}; raise max_delay or lower initial_delay",
            humantime::format_duration(p.max_delay),
            humantime::format_duration(p.initial_delay)
        ));
    }
    if p.max_lease_expiries == 0 {
        out.push("max_lease_expiries is 0; use at least 1".to_string());
    }
    if p.max_elapsed.is_zero() {
        out.push("max_elapsed is 0; no retry could ever fit, use e.g. \"10m\"".to_string());
    }
    out
}

/// `[redis]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`.
    pub url: Option<Spanned<String>>,
}

/// `[[queue]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    /// The queue's name; its keys are `ward:{name}:*`.
    pub name: Spanned<String>,
    /// How many attempts of this queue's jobs may run at once.
    pub concurrency: Option<Spanned<u32>>,
    /// Visibility timeout of a delivery: a delivery whose worker stopped
    /// renewing it for this long is reclaimed by another daemon.
    #[serde(default, deserialize_with = "opt_duration")]
    pub lease: Option<Spanned<Duration>>,
}

/// `[[job]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    /// The job type's name, as written in the stream entry's `job` field.
    pub name: Spanned<String>,
    /// The queue this job type is consumed from.
    pub queue: Spanned<String>,
    /// Path of the plugin component (relative to the config file's folder).
    pub plugin: Spanned<String>,
    /// Wall-clock limit of one attempt, e.g. `"10s"`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Spanned<Duration>>,
    /// Overrides of `[defaults.retry]`, field by field.
    pub retry: Option<Spanned<RawRetry>>,
    /// How long an idempotency key of this job type is remembered.
    #[serde(default, deserialize_with = "opt_duration")]
    pub idempotency_ttl: Option<Spanned<Duration>>,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<Duration>>, D::Error> {
    let raw = Spanned::<String>::deserialize(d)?;
    let span = raw.span();
    let parsed = parse_duration(raw.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(Spanned::new(span, parsed)))
}

/// Parses a duration as written in configs and on the command line
/// (`"250ms"`, `"30s"`, `"5m"`, `"1h 30m"`).
///
/// # Errors
/// Returns a message that quotes the input and shows the accepted form.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration `{s}` ({e}); write it like \"250ms\", \"30s\" or \"5m\"")
    })
}

/// A validated configuration, ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub path: PathBuf,
    /// Redis connection URL.
    pub redis_url: String,
    /// Queues in file order.
    pub queues: Vec<QueueConfig>,
    /// `[metrics]`, `[log]` and `[alerts]`.
    pub obs: crate::obs::config::ObsConfig,
}

/// One queue and the job types consumed from it.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Queue name (the `{Q}` in its keys).
    pub name: String,
    /// Maximum attempts in flight at once.
    pub concurrency: u32,
    /// Visibility timeout of a delivery (renewed while the attempt runs).
    pub lease: Duration,
    /// Job types by name.
    pub jobs: BTreeMap<String, JobConfig>,
}

/// One job type.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Job type name.
    pub name: String,
    /// Absolute (or config-relative, resolved) path of its plugin component.
    pub plugin: PathBuf,
    /// Wall-clock limit of one attempt.
    pub timeout: Duration,
    /// Retry policy: built-in defaults, then `[defaults.retry]`, then the job's `retry`.
    pub retry: RetryPolicy,
    /// How long an idempotency key is remembered (enqueue and completion).
    pub idempotency_ttl: Duration,
}

impl Config {
    /// Reads, parses and validates a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the line of each problem.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Parses and validates config text as if it had been read from `path`.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] for TOML or shape errors, [`ConfigError::Invalid`]
    /// listing every validation problem.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        validate(raw, path, base, text)
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

fn validate(raw: RawConfig, path: &Path, base: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |span: Range<usize>, message: String| {
        problems.push(Problem {
            line: line_col(text, span.start).0,
            message,
        });
    };

    let redis_url = match raw.redis.url {
        Some(url) => {
            if redis::Client::open(url.get_ref().as_str()).is_err() {
                problem(
                    url.span(),
                    format!(
                        "[redis] url `{}` is not a Redis URL; write it like \"redis://127.0.0.1:6379\"",
                        url.get_ref()
                    ),
                );
            }
            url.into_inner()
        }
        None => DEFAULT_REDIS_URL.to_string(),
    };

    let obs = crate::obs::config::validate(raw.metrics, raw.log, raw.alerts, &mut problem);

    let mut default_retry = RetryPolicy::default();
    if let Some(retry) = &raw.defaults.retry {
        default_retry = retry.get_ref().over(default_retry);
        for msg in check_retry(&default_retry) {
            problem(retry.span(), format!("[defaults.retry]: {msg}"));
        }
    }

    if raw.queues.is_empty() {
        problem(
            0..0,
            "no [[queue]] is defined; add one, e.g. [[queue]] name = \"default\"".into(),
        );
    }

    let mut queues: Vec<QueueConfig> = Vec::new();
    for q in raw.queues {
        let name = q.name.get_ref().clone();
        if let Some(msg) = check_name(&name) {
            problem(q.name.span(), format!("queue name `{name}` {msg}"));
        }
        if queues.iter().any(|other| other.name == name) {
            problem(q.name.span(), format!("queue `{name}` is defined twice"));
            continue;
        }
        let concurrency = match q.concurrency {
            Some(c) if *c.get_ref() == 0 || *c.get_ref() > MAX_CONCURRENCY => {
                problem(
                    c.span(),
                    format!(
                        "queue `{name}`: concurrency {} is out of range; use 1 to {MAX_CONCURRENCY}",
                        c.get_ref()
                    ),
                );
                DEFAULT_CONCURRENCY
            }
            Some(c) => c.into_inner(),
            None => DEFAULT_CONCURRENCY,
        };
        let lease = match q.lease {
            Some(l) if *l.get_ref() < MIN_LEASE => {
                problem(
                    l.span(),
                    format!(
                        "queue `{name}`: lease must be at least {MIN_LEASE:?}; heartbeats renew it every third of it"
                    ),
                );
                DEFAULT_LEASE
            }
            Some(l) => l.into_inner(),
            None => DEFAULT_LEASE,
        };
        queues.push(QueueConfig {
            name,
            concurrency,
            lease,
            jobs: BTreeMap::new(),
        });
    }

    let mut seen = HashSet::new();
    for j in raw.jobs {
        let name = j.name.get_ref().clone();
        let queue = j.queue.get_ref().clone();
        if name.is_empty() {
            problem(j.name.span(), "job name is empty".into());
        }
        if !seen.insert((queue.clone(), name.clone())) {
            problem(
                j.name.span(),
                format!("job `{name}` is defined twice for queue `{queue}`"),
            );
            continue;
        }
        let plugin = base.join(j.plugin.get_ref());
        if !plugin.is_file() {
            problem(
                j.plugin.span(),
                format!(
                    "job `{name}`: plugin {} does not exist (relative paths resolve against {}); build the example plugins with scripts/build-plugins",
                    plugin.display(),
                    if base.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        base
                    }
                    .display()
                ),
            );
        }
        let timeout = match j.timeout {
            Some(t) if t.get_ref().is_zero() => {
                problem(
                    t.span(),
                    format!("job `{name}`: timeout must be more than 0"),
                );
                DEFAULT_TIMEOUT
            }
            Some(t) => t.into_inner(),
            None => DEFAULT_TIMEOUT,
        };
        let retry = match &j.retry {
            Some(r) => {
                let policy = r.get_ref().over(default_retry);
                for msg in check_retry(&policy) {
                    problem(r.span(), format!("job `{name}`: retry: {msg}"));
                }
                policy
            }
            None => default_retry,
        };
        let idempotency_ttl = match j.idempotency_ttl {
            Some(t) if t.get_ref() < &Duration::from_secs(1) => {
                problem(
                    t.span(),
                    format!("job `{name}`: idempotency_ttl must be at least 1s"),
                );
                DEFAULT_IDEMPOTENCY_TTL
            }
            Some(t) => t.into_inner(),
            None => DEFAULT_IDEMPOTENCY_TTL,
        };
        match queues.iter_mut().find(|q| q.name == queue) {
            Some(q) => {
                q.jobs.insert(
                    name.clone(),
                    JobConfig {
                        name,
                        plugin,
                        timeout,
                        retry,
                        idempotency_ttl,
                    },
                );
            }
            None => {
                let known: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
                problem(
                    j.queue.span(),
                    format!(
                        "job `{name}` names queue `{queue}`, which no [[queue]] defines (defined: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }

    if problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            redis_url,
            queues,
            obs,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// Queue names become part of Redis keys inside a `{hash tag}`, so braces and
/// whitespace would break the key layout; returns what is wrong, if anything.
#[must_use]
pub fn check_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.len() > 128 {
        Some("is longer than 128 characters")
    } else if name
        .chars()
        .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control())
    {
        Some("may not contain braces, whitespace or control characters")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/nonexistent/ward.toml"), text)
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = load("[redis]\nurl = \"redis://127.0.0.1:1\"\nport = 5\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/nonexistent/ward.toml:3:"), "{msg}");
        assert!(msg.contains("unknown field `port`"), "{msg}");
    }

    #[test]
    fn syntax_error_names_line() {
        let err = load("[[queue]]\nname = \"a\"\nconcurrency = = 3\n").unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/ward.toml:3:"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(
            "[[queue]]\nname = \"q\"\nconcurrency = 0\n\n[[job]]\nname = \"a\"\nqueue = \"nope\"\nplugin = \"missing.wasm\"\n",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![3, 7, 8], "{problems:?}");
        assert!(problems[1].message.contains("defined: q"), "{problems:?}");
        assert!(problems[2].message.contains("missing.wasm"), "{problems:?}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let err = load(
            "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"x\"\ntimeout = \"ten\"\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(":7:") && msg.contains("\"30s\""), "{msg}");
    }

    fn job_with(retry_defaults: &str, job_retry: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!(
                "[defaults.retry]\n{retry_defaults}\n[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job_retry}\n"
            ),
        )
    }

    #[test]
    fn job_retry_overrides_defaults_field_by_field() {
        let cfg = job_with(
            "max_attempts = 4\ninitial_delay = \"100ms\"\njitter = \"none\"",
            "retry = { max_attempts = 9, on_crash = \"transient\" }",
        )
        .unwrap();
        let p = cfg.queues[0].jobs["a"].retry;
        assert_eq!(p.max_attempts, 9, "the job's own value wins");
        assert_eq!(
            p.initial_delay,
            Duration::from_millis(100),
            "inherited from [defaults.retry]"
        );
        assert_eq!(p.jitter, Jitter::None);
        assert_eq!(p.crash_as, TreatAs::Transient);
        assert_eq!(
            p.max_delay,
            RetryPolicy::default().max_delay,
            "built-in default"
        );
    }

    #[test]
    fn nonsense_retry_values_are_rejected_with_reasons() {
        let err = job_with(
            "multiplier = 0.5",
            "retry = { max_attempts = 0, initial_delay = \"10s\", max_delay = \"1s\" }",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("[defaults.retry]: multiplier 0.5"), "{msg}");
        assert!(msg.contains("job `a`: retry: max_attempts is 0"), "{msg}");
        assert!(
            msg.contains("max_delay 1s is less than initial_delay 10s"),
            "{msg}"
        );
        let err = job_with("jitter = \"fullish\"", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains(":2:") && err.contains("decorrelated"), "{err}");
    }

    #[test]
    fn queue_names_with_braces_are_rejected() {
        assert!(check_name("a}b").is_some());
        assert!(check_name("emails").is_none());
    }

    #[test]
    fn plugin_paths_resolve_against_the_config_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        let cfg = Config::from_toml(
            &dir.path().join("ward.toml"),
            "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n",
        )
        .unwrap();
        assert_eq!(cfg.queues[0].jobs["a"].plugin, dir.path().join("p.wasm"));
        assert_eq!(cfg.queues[0].concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(cfg.redis_url, DEFAULT_REDIS_URL);
    }
}
