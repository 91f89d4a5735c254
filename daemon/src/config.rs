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
use std::str::FromStr as _;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::policy::{Jitter, RetryPolicy, TreatAs};
use crate::redact::FieldPath;
use crate::runtime::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_MEMORY_LIMIT, DEFAULT_OUTPUT_LIMIT, HttpPolicy,
};

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
/// Most threads `[daemon] threads` may ask for.
pub const MAX_THREADS: i64 = 1024;
/// How often the daemon applies a queue's dead-letter retention when
/// `[[queue]] dead_trim_interval` is not given.
pub const DEFAULT_DEAD_TRIM_INTERVAL: Duration = Duration::from_secs(30);

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
    /// `[daemon]`: the process itself.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `[[schedule]]`: jobs enqueued on a cron schedule.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<RawSchedule>,
}

/// `[[schedule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Unique name; part of each fire's idempotency key.
    pub name: Spanned<String>,
    /// `sec min hour day-of-month month day-of-week [year]`, in UTC.
    pub cron: Spanned<String>,
    /// The queue to enqueue on.
    pub queue: Spanned<String>,
    /// The job type to enqueue.
    pub job: Spanned<String>,
    /// The payload of every job it enqueues (default: empty).
    #[serde(default)]
    pub payload: String,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Threads that run attempts and talk to Redis.
    pub threads: Option<Spanned<i64>>,
}

/// `[defaults]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// `[defaults.retry]`: the central retry policy.
    pub retry: Option<Spanned<RawRetry>>,
    /// Largest payload (bytes) copied into a dead-letter entry, for queues
    /// that do not set their own.
    pub dead_payload_max: Option<Spanned<i64>>,
    /// `[defaults.breaker]`: when an upstream's circuit breaker opens.
    pub breaker: Option<Spanned<RawBreaker>>,
}

/// `[defaults.breaker]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Failures blamed on one upstream, within `window`, that open its breaker.
    pub failures: Option<i64>,
    /// The window those failures are counted in.
    #[serde(default, deserialize_with = "opt_plain_duration")]
    pub window: Option<Duration>,
    /// How long an open breaker holds back the jobs that need its upstream.
    #[serde(default, deserialize_with = "opt_plain_duration")]
    pub open_for: Option<Duration>,
}

/// When an upstream's circuit breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// Failures within `window` that open it.
    pub failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long it stays open.
    pub open_for: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            window: Duration::from_secs(60),
            open_for: Duration::from_secs(30),
        }
    }
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
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: Option<Spanned<String>>,
    /// PEM file of the CA certificates a `rediss://` server's certificate
    /// must chain to, instead of the system's roots.
    pub ca_file: Option<Spanned<String>>,
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
    /// How long the record of a succeeded job is kept; `"0s"` keeps none.
    #[serde(default, deserialize_with = "opt_duration")]
    pub succeeded_ttl: Option<Spanned<Duration>>,
    /// Keep at most this many dead letters; the oldest are trimmed first.
    pub dead_max_len: Option<Spanned<i64>>,
    /// Trim dead letters older than this (by the time they were dead-lettered).
    #[serde(default, deserialize_with = "opt_duration")]
    pub dead_max_age: Option<Spanned<Duration>>,
    /// How often the daemon applies the two limits above (default 30 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub dead_trim_interval: Option<Spanned<Duration>>,
    /// Largest payload (bytes) copied into a dead-letter entry; a larger one
    /// is replaced by a marker (the job record keeps it).
    pub dead_payload_max: Option<Spanned<i64>>,
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
    /// Linear memory one instance may use, e.g. `"64MiB"`.
    pub memory_limit: Option<Spanned<String>>,
    /// Deterministic CPU budget per attempt (wasm fuel units).
    pub fuel: Option<Spanned<u64>>,
    /// Captured stdout/stderr kept per attempt and stream, e.g. `"64KiB"`.
    pub output_limit: Option<Spanned<String>>,
    /// Outbound HTTP: `{ allow = ["host:port", ...], timeout = "10s" }`.
    pub http: Option<Spanned<RawHttp>>,
    /// Secrets this job type may read with `host.secret(name)`.
    pub secrets: Option<Spanned<Vec<String>>>,
    /// Payload fields never shown in dead-letter entries: top-level keys
    /// (`"password"`) or JSON pointers (`"/card/number"`).
    pub redact: Option<Spanned<Vec<String>>>,
    /// The upstreams (named dependencies) this job type calls; their circuit
    /// breakers hold its jobs back while open.
    pub upstreams: Option<Spanned<Vec<String>>>,
}

