//! The file as written: serde structs that mirror the TOML, with
//! `deny_unknown_fields` everywhere so a typo is an error rather than a
//! silently ignored key. Field docs are the user-facing reference.
//!
//! Values that need a place in messages keep their span ([`Spanned`]);
//! durations are parsed here already (see [`super::units`]), everything
//! else is checked in [`super::validate`].

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::admin::RawAdmin;
use super::observability::{RawAlerts, RawLog, RawMetrics, RawTracing};
use super::units::{opt_duration, opt_plain_duration};
use crate::policy::{Jitter, TreatAs};

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
    pub metrics: RawMetrics,
    /// `[log]`: the log level.
    #[serde(default)]
    pub log: RawLog,
    /// `[alerts]` and `[[alerts.webhook]]`.
    #[serde(default)]
    pub alerts: RawAlerts,
    /// `[tracing]`: OpenTelemetry spans to an OTLP/HTTP collector.
    #[serde(default)]
    pub tracing: RawTracing,
    /// `[daemon]`: the process itself.
    #[serde(default)]
    pub daemon: RawDaemon,
    /// `[[schedule]]`: jobs enqueued on a cron schedule.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<RawSchedule>,
    /// `[admin]` and `[[admin.token]]`: the admin HTTP API (see [`super::admin`]).
    #[serde(default)]
    pub admin: RawAdmin,
    /// `[[upstream]]`: limits and breaker settings of one upstream.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Spanned<RawUpstream>>,
}

