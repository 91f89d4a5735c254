//! `[[job]]` tables: the plugin, its limits and sandbox, its retry policy,
//! and the queue it belongs to.

use crate::fairness::GroupLimit;
use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::outputs::{Then, results, stages};
use super::{checked, retry};
use crate::config::defaults::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_IDEMPOTENCY_TTL, DEFAULT_MEMORY_LIMIT, DEFAULT_OUTPUT_LIMIT,
    DEFAULT_TIMEOUT, MAX_MEMORY_LIMIT, MAX_OUTPUT_LIMIT, MAX_REUSE_INSTANCE, MIN_MEMORY_LIMIT,
};
use crate::config::raw::{RawHttp, RawJob};
use crate::config::units::parse_size;
use crate::config::{HttpPolicy, JobConfig, QueueConfig};
use crate::policy::RetryPolicy;
use crate::redact::FieldPath;

/// Checks every job type and adds it to its queue in `queues`; plugin paths
/// resolve against `base`, retry tables over `default_retry`.
pub(super) fn jobs(
    raw: Vec<RawJob>,
    base: &Path,
    default_retry: RetryPolicy,
    queues: &mut [QueueConfig],
    problem: &mut dyn FnMut(Range<usize>, String),
) {
    let mut seen = HashSet::new();
    let mut thens = Vec::new();
    for j in raw {
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
        let job = job(&j, name, base, default_retry, problem);
        if let Some(next) = j.then.clone() {
            thens.push(Then {
                job: job.name.clone(),
                queue: queue.clone(),
                next,
            });
        }
        match queues.iter_mut().find(|q| q.name == queue) {
            Some(q) => {
                q.jobs.insert(job.name.clone(), job);
            }
            None => {
                let known: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
                problem(
                    j.queue.span(),
                    format!(
                        "job `{}` names queue `{queue}`, which no [[queue]] defines (defined: {})",
                        job.name,
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
    stages(&thens, queues, problem);
}

/// One job type, checked key by key in the order of the table's fields.
fn job(
    j: &RawJob,
    name: String,
    base: &Path,
    default_retry: RetryPolicy,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> JobConfig {
    let plugin = plugin(&j.plugin, &name, base, problem);
    let timeout = checked(j.timeout.clone(), DEFAULT_TIMEOUT, problem, |t| {
        t.is_zero()
            .then(|| format!("job `{name}`: timeout must be more than 0"))
    });
    let retry = retry::job(j.retry.as_ref(), default_retry, &name, problem);
    let idempotency_ttl = checked(
        j.idempotency_ttl.clone(),
        DEFAULT_IDEMPOTENCY_TTL,
        problem,
        |t| {
            (*t < Duration::from_secs(1))
                .then(|| format!("job `{name}`: idempotency_ttl must be at least 1s"))
        },
    );
    let memory_limit = size(
        j.memory_limit.as_ref(),
        DEFAULT_MEMORY_LIMIT,
        MIN_MEMORY_LIMIT..=MAX_MEMORY_LIMIT,
        &format!("job `{name}`: memory_limit"),
        problem,
    );
    let output_limit = size(
        j.output_limit.as_ref(),
        DEFAULT_OUTPUT_LIMIT,
        0..=MAX_OUTPUT_LIMIT,
        &format!("job `{name}`: output_limit"),
        problem,
    );
    let fuel = match &j.fuel {
        Some(f) if *f.get_ref() == 0 => {
            problem(
                f.span(),
                format!(
                    "job `{name}`: fuel 0 could not run a single instruction; leave it out for no fuel limit"
                ),
            );
            None
        }
        Some(f) => Some(*f.get_ref()),
        None => None,
    };
    let reuse_instance = match &j.reuse_instance {
        Some(r) if !(1..=MAX_REUSE_INSTANCE).contains(r.get_ref()) => {
            problem(
                r.span(),
                format!(
                    "job `{name}`: reuse_instance {} is out of range; use 1 (a fresh instance per attempt, the default) to {MAX_REUSE_INSTANCE}",
                    r.get_ref()
                ),
            );
            1
        }
        Some(r) => *r.get_ref(),
        None => 1,
    };
    let http = j
        .http
        .as_ref()
        .map_or_else(HttpPolicy::default, |h| http(h, &name, base, problem));
    JobConfig {
        plugin,
        timeout,
        retry,
        idempotency_ttl,
        memory_limit,
        fuel,
        output_limit,
        reuse_instance,
        http,
        secrets: secrets(j.secrets.as_ref(), &name, problem),
        redact: redact(j.redact.as_ref(), &name, problem),
        upstreams: upstreams(j.upstreams.as_ref(), &name, problem),
        group: group(j, &name, problem),
        results: results(j, &name, problem),
        then: None,
        name,
    }
}

/// `group_by` with `group_concurrency`: both or neither.
fn group(
    j: &RawJob,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<GroupLimit> {
    match (&j.group_by, &j.group_concurrency) {
        (None, None) => None,
        (Some(f), None) => {
            problem(
                f.span(),
                format!(
                    "job `{name}`: group_by needs group_concurrency, the most attempts of one group in flight at once, e.g. group_concurrency = 4"
                ),
            );
            None
        }
        (None, Some(c)) => {
            problem(
                c.span(),
                format!(
                    "job `{name}`: group_concurrency needs group_by, the field that names the group, e.g. group_by = \"tenant\""
                ),
            );
            None
        }
        (Some(f), Some(c)) => {
            let field = f.get_ref().clone();
            let concurrency = *c.get_ref();
            // Ward's own entry fields (`store::fields::RESERVED_PREFIX`;
            // config sits below the store, so it is spelled out here).
            if field.is_empty()
                || field.starts_with("ward:")
                || field == "job"
                || field == "payload"
            {
                problem(
                    f.span(),
                    format!(
                        "job `{name}`: group_by `{field}` must name a correlation field of the entry (not `job`, `payload` or a `ward:` field)"
                    ),
                );
                return None;
            }
            if concurrency == 0 {
                problem(
                    c.span(),
                    format!("job `{name}`: group_concurrency 0 would run nothing; use 1 or more"),
                );
                return None;
            }
            Some(GroupLimit { field, concurrency })
        }
    }
}

/// The plugin's path, resolved against the config's folder; it must be a
/// regular file (a directory or `/dev/null` exists but is no plugin).
fn plugin(
    raw: &Spanned<String>,
    name: &str,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> PathBuf {
    let plugin = base.join(raw.get_ref());
    if let Err(why) = check_plugin_file(&plugin) {
        problem(
            raw.span(),
            format!(
                "job `{name}`: plugin {} {why} (relative paths resolve against {}); build the example plugins with scripts/build-plugins",
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
    plugin
}

/// Whether `path` can be a plugin: an existing regular file. The error says
/// what it is instead ("does not exist", "is a directory, not a regular
/// file", ...), to follow the path in a message.
///
/// # Errors
/// What is wrong with the path, worded to follow it.
pub fn check_plugin_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) if m.is_dir() => Err("is a directory, not a regular file".into()),
        Ok(_) => Err("is not a regular file (a device, pipe or socket)".into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("does not exist".into()),
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

/// A size key (`"64MiB"`) within `range` bytes; `key` names it in messages.
pub(super) fn size(
    raw: Option<&Spanned<String>>,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
    key: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> usize {
    let Some(text) = raw else {
        return default;
    };
    match parse_size(text.get_ref()) {
        Ok(n) if range.contains(&n) => n,
        Ok(_) => {
            problem(
                text.span(),
                format!(
                    "{key} `{}` is out of range ({} to {} bytes)",
                    text.get_ref(),
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Err(e) => {
            problem(text.span(), format!("{key}: {e}"));
            default
        }
    }
}

/// The `http` table: its allow-list, timeout, pool bounds, extra CA
/// certificates (`ca_file`, relative to `base`) and HTTP/2.
fn http(
    raw: &Spanned<RawHttp>,
    name: &str,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> HttpPolicy {
    let h = raw.get_ref();
    let timeout = h
        .timeout
        .as_ref()
        .map_or(DEFAULT_HTTP_TIMEOUT, |t| *t.get_ref());
    let mut policy = HttpPolicy::new(&h.allow, timeout).unwrap_or_else(|e| {
        problem(raw.span(), format!("job `{name}`: {e}"));
        HttpPolicy::default()
    });
    if let Some(n) = &h.pool_max_idle {
        policy.pool_max_idle = *n.get_ref() as usize;
    }
    if let Some(t) = &h.pool_idle_timeout {
        if t.get_ref().is_zero() {
            problem(
                t.span(),
                format!(
                    "job `{name}`: http.pool_idle_timeout must be above 0 (use pool_max_idle = 0 to keep no idle connection)"
                ),
            );
        }
        policy.pool_idle_timeout = *t.get_ref();
    }
    if let Some(f) = &h.ca_file {
        let file = base.join(f.get_ref());
        match super::certs::ca_roots(&file) {
            Ok(roots) => policy.extra_roots = crate::config::http::Roots(roots),
            Err(e) => problem(
                f.span(),
                format!("job `{name}`: http.ca_file {}: {e}", file.display()),
            ),
        }
    }
    policy.http2 = h.http2.unwrap_or(false);
    policy
}

/// Secret names: plain names, never paths (they name credential files).
fn secrets(
    raw: Option<&Spanned<Vec<String>>>,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Vec<String> {
    let Some(list) = raw else {
        return Vec::new();
    };
    for secret in list.get_ref() {
        if secret.is_empty() || secret.contains(['/', '\\']) || secret.starts_with('.') {
            problem(
                list.span(),
                format!(
                    "job `{name}`: secret name `{secret}` must be a plain name like MAILER_TOKEN"
                ),
            );
        }
    }
    list.get_ref().clone()
}

/// The `redact` list: top-level keys or JSON pointers.
fn redact(
    raw: Option<&Spanned<Vec<String>>>,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Vec<FieldPath> {
    let Some(list) = raw else {
        return Vec::new();
    };
    let mut report = |msg| problem(list.span(), format!("job `{name}`: redact: {msg}"));
    list.get_ref()
        .iter()
        .filter_map(|entry| FieldPath::parse(entry).map_err(&mut report).ok())
        .collect()
}

/// Upstream names, each once; they become part of breaker keys, so no
/// whitespace or braces.
fn upstreams(
    raw: Option<&Spanned<Vec<String>>>,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Vec<String> {
    let mut upstreams = Vec::new();
    if let Some(list) = raw {
        for u in list.get_ref() {
            if u.is_empty() || u.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') {
                problem(
                    list.span(),
                    format!(
                        "job `{name}`: upstream name `{u}` must be non-empty, without whitespace or braces"
                    ),
                );
            } else if !upstreams.contains(u) {
                upstreams.push(u.clone());
            }
        }
    }
    upstreams
}