/// A job's `http` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// `host:port` entries requests may go to; nothing else is reachable.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Host-side limit of one request.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Spanned<Duration>>,
}

/// Parses a size as written in configs: `"64MiB"`, `"512KiB"`, `"1GB"`, `"4096"`.
///
/// # Errors
/// A message quoting the input and showing the accepted form.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let unit_size: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        _ => {
            return Err(format!(
                "invalid size `{s}`; write it like \"64MiB\", \"512KiB\" or \"1GiB\""
            ));
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit_size))
        .ok_or_else(|| {
            format!("invalid size `{s}`; write it like \"64MiB\", \"512KiB\" or \"1GiB\"")
        })
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Spanned<Duration>>, D::Error> {
    let raw = Spanned::<String>::deserialize(d)?;
    let span = raw.span();
    let parsed = parse_duration(raw.get_ref()).map_err(serde::de::Error::custom)?;
    Ok(Some(Spanned::new(span, parsed)))
}

fn opt_plain_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let raw = String::deserialize(d)?;
    parse_duration(&raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
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
    /// `[redis] ca_file`, resolved against the config's folder.
    pub redis_ca: Option<PathBuf>,
    /// Queues in file order.
    pub queues: Vec<QueueConfig>,
    /// `[metrics]`, `[log]` and `[alerts]`.
    pub obs: crate::obs::config::ObsConfig,
    /// `[daemon] threads`, when set.
    pub threads: Option<usize>,
    /// `[[schedule]]` tables in file order.
    pub schedules: Vec<ScheduleConfig>,
    /// `[defaults.breaker]`.
    pub breaker: BreakerPolicy,
}

/// A job enqueued on a cron schedule.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// The cron expression as written.
    pub cron: String,
    /// The parsed expression (UTC).
    pub schedule: cron::Schedule,
    /// Queue name.
    pub queue: String,
    /// Job type.
    pub job: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl Config {
    /// How many threads run attempts: `[daemon] threads`, else one less than
    /// the CPUs this process may use (at least one). On a small host, Redis,
    /// the kernel's network work and the rest of the machine need a core,
    /// and handing tasks between threads costs more than a second thread
    /// gains for short jobs.
    #[must_use]
    pub fn worker_threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1)
        })
    }
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
    /// How long the record of a succeeded job is kept (zero: not at all).
    pub succeeded_ttl: Duration,
    /// Job types by name.
    pub jobs: BTreeMap<String, JobConfig>,
    /// What happens to this queue's dead letters.
    pub dead: DeadLetterConfig,
}

/// A queue's dead-letter settings: retention and how much payload to copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// `dead_max_len`: keep at most this many entries (`None`: no limit).
    pub max_len: Option<u64>,
    /// `dead_max_age`: trim entries dead-lettered longer ago (`None`: no limit).
    pub max_age: Option<Duration>,
    /// `dead_trim_interval`: how often retention is applied.
    pub trim_interval: Duration,
    /// `dead_payload_max`: larger payloads are replaced by a marker.
    pub payload_max: usize,
}