/// `[[schedule]]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// Unique name; part of each fire's idempotency key.
    pub name: Spanned<String>,
    /// Five crontab fields, or six (seconds first) or seven (with year).
    pub cron: Spanned<String>,
    /// The queue to enqueue on.
    pub queue: Spanned<String>,
    /// The job type to enqueue.
    pub job: Spanned<String>,
    /// The payload of every job it enqueues (default: empty).
    #[serde(default)]
    pub payload: String,
    /// The IANA time zone the cron expression is read in (default UTC).
    pub timezone: Option<Spanned<String>>,
    /// Fire times missed while no daemon ran: `skip` or `catch_up`.
    pub missed: Option<Spanned<String>>,
    /// `catch_up`: at most this many missed fires.
    pub catch_up_max: Option<Spanned<i64>>,
    /// `catch_up`: none older than this.
    pub catch_up_window: Option<Spanned<String>>,
    /// A fire while the last fire's job is unfinished: `allow` or `skip`.
    pub overlap: Option<Spanned<String>>,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDaemon {
    /// Threads that run attempts and talk to Redis.
    pub threads: Option<Spanned<i64>>,
    /// Where compiled plugins are kept between starts, or `off`.
    pub compile_cache: Option<Spanned<String>>,
    /// Where `ward run` writes its process id, for `ward reload`.
    pub pid_file: Option<Spanned<String>>,
    /// `perfmap` to name compiled plugin code for `perf`, or `off`.
    pub profiler: Option<Spanned<String>>,
    /// What a pooled slot does with the pages its attempts touched:
    /// `auto`, `keep` or `release`.
    pub slot_pages: Option<Spanned<String>>,
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

/// `[redis]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
    pub url: Option<Spanned<String>>,
    /// PEM file of the CA certificates a `rediss://` server's certificate
    /// must chain to, instead of the system's roots.
    pub ca_file: Option<Spanned<String>>,
    /// `secret:NAME`: the password, from a secret rather than the URL.
    pub password: Option<Spanned<String>>,
    /// A Redis Cluster's seed nodes (`redis://host:port`), instead of `url`.
    pub cluster: Option<Spanned<Vec<String>>>,
    /// The Sentinels (`redis://host:port`) that name the master, instead of
    /// `url`; with `master_name`.
    pub sentinels: Option<Spanned<Vec<String>>>,
    /// The master's name in the Sentinels' configuration.
    pub master_name: Option<Spanned<String>>,
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
    /// How long a finished batch's ledger is kept after it finished;
    /// `"0s"` keeps ledgers until deleted by hand.
    #[serde(default, deserialize_with = "opt_duration")]
    pub batch_retention: Option<Spanned<Duration>>,
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
    /// Largest payload a job may carry (`"8MiB"`); an entry over it is
    /// dead-lettered without running.
    pub max_payload: Option<Spanned<String>>,
    /// Most jobs waiting (not yet delivered, or delayed) before
    /// `ward_enqueue` and `ward enqueue` refuse new ones (`BACKPRESSURE`).
    pub max_backlog: Option<Spanned<i64>>,
    /// Replicas that must have an outcome (`WAIT`) before the daemon counts
    /// it as recorded (default 0: no waiting).
    pub wait_replicas: Option<Spanned<i64>>,
    /// The starvation guard's weights `[high, normal, low]` (default
    /// `[8, 3, 1]`): how many reads in their sum start at each level while
    /// all of them have a backlog.
    pub priority_weights: Option<Spanned<Vec<u32>>>,
    /// The queue's promise on queue time: a `queue_wait` alert fires while
    /// its oldest ready job has waited longer than this (default: none).
    #[serde(default, deserialize_with = "opt_duration")]
    pub max_wait: Option<Spanned<Duration>>,
    /// A `stalled` alert fires when jobs have waited this long and no
    /// daemon recorded an outcome of this queue meanwhile (`"0s"`: never).
    #[serde(default, deserialize_with = "opt_duration")]
    pub stall_after: Option<Spanned<Duration>>,
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
    /// Attempts one instance may serve (opt-in reuse; absent: 1, a fresh
    /// instance per attempt).
    pub reuse_instance: Option<Spanned<u32>>,
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
    /// The correlation field whose value groups this type's jobs (e.g.
    /// `"tenant"`), for `group_concurrency`.
    pub group_by: Option<Spanned<String>>,
    /// Most attempts of one group in flight at once, fleet-wide.
    pub group_concurrency: Option<Spanned<u32>>,
    /// How long a succeeded job's record, with its result, is kept (instead
    /// of the queue's `succeeded_ttl`).
    #[serde(default, deserialize_with = "opt_duration")]
    pub result_ttl: Option<Spanned<Duration>>,
    /// Largest result kept in the record (`"64KiB"`); a larger one is not
    /// kept, and the record says so.
    pub result_max_bytes: Option<Spanned<String>>,
    /// The next stage: the job type enqueued, with this job's result as its
    /// payload, when a job of this type succeeds.
    pub then: Option<Spanned<String>>,
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
    /// Most idle pooled connections kept per `host:port`.
    pub pool_max_idle: Option<Spanned<u32>>,
    /// How long an idle pooled connection is kept.
    #[serde(default, deserialize_with = "opt_duration")]
    pub pool_idle_timeout: Option<Spanned<Duration>>,
    /// PEM file of CA certificates `https` upstreams may chain to, besides
    /// Mozilla's roots; relative to the config's folder.
    pub ca_file: Option<Spanned<String>>,
    /// Offer HTTP/2 (by ALPN) to `https` upstreams.
    pub http2: Option<bool>,
}

/// `[[upstream]]`: how hard Ward may call one upstream, fleet-wide.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// The upstream, as job types name it in `upstreams = [...]`.
    pub name: Spanned<String>,
    /// Attempts that may start per `per` (a token bucket's refill).
    pub rate: Option<i64>,
    /// The period of `rate` (default 1 s).
    #[serde(default, deserialize_with = "opt_plain_duration")]
    pub per: Option<Duration>,
    /// Attempts that may start at once after a quiet spell (the bucket's
    /// size; default `rate`).
    pub burst: Option<i64>,
    /// Attempts calling it that may be in flight at once, fleet-wide.
    pub concurrency: Option<i64>,
    /// Overrides `[defaults.breaker] failures` for this upstream.
    pub failures: Option<i64>,
    /// Overrides `[defaults.breaker] window` for this upstream.
    #[serde(default, deserialize_with = "opt_plain_duration")]
    pub window: Option<Duration>,
    /// Overrides `[defaults.breaker] open_for` for this upstream.
    #[serde(default, deserialize_with = "opt_plain_duration")]
    pub open_for: Option<Duration>,
}
