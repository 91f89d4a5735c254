//! The validated configuration: values ready to use (durations parsed,
//! plugin paths resolved against the config file's folder, queue references
//! checked), built by [`super::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::HttpPolicy;
use super::admin::AdminConfig;
use super::defaults::{
    DEFAULT_BREAKER_FAILURES, DEFAULT_BREAKER_OPEN_FOR, DEFAULT_BREAKER_WINDOW,
    DEFAULT_DEAD_PAYLOAD_MAX, DEFAULT_DEAD_TRIM_INTERVAL,
};
use super::observability::ObsConfig;
use crate::policy::RetryPolicy;
use crate::redact::FieldPath;

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
    pub obs: ObsConfig,
    /// `[daemon] threads`, when set.
    pub threads: Option<usize>,
    /// `[daemon] compile_cache`: where compiled plugins are kept between
    /// starts (`None`: nowhere, every start compiles).
    pub compile_cache: Option<PathBuf>,
    /// `[daemon] profiler = "perfmap"`: the engines write the names of the
    /// plugin code they compile to `/tmp/perf-<pid>.map`, where `perf`
    /// looks for them.
    pub perf_map: bool,
    /// `[daemon] slot_pages`: what a pooled slot does with the pages its
    /// attempts touched.
    pub slot_pages: SlotPages,
    /// `[daemon] pid_file`: where `ward run` writes its process id, so
    /// `ward reload` can find it (`None`: not written).
    pub pid_file: Option<PathBuf>,
    /// `[[schedule]]` tables in file order.
    pub schedules: Vec<ScheduleConfig>,
    /// `[defaults.breaker]`.
    pub breaker: BreakerPolicy,
    /// `[admin]`: the admin HTTP API.
    pub admin: AdminConfig,
    /// `[[upstream]]` tables by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
}

/// A job enqueued on a cron schedule.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Unique name.
    pub name: String,
    /// The cron expression as written.
    pub cron: String,
    /// The parsed expression, read in `tz`.
    pub schedule: cron::Schedule,
    /// The time zone of the expression.
    pub tz: chrono_tz::Tz,
    /// What happens to fire times missed while no daemon ran.
    pub missed: crate::schedule::Missed,
    /// What happens to a fire while the last fire's job is unfinished.
    pub overlap: crate::schedule::Overlap,
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
    /// How long a finished batch's ledger is kept (`None`: until deleted).
    pub batch_retention: Option<Duration>,
    /// Job types by name.
    pub jobs: BTreeMap<String, JobConfig>,
    /// What happens to this queue's dead letters.
    pub dead: DeadLetterConfig,
    /// `max_payload`: an entry whose payload is larger is dead-lettered
    /// without running (its plugin never sees it).
    pub max_payload: usize,
    /// `max_backlog`: past this many waiting jobs, `ward_enqueue` refuses
    /// new ones (`None`: no limit).
    pub max_backlog: Option<u64>,
    /// `wait_replicas`: how many replicas must confirm (`WAIT`) a batch of
    /// outcomes before the daemon counts it as recorded; 0 waits for none.
    pub wait_replicas: u32,
    /// `priority_weights`: the starvation guard between priority levels.
    pub priority_weights: crate::priority::Weights,
    /// `max_wait`: the queue-time promise whose breach (the oldest ready
    /// job older than this) raises a `queue_wait` alert; `None`: no promise.
    pub max_wait: Option<Duration>,
    /// `stall_after`: ready jobs waiting this long with no outcome recorded
    /// meanwhile raise a `stalled` alert; `None`: never.
    pub stall_after: Option<Duration>,
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
            payload_max: DEFAULT_DEAD_PAYLOAD_MAX,
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
    /// Attempts one instance serves before it is dropped: 1 (the default)
    /// is a fresh instance per attempt; more keeps an instance after a
    /// clean success for the next attempt of this job type.
    pub reuse_instance: u32,
    /// Where outbound HTTP may go, and its timeout.
    pub http: HttpPolicy,
    /// Names of the secrets granted (values are read when the daemon starts).
    pub secrets: Vec<String>,
    /// Payload fields replaced by `"[redacted]"` in dead-letter entries.
    pub redact: Vec<FieldPath>,
    /// Upstreams whose circuit breakers hold this job type back.
    pub upstreams: Vec<String>,
    /// `group_by` and `group_concurrency`: fairness between groups (tenants).
    pub group: Option<crate::fairness::GroupLimit>,
    /// `result_ttl` and `result_max_bytes`: how a success's result is kept.
    pub results: crate::transition::ResultPolicy,
    /// `then`: the job type of the next stage, on the same queue.
    pub then: Option<String>,
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
            failures: DEFAULT_BREAKER_FAILURES,
            window: DEFAULT_BREAKER_WINDOW,
            open_for: DEFAULT_BREAKER_OPEN_FOR,
        }
    }
}

/// One `[[upstream]]`: its limits, fleet-wide per queue, and its breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    /// The upstream's name.
    pub name: String,
    /// A token bucket, when `rate` is set.
    pub rate: Option<RateLimit>,
    /// Most attempts calling it in flight at once, when set.
    pub concurrency: Option<u32>,
    /// `[defaults.breaker]` with this table's overrides.
    pub breaker: BreakerPolicy,
}

/// A token bucket: `rate` tokens per `per`, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per `per`.
    pub rate: u32,
    /// The period of `rate`.
    pub per: Duration,
    /// The bucket's size.
    pub burst: u32,
}

impl RateLimit {
    /// Tokens added per millisecond.
    #[must_use]
    pub fn per_ms(&self) -> f64 {
        f64::from(self.rate) / (self.per.as_secs_f64() * 1000.0).max(1.0)
    }
}

/// `[daemon] slot_pages`: what a slot of the instance pool does with the
/// pages its attempt touched (linear memory, tables, fiber stack) as the
/// attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlotPages {
    /// [`SlotPages::Keep`], unless one queue takes more than 8,192 slots
    /// (its `concurrency`, with kept instances): then
    /// [`SlotPages::Release`].
    #[default]
    Auto,
    /// Kept resident, zeroed, for the slot's next instance, which then
    /// starts without page faults; what a burst touched stays with the
    /// daemon.
    Keep,
    /// Given back: each attempt pays system calls and page faults again
    /// (~16 µs), and nothing stays after a burst.
    Release,
}