impl DeadLetterConfig {
    /// Whether any retention limit is set (else nothing is ever trimmed).
    #[must_use]
    pub fn has_retention(&self) -> bool {
        self.max_len.is_some() || self.max_age.is_some()
    }
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig {
            max_len: None,
            max_age: None,
            trim_interval: DEFAULT_DEAD_TRIM_INTERVAL,
            payload_max: crate::redact::DEFAULT_DEAD_PAYLOAD_MAX,
        }
    }
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
    /// Linear memory limit of one instance, bytes.
    pub memory_limit: usize,
    /// Fuel per attempt, if metered.
    pub fuel: Option<u64>,
    /// Captured output kept per attempt and stream, bytes.
    pub output_limit: usize,
    /// Where outbound HTTP may go, and its timeout.
    pub http: HttpPolicy,
    /// Names of the secrets granted (values are read when the daemon starts).
    pub secrets: Vec<String>,
    /// Payload fields replaced by `"[redacted]"` in dead-letter entries.
    pub redact: Vec<FieldPath>,
    /// Upstreams whose circuit breakers hold this job type back.
    pub upstreams: Vec<String>,
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
                        "[redis] url `{}` is not a Redis URL; write it like \"redis://127.0.0.1:6379\" (or rediss:// for TLS)",
                        url.get_ref()
                    ),
                );
            }
            url.into_inner()
        }
        None => DEFAULT_REDIS_URL.to_string(),
    };
    let redis_ca = raw.redis.ca_file.map(|f| {
        let file = base.join(f.get_ref());
        match std::fs::read_to_string(&file) {
            Ok(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {}
            Ok(_) => problem(
                f.span(),
                format!(
                    "[redis] ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    file.display()
                ),
            ),
            Err(e) => problem(
                f.span(),
                format!("[redis] ca_file {}: cannot read it: {e}", file.display()),
            ),
        }
        if !redis_url.starts_with("rediss://") {
            problem(
                f.span(),
                "[redis] ca_file is only used with a rediss:// url; write the url as rediss://host:port for TLS, or remove ca_file".to_string(),
            );
        }
        file
    });

    let obs = crate::obs::config::validate(raw.metrics, raw.log, raw.alerts, &mut problem);

    let mut default_retry = RetryPolicy::default();
    if let Some(retry) = &raw.defaults.retry {
        default_retry = retry.get_ref().over(default_retry);
        for msg in check_retry(&default_retry) {
            problem(retry.span(), format!("[defaults.retry]: {msg}"));
        }
    }

    let default_payload_max = match raw.defaults.dead_payload_max {
        Some(m) => payload_max(&m, "[defaults]", &mut problem),
        None => crate::redact::DEFAULT_DEAD_PAYLOAD_MAX,
    };

    let threads = match raw.daemon.threads {
        Some(t) if !(1..=MAX_THREADS).contains(t.get_ref()) => {
            problem(
                t.span(),
                format!(
                    "[daemon] threads {} is out of range; use 1 to {MAX_THREADS}, or leave it out for one less than the CPU count",
                    t.get_ref()
                ),
            );
            None
        }
        Some(t) => usize::try_from(t.into_inner()).ok(),
        None => None,
    };

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
        let dead = dead_letter_config(&q, &name, default_payload_max, &mut problem);
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
        let succeeded_ttl = match q.succeeded_ttl {
            Some(t) if t.get_ref().subsec_nanos() != 0 => {
                problem(
                    t.span(),
                    format!(
                        "queue `{name}`: succeeded_ttl must be whole seconds (records expire by the second); use \"0s\" to keep no record of succeeded jobs"
                    ),
                );
                crate::queue::SUCCEEDED_TTL
            }
            Some(t) => t.into_inner(),
            None => crate::queue::SUCCEEDED_TTL,
        };
        queues.push(QueueConfig {
            name,
            concurrency,
            lease,
            succeeded_ttl,
            jobs: BTreeMap::new(),
            dead,
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
        let mut size = |v: &Option<Spanned<String>>,
                        default: usize,
                        min: usize,
                        max: usize,
                        key: &str| match v {
            None => default,
            Some(text) => match parse_size(text.get_ref()) {
                Ok(n) if (min..=max).contains(&n) => n,
                Ok(_) => {
                    problem(
                        text.span(),
                        format!(
                            "job `{name}`: {key} `{}` is out of range ({min} to {max} bytes)",
                            text.get_ref()
                        ),
                    );
                    default
                }
                Err(e) => {
                    problem(text.span(), format!("job `{name}`: {key}: {e}"));
                    default
                }
            },
        };
        let memory_limit = size(
            &j.memory_limit,
            DEFAULT_MEMORY_LIMIT,
            1 << 20,
            4 << 30,
            "memory_limit",
        );
        let output_limit = size(
            &j.output_limit,
            DEFAULT_OUTPUT_LIMIT,
            0,
            16 << 20,
            "output_limit",
        );
        let fuel = match j.fuel {
            Some(f) if *f.get_ref() == 0 => {
                problem(
                    f.span(),
                    format!(
                        "job `{name}`: fuel 0 could not run a single instruction; leave it out for no fuel limit"
                    ),
                );
                None
            }
            Some(f) => Some(f.into_inner()),
            None => None,
        };
        let http = match &j.http {
            None => HttpPolicy::default(),
            Some(h) => {
                let timeout = h
                    .get_ref()
                    .timeout
                    .as_ref()
                    .map_or(DEFAULT_HTTP_TIMEOUT, |t| *t.get_ref());
                HttpPolicy::new(&h.get_ref().allow, timeout).unwrap_or_else(|e| {
                    problem(h.span(), format!("job `{name}`: {e}"));
                    HttpPolicy::default()
                })
            }
        };
        let secrets = match &j.secrets {
            None => Vec::new(),
            Some(list) => {
                for secret in list.get_ref() {
                    if secret.is_empty() || secret.contains(['/', '\\']) || secret.starts_with('.')
                    {
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
        };
        let mut redact = Vec::new();
        if let Some(list) = &j.redact {
            for entry in list.get_ref() {
                match FieldPath::parse(entry) {
                    Ok(f) => redact.push(f),
                    Err(msg) => problem(list.span(), format!("job `{name}`: redact: {msg}")),
                }
            }
        }
        let mut upstreams = Vec::new();
        if let Some(list) = &j.upstreams {
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
                        memory_limit,
                        fuel,
                        output_limit,
                        http,
                        secrets,
                        redact,
                        upstreams,
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

    let mut breaker = BreakerPolicy::default();
    if let Some(b) = &raw.defaults.breaker {
        let r = b.get_ref();
        if let Some(f) = r.failures {
            match u32::try_from(f) {
                Ok(f) if f >= 1 => breaker.failures = f,
                _ => problem(
                    b.span(),
                    format!("[defaults.breaker]: failures {f} is out of range; use 1 or more"),
                ),
            }
        }
        if let Some(w) = r.window {
            breaker.window = w;
        }
        if let Some(o) = r.open_for {
            breaker.open_for = o;
        }
        if breaker.window < Duration::from_millis(100)
            || breaker.open_for < Duration::from_millis(100)
        {
            problem(
                b.span(),
                "[defaults.breaker]: window and open_for must be at least 100ms".to_string(),
            );
        }
    }

    let mut schedules: Vec<ScheduleConfig> = Vec::new();
    for sc in raw.schedules {
        let name = sc.name.get_ref().clone();
        if name.is_empty() || name.contains(char::is_whitespace) {
            problem(
                sc.name.span(),
                format!("schedule name `{name}` must be non-empty, without whitespace"),
            );
        }
        if schedules.iter().any(|other| other.name == name) {
            problem(
                sc.name.span(),
                format!("schedule `{name}` is defined twice"),
            );
            continue;
        }
        let schedule = match cron::Schedule::from_str(sc.cron.get_ref()) {
            Ok(s) => Some(s),
            Err(e) => {
                problem(
                    sc.cron.span(),
                    format!(
                        "schedule `{name}`: cron `{}` does not parse ({e}); write six fields, seconds first, in UTC: \"0 0 3 * * *\" is 03:00:00 every day",
                        sc.cron.get_ref()
                    ),
                );
                None
            }
        };
        let queue = sc.queue.get_ref().clone();
        let job = sc.job.get_ref().clone();
        match queues.iter().find(|q| q.name == queue) {
            None => problem(
                sc.queue.span(),
                format!("schedule `{name}` names queue `{queue}`, which no [[queue]] defines"),
            ),
            Some(q) if !q.jobs.contains_key(&job) => problem(
                sc.job.span(),
                format!(
                    "schedule `{name}` names job `{job}`, which no [[job]] of queue `{queue}` defines"
                ),
            ),
            Some(_) => {}
        }
        if let Some(schedule) = schedule {
            schedules.push(ScheduleConfig {
                name,
                cron: sc.cron.into_inner(),
                schedule,
                queue,
                job,
                payload: sc.payload.into_bytes(),
            });
        }
    }

    if problems.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            redis_url,
            redis_ca,
            queues,
            obs,
            threads,
            schedules,
            breaker,
        })
    } else {
        problems.sort_by_key(|p| p.line);
        Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }
}

/// A queue's `dead_*` keys, checked: lengths at least 1, durations above 0.
fn dead_letter_config(
    q: &RawQueue,
    name: &str,
    default_payload_max: usize,
    problem: &mut impl FnMut(Range<usize>, String),
) -> DeadLetterConfig {
    let mut dead = DeadLetterConfig {
        payload_max: default_payload_max,
        ..DeadLetterConfig::default()
    };
    if let Some(len) = &q.dead_max_len {
        match u64::try_from(*len.get_ref()) {
            Ok(n) if n >= 1 => dead.max_len = Some(n),
            _ => problem(
                len.span(),
                format!(
                    "queue `{name}`: dead_max_len {} keeps no dead letter; use 1 or more, or leave it out for no limit",
                    len.get_ref()
                ),
            ),
        }
    }
    if let Some(age) = &q.dead_max_age {
        if age.get_ref().is_zero() {
            problem(
                age.span(),
                format!(
                    "queue `{name}`: dead_max_age must be more than 0, e.g. \"30d\"; leave it out for no limit"
                ),
            );
        } else {
            dead.max_age = Some(*age.get_ref());
        }
    }
    if let Some(every) = &q.dead_trim_interval {
        if every.get_ref().is_zero() {
            problem(
                every.span(),
                format!("queue `{name}`: dead_trim_interval must be more than 0, e.g. \"30s\""),
            );
        } else {
            dead.trim_interval = *every.get_ref();
        }
    }
    if let Some(m) = &q.dead_payload_max {
        dead.payload_max = payload_max(m, &format!("queue `{name}`"), problem);
    }
    dead
}

/// A `dead_payload_max` value: a byte count of at least 0.
fn payload_max(
    m: &Spanned<i64>,
    at: &str,
    problem: &mut impl FnMut(Range<usize>, String),
) -> usize {
    match usize::try_from(*m.get_ref()) {
        Ok(n) => n,
        Err(_) => {
            problem(
                m.span(),
                format!(
                    "{at}: dead_payload_max {} is not a size in bytes; use e.g. 65536",
                    m.get_ref()
                ),
            );
            crate::redact::DEFAULT_DEAD_PAYLOAD_MAX
        }
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
    fn threads_are_checked_and_default_to_one_less_than_the_cpus() {
        let err = load("[daemon]\nthreads = 0\n[[queue]]\nname = \"q\"\n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems[0].line, 2, "{problems:?}");
        assert!(
            problems[0].message.contains("use 1 to 1024"),
            "{problems:?}"
        );

        let cfg = load("[daemon]\nthreads = 3\n[[queue]]\nname = \"q\"\n").unwrap();
        assert_eq!(cfg.worker_threads(), 3);
        let cfg = load("[[queue]]\nname = \"q\"\n").unwrap();
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        assert_eq!(cfg.worker_threads(), cpus.saturating_sub(1).max(1));
    }

    #[test]
    fn succeeded_ttl_is_whole_seconds_and_defaults_to_a_day() {
        let err = load("[[queue]]\nname = \"q\"\nsucceeded_ttl = \"1500ms\"\n").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(
            problems[0].message.contains("whole seconds"),
            "{problems:?}"
        );
        let cfg = load("[[queue]]\nname = \"q\"\nsucceeded_ttl = \"0s\"\n").unwrap();
        assert_eq!(cfg.queues[0].succeeded_ttl, Duration::ZERO);
        let cfg = load("[[queue]]\nname = \"q\"\n").unwrap();
        assert_eq!(cfg.queues[0].succeeded_ttl, crate::queue::SUCCEEDED_TTL);
    }

    #[test]
    fn a_schedule_names_a_valid_cron_and_a_job_of_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        let load = |schedule: &str| {
            Config::from_toml(
                &dir.path().join("ward.toml"),
                &format!(
                    "[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n[[schedule]]\nname = \"s\"\n{schedule}\n"
                ),
            )
        };
        let cfg =
            load("cron = \"0 0 3 * * *\"\nqueue = \"q\"\njob = \"a\"\npayload = \"{}\"").unwrap();
        assert_eq!(cfg.schedules.len(), 1);
        assert_eq!(cfg.schedules[0].payload, b"{}");

        let err = load("cron = \"every night\"\nqueue = \"q\"\njob = \"b\"").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].line, 9, "{problems:?}");
        assert!(problems[0].message.contains("six fields"), "{problems:?}");
        assert_eq!(problems[1].line, 11, "{problems:?}");
        assert!(
            problems[1].message.contains("no [[job]] of queue `q`"),
            "{problems:?}"
        );
    }

    #[test]
    fn ca_file_must_hold_a_certificate_and_goes_with_rediss() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("junk.pem"), b"not a certificate").unwrap();
        let load = |redis: &str| {
            Config::from_toml(
                &dir.path().join("ward.toml"),
                &format!("[redis]\n{redis}\n[[queue]]\nname = \"q\"\n"),
            )
        };
        let err = load("url = \"redis://127.0.0.1:1\"\nca_file = \"junk.pem\"").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].message.contains("no PEM certificate"),
            "{problems:?}"
        );
        assert!(
            problems[1].message.contains("only used with a rediss://"),
            "{problems:?}"
        );
        let cfg = load("url = \"rediss://redis.internal:6380\"").unwrap();
        assert_eq!(cfg.redis_url, "rediss://redis.internal:6380");
        assert!(cfg.redis_ca.is_none());
    }

    #[test]
    fn breaker_defaults_and_upstreams_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        let load = |top: &str, job: &str| {
            Config::from_toml(
                &dir.path().join("ward.toml"),
                &format!(
                    "{top}\n[[queue]]\nname = \"q\"\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job}\n"
                ),
            )
        };
        let cfg = load("", "upstreams = [\"api\", \"db\", \"api\"]").unwrap();
        assert_eq!(cfg.breaker, BreakerPolicy::default());
        assert_eq!(cfg.queues[0].jobs["a"].upstreams, vec!["api", "db"]);
        let cfg = load(
            "[defaults.breaker]\nfailures = 2\nwindow = \"10s\"\nopen_for = \"1m\"",
            "",
        )
        .unwrap();
        assert_eq!(
            cfg.breaker,
            BreakerPolicy {
                failures: 2,
                window: Duration::from_secs(10),
                open_for: Duration::from_secs(60)
            }
        );
        let err = load("[defaults.breaker]\nfailures = 0", "upstreams = [\"a b\"]").unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].message.contains("failures 0"), "{problems:?}");
        assert!(
            problems[1].message.contains("upstream name `a b`"),
            "{problems:?}"
        );
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

    fn with_queue_keys(queue_keys: &str, job_keys: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"x").unwrap();
        Config::from_toml(
            &dir.path().join("ward.toml"),
            &format!(
                "[defaults]\ndead_payload_max = 1000\n[[queue]]\nname = \"q\"\n{queue_keys}\n[[job]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p.wasm\"\n{job_keys}\n"
            ),
        )
    }

    #[test]
    fn dead_letter_keys_are_read_and_default_sensibly() {
        let cfg = with_queue_keys("", "").unwrap();
        let dead = &cfg.queues[0].dead;
        assert!(!dead.has_retention(), "no retention unless asked for");
        assert_eq!(dead.payload_max, 1000, "inherited from [defaults]");
        assert_eq!(dead.trim_interval, DEFAULT_DEAD_TRIM_INTERVAL);
        assert!(cfg.queues[0].jobs["a"].redact.is_empty());

        let cfg = with_queue_keys(
            "dead_max_len = 500\ndead_max_age = \"7d\"\ndead_trim_interval = \"1s\"\ndead_payload_max = 10",
            "redact = [\"password\", \"/card/number\"]",
        )
        .unwrap();
        let dead = &cfg.queues[0].dead;
        assert_eq!(dead.max_len, Some(500));
        assert_eq!(dead.max_age, Some(Duration::from_secs(7 * 86400)));
        assert_eq!(dead.trim_interval, Duration::from_secs(1));
        assert_eq!(dead.payload_max, 10, "the queue's own value wins");
        assert_eq!(
            cfg.queues[0].jobs["a"].redact,
            vec![
                FieldPath::Key("password".into()),
                FieldPath::Pointer("/card/number".into())
            ]
        );
    }

    #[test]
    fn nonsense_dead_letter_values_are_all_reported() {
        let err = with_queue_keys(
            "dead_max_len = 0\ndead_max_age = \"0s\"\ndead_trim_interval = \"0s\"\ndead_payload_max = -1",
            "redact = [\"card/number\", \"\"]",
        )
        .unwrap_err();
        let ConfigError::Invalid { problems, .. } = err else {
            panic!("expected validation errors, got {err}");
        };
        let text: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(problems.len(), 6, "{text:#?}");
        assert!(text[0].contains("dead_max_len 0"), "{text:#?}");
        assert!(
            text[1].contains("dead_max_age must be more than 0"),
            "{text:#?}"
        );
        assert!(text[2].contains("dead_trim_interval"), "{text:#?}");
        assert!(text[3].contains("dead_payload_max -1"), "{text:#?}");
        assert!(
            text[4].contains("job `a`: redact") && text[4].contains("\"/card/number\""),
            "{text:#?}"
        );
        assert_eq!(problems[0].line, 5);
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn sandbox_keys_are_validated() {
        let err = job_with(
            "",
            "memory_limit = \"12 parsecs\"\nfuel = 0\nhttp = { allow = [\"no-port.example\"] }\nsecrets = [\"../etc\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("memory_limit: invalid size"), "{err}");
        assert!(err.contains("fuel 0"), "{err}");
        assert!(err.contains("not host:port"), "{err}");
        assert!(err.contains("secret name `../etc`"), "{err}");
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
