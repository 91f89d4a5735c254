//! Every metric Ward exports: names, help texts, histogram buckets, and the
//! Prometheus recorder. [`METRICS`] is the single list the alert rules, the
//! dashboard and the tests are checked against.
//!
//! Labels stay bounded: `queue` is a configured queue, `job_type` a
//! configured job type of that queue or `unknown`, and the other labels take values from
//! fixed sets (outcomes, classes, dead-letter reasons, depth states).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::job::DeadReason;

/// Jobs that reached an outcome: `{queue, job_type, outcome}`.
pub const JOBS_TOTAL: &str = "ward_jobs_total";
/// Jobs enqueued, counted as a daemon first reads the entry their producer
/// wrote (see [`crate::job::JobEntry::is_first_delivery`]); delayed
/// enqueues are not counted. `{queue, job_type}`.
pub const JOBS_ENQUEUED_TOTAL: &str = "ward_jobs_enqueued_total";
/// Attempts by how they ended: `{queue, job_type, class}`.
pub const ATTEMPTS_TOTAL: &str = "ward_attempts_total";
/// Plugin time of one attempt, instantiation included: `{queue, job_type}`.
pub const JOB_DURATION: &str = "ward_job_duration_seconds";
/// From the first enqueue to success, retries included: `{queue, job_type}`.
pub const TIME_TO_SUCCESS: &str = "ward_job_time_to_success_seconds";
/// From a job's enqueue to the start of its first attempt: `{queue, job_type}`.
pub const JOB_WAIT: &str = "ward_job_wait_seconds";
/// Attempts a job needed to succeed: `{queue, job_type}`.
pub const ATTEMPTS_TO_SUCCESS: &str = "ward_job_attempts_to_success";
/// Jobs by where they are, sampled: `{queue, state}`.
pub const QUEUE_DEPTH: &str = "ward_queue_depth";
/// Age of the oldest job not yet delivered, sampled: `{queue}`.
pub const QUEUE_LAG: &str = "ward_queue_lag_seconds";
/// Jobs moved to the dead-letter stream: `{queue, job_type, reason}`.
pub const DEAD_LETTERS_TOTAL: &str = "ward_dead_letters_total";
/// Attempts running now: `{queue}`.
pub const INFLIGHT: &str = "ward_inflight";
/// Time to instantiate a plugin for one attempt: `{queue, job_type}`.
pub const PLUGIN_INSTANTIATE: &str = "ward_plugin_instantiate_seconds";
/// Alerts handed to webhooks, by result: `{kind, result}`.
pub const ALERTS_TOTAL: &str = "ward_alerts_total";
/// Alert events dropped because the alert queue was full: `{kind}`.
pub const ALERTS_DROPPED_TOTAL: &str = "ward_alerts_dropped_total";
/// 1 while Redis answered a PING within the last 3 s, else 0.
pub const REDIS_UP: &str = "ward_redis_up";
/// 1 while /readyz says ready, else 0.
pub const READY: &str = "ward_ready";
/// Always 1, labelled with the daemon's `version`.
pub const BUILD_INFO: &str = "ward_build_info";
/// 1 while an upstream's circuit breaker is open, else 0.
pub const BREAKER_OPEN: &str = "ward_breaker_open";
/// Tokens in an upstream's bucket (`[[upstream]] rate`), sampled twice a
/// second; `+Inf` for an upstream without a rate. `{queue, upstream}`.
pub const UPSTREAM_TOKENS: &str = "ward_upstream_tokens";
/// Attempts holding a slot of an upstream (`[[upstream]] concurrency`),
/// fleet-wide. `{queue, upstream}`.
pub const UPSTREAM_IN_FLIGHT: &str = "ward_upstream_in_flight";
/// Until when (Unix s) an upstream holds its jobs after a Retry-After; 0
/// when it does not. `{queue, upstream}`.
pub const UPSTREAM_HELD_UNTIL: &str = "ward_upstream_held_until_seconds";
/// Jobs held back without running by an upstream's limits, by `reason`
/// (`rate-limited`, `upstream-busy`). `{queue, upstream, reason}`.
pub const UPSTREAM_DEFERRED_TOTAL: &str = "ward_upstream_deferred_total";
/// Attempts a queue may run at once on this daemon (its `concurrency`):
/// utilisation is `ward_inflight / ward_capacity`. `{queue}`.
pub const CAPACITY: &str = "ward_capacity";
/// Redis' `used_memory`, sampled every 30 s.
pub const REDIS_MEMORY_USED: &str = "ward_redis_memory_used_bytes";
/// Redis' `maxmemory` (0: no limit), sampled every 30 s.
pub const REDIS_MEMORY_MAX: &str = "ward_redis_memory_max_bytes";
/// 1 while Redis' `maxmemory-policy` may evict Ward's keys (anything but
/// `noeviction`), else 0.
pub const REDIS_EVICTING: &str = "ward_redis_evicting";
/// 1 while a queue (`job_type` `*`) or one job type of it is paused
/// (`ward pause`), else 0: `{queue, job_type}`.
pub const PAUSED: &str = "ward_paused";
/// Live reloads by result: `{result}` (`applied` or `refused`).
pub const CONFIG_RELOADS_TOTAL: &str = "ward_config_reloads_total";
/// When the config was last loaded whole (start or reload), Unix seconds.
pub const CONFIG_LAST_RELOAD_SUCCESS: &str = "ward_config_last_reload_success_timestamp_seconds";

/// The standard process metrics (as every Prometheus client library
/// exports them, unprefixed so existing dashboards find them), read from
/// `/proc` at each scrape.
pub const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_max_fds",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_threads",
];
/// Batch members that ended, by `outcome` (`succeeded`, `dead`,
/// `cancelled`), as recorded by this daemon's attempts: `{queue}`.
pub const BATCH_MEMBERS_TOTAL: &str = "ward_batch_members_total";
/// Batches not finished yet (open, or sealed with members pending),
/// sampled: `{queue}`.
pub const BATCHES_UNFINISHED: &str = "ward_batches_unfinished";

/// Deliveries a failed read left leased to this daemon (its reply lost)
/// that it took back to run: `{queue}`.
pub const DELIVERIES_TAKEN_BACK_TOTAL: &str = "ward_deliveries_taken_back_total";

/// Every metric Ward registers. The alert rules and the dashboard may only
/// use these (checked by tests), and a scrape shows exactly these.
pub const METRICS: &[&str] = &[
    JOBS_TOTAL,
    JOBS_ENQUEUED_TOTAL,
    ATTEMPTS_TOTAL,
    JOB_DURATION,
    TIME_TO_SUCCESS,
    JOB_WAIT,
    ATTEMPTS_TO_SUCCESS,
    QUEUE_DEPTH,
    QUEUE_LAG,
    DEAD_LETTERS_TOTAL,
    INFLIGHT,
    PLUGIN_INSTANTIATE,
    ALERTS_TOTAL,
    ALERTS_DROPPED_TOTAL,
    DELIVERIES_TAKEN_BACK_TOTAL,
    REDIS_UP,
    READY,
    BUILD_INFO,
    BREAKER_OPEN,
    CAPACITY,
    REDIS_MEMORY_USED,
    REDIS_MEMORY_MAX,
    REDIS_EVICTING,
    PAUSED,
    UPSTREAM_TOKENS,
    UPSTREAM_IN_FLIGHT,
    UPSTREAM_HELD_UNTIL,
    UPSTREAM_DEFERRED_TOTAL,
    CONFIG_RELOADS_TOTAL,
    CONFIG_LAST_RELOAD_SUCCESS,
    PROCESS_METRICS[0],
    PROCESS_METRICS[1],
    PROCESS_METRICS[2],
    PROCESS_METRICS[3],
    PROCESS_METRICS[4],
    PROCESS_METRICS[5],
    PROCESS_METRICS[6],
    PROCESS_METRICS[7],
    BATCH_MEMBERS_TOTAL,
    BATCHES_UNFINISHED,
];

/// `outcome` label values of [`BATCH_MEMBERS_TOTAL`].
pub const BATCH_OUTCOMES: [&str; 3] = ["succeeded", "dead", "cancelled"];

/// The process metrics' collector: described once, read at each scrape.
static PROCESS: std::sync::LazyLock<metrics_process::Collector> =
    std::sync::LazyLock::new(metrics_process::Collector::default);

/// Reads the process metrics (CPU, memory, fds, threads) into the recorder;
/// called by each scrape, so they are as fresh as the scrape.
pub fn collect_process() {
    PROCESS.collect();
}

/// `outcome` label values of [`JOBS_TOTAL`].
pub const OUTCOMES: [&str; 6] = [
    "succeeded",
    "retried",
    "dead",
    "duplicate",
    "deferred",
    "cancelled",
];
/// `class` label values of [`ATTEMPTS_TOTAL`].
pub const CLASSES: &[&str] = &[
    "success",
    "transient",
    "recoverable",
    "permanent",
    "timeout",
    "crash",
    "cancelled",
];
/// `kind` label values of [`ALERTS_TOTAL`] and [`ALERTS_DROPPED_TOTAL`]
/// (the names of `obs::alerts::AlertKind`).
pub const ALERT_KINDS: [&str; 6] = [
    "dead_letter",
    "breaker_open",
    "retry_spike",
    "batch_failures",
    "queue_wait",
    "stalled",
];
/// `state` label values of [`QUEUE_DEPTH`].
pub const DEPTH_STATES: &[&str] = &["ready", "pending", "delayed", "dead"];
/// The `job` label of a job type that is not configured for its queue.
pub const UNKNOWN_JOB: &str = "unknown";

const SECONDS_FAST: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];
const SECONDS_SLOW: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0,
    21600.0, 86400.0,
];
const ATTEMPT_COUNTS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0,
];
const INSTANTIATE_SECONDS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// Histogram buckets, per histogram.
const BUCKETS: &[(&str, &[f64])] = &[
    (JOB_DURATION, SECONDS_FAST),
    (TIME_TO_SUCCESS, SECONDS_SLOW),
    (JOB_WAIT, SECONDS_SLOW),
    (ATTEMPTS_TO_SUCCESS, ATTEMPT_COUNTS),
    (PLUGIN_INSTANTIATE, INSTANTIATE_SECONDS),
];

/// Builds the Prometheus recorder with Ward's buckets, installs it as the
/// process's `metrics` recorder and describes every metric.
///
/// # Errors
/// A recorder is already installed.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    describe();
    PROCESS.describe();
    PROCESS.collect();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        JOBS_TOTAL,
        "Jobs that reached an outcome: succeeded, retried (a retry was scheduled), dead, duplicate, deferred, cancelled (by an operator)."
    );
    describe_counter!(
        JOBS_ENQUEUED_TOTAL,
        "Jobs enqueued (XADD, ward enqueue, ward_enqueue, schedules), counted when a daemon first reads the entry; jobs enqueued with a delay are not counted. Fleet-wide: sum over daemons."
    );
    describe_counter!(
        ATTEMPTS_TOTAL,
        "Attempts by how they ended: success, transient, recoverable, permanent, timeout, crash."
    );
    describe_histogram!(
        JOB_DURATION,
        "Plugin time of one attempt in seconds, instantiation included."
    );
    describe_histogram!(
        TIME_TO_SUCCESS,
        "Seconds from a job's first enqueue to its success, retries included."
    );
    describe_histogram!(ATTEMPTS_TO_SUCCESS, "Attempts a job needed to succeed.");
    describe_histogram!(
        JOB_WAIT,
        "Seconds from a job's enqueue to the start of its first attempt (jobs enqueued with a delay are not counted)."
    );
    describe_gauge!(
        QUEUE_DEPTH,
        "Jobs by state, sampled: ready (not yet delivered), pending (delivered, not acknowledged), delayed (waiting for a retry or a due time), dead."
    );
    describe_gauge!(
        QUEUE_LAG,
        "Age in seconds of the oldest job not yet delivered (0 when none waits), sampled."
    );
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        "Jobs moved to the dead-letter stream, by reason."
    );
    describe_gauge!(INFLIGHT, "Attempts running now.");
    describe_gauge!(
        BREAKER_OPEN,
        "1 while the upstream's circuit breaker holds its jobs back, else 0."
    );
    describe_gauge!(
        UPSTREAM_TOKENS,
        "Tokens in the upstream's bucket ([[upstream]] rate), sampled; +Inf without a rate."
    );
    describe_gauge!(
        UPSTREAM_IN_FLIGHT,
        "Attempts holding one of the upstream's slots, fleet-wide, sampled."
    );
    describe_gauge!(
        UPSTREAM_HELD_UNTIL,
        "Unix time until which the upstream holds its jobs after a Retry-After; 0 when it does not."
    );
    describe_counter!(
        UPSTREAM_DEFERRED_TOTAL,
        "Jobs held back without running by an upstream's limits, by reason."
    );
    describe_histogram!(
        PLUGIN_INSTANTIATE,
        "Seconds to instantiate a plugin for one attempt."
    );
    describe_counter!(
        ALERTS_TOTAL,
        "Alerts handed to webhooks, by result: sent, failed (every retry failed), unsent (no webhook configured), deduped (another daemon of the fleet claimed it)."
    );
    describe_counter!(
        ALERTS_DROPPED_TOTAL,
        "Alert events dropped because the alert queue was full."
    );
    describe_counter!(
        DELIVERIES_TAKEN_BACK_TOTAL,
        "Deliveries a failed read left leased to this daemon (the connection dropped before its reply) that it took back and ran at once, instead of leaving them to expire as lost attempts."
    );
    describe_gauge!(
        REDIS_UP,
        "1 while Redis answered a PING within the last 3 seconds, else 0."
    );
    describe_gauge!(READY, "1 while /readyz answers 200, else 0.");
    describe_gauge!(
        CAPACITY,
        "Attempts the queue may run at once on this daemon (its concurrency)."
    );
    describe_counter!(
        CONFIG_RELOADS_TOTAL,
        "Live reloads (SIGHUP, ward reload) by result: applied, refused (the running config kept serving)."
    );
    describe_gauge!(
        CONFIG_LAST_RELOAD_SUCCESS,
        "When the config was last loaded whole (start or applied reload), Unix seconds."
    );
    describe_gauge!(REDIS_MEMORY_USED, "Redis' used_memory in bytes, sampled.");
    describe_gauge!(
        REDIS_MEMORY_MAX,
        "Redis' maxmemory in bytes (0: no limit), sampled."
    );
    describe_gauge!(
        REDIS_EVICTING,
        "1 while Redis' maxmemory-policy may evict Ward's keys (not noeviction), else 0."
    );
    describe_counter!(
        BATCH_MEMBERS_TOTAL,
        "Batch members that ended through this daemon's attempts, by outcome: succeeded, dead, cancelled."
    );
    describe_gauge!(
        BATCHES_UNFINISHED,
        "Batches not finished yet (open, or sealed with members pending), sampled."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the version label names the build.");
    describe_gauge!(
        PAUSED,
        "1 while the queue (job_type \"*\") or the job type is paused (ward pause), else 0."
    );
}

/// Registers every labelled series at zero for the configured queues and
/// job types, so rates and `increase()` work from the first event and an
/// outcome that never happened shows as 0 rather than missing.
pub fn preregister(jobs: &HashMap<String, HashSet<String>>) {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(REDIS_UP).set(0.0);
    metrics::gauge!(READY).set(0.0);
    metrics::gauge!(REDIS_MEMORY_USED).set(0.0);
    metrics::gauge!(REDIS_MEMORY_MAX).set(0.0);
    metrics::gauge!(REDIS_EVICTING).set(0.0);
    for result in ["applied", "refused"] {
        metrics::counter!(CONFIG_RELOADS_TOTAL, "result" => result).absolute(0);
    }
    // The config was loaded whole just now, as the daemon started.
    #[allow(
        clippy::cast_precision_loss,
        reason = "milliseconds since 1970 fit an f64 exactly"
    )]
    let now = crate::clock::now_ms() as f64 / 1000.0;
    metrics::gauge!(CONFIG_LAST_RELOAD_SUCCESS).set(now);
    for kind in ALERT_KINDS {
        metrics::counter!(ALERTS_DROPPED_TOTAL, "kind" => kind).absolute(0);
        for result in ["sent", "failed", "unsent", "deduped"] {
            metrics::counter!(ALERTS_TOTAL, "kind" => kind, "result" => result).absolute(0);
        }
    }
    for (queue, types) in jobs {
        metrics::gauge!(INFLIGHT, "queue" => queue.clone()).set(0.0);
        metrics::gauge!(QUEUE_LAG, "queue" => queue.clone()).set(0.0);
        metrics::gauge!(BATCHES_UNFINISHED, "queue" => queue.clone()).set(0.0);
        metrics::counter!(DELIVERIES_TAKEN_BACK_TOTAL, "queue" => queue.clone()).absolute(0);
        for outcome in BATCH_OUTCOMES {
            metrics::counter!(BATCH_MEMBERS_TOTAL, "queue" => queue.clone(), "outcome" => outcome)
                .absolute(0);
        }
        for state in DEPTH_STATES {
            metrics::gauge!(QUEUE_DEPTH, "queue" => queue.clone(), "state" => *state).set(0.0);
        }
        for job in types.iter().map(String::as_str).chain(["*"]) {
            metrics::gauge!(PAUSED, "queue" => queue.clone(), "job_type" => job.to_string())
                .set(0.0);
        }
        for job in types.iter().map(String::as_str).chain([UNKNOWN_JOB]) {
            let (q, j) = (queue.clone(), job.to_string());
            metrics::counter!(JOBS_ENQUEUED_TOTAL, "queue" => q.clone(), "job_type" => j.clone())
                .absolute(0);
            for outcome in &OUTCOMES {
                metrics::counter!(JOBS_TOTAL, "queue" => q.clone(), "job_type" => j.clone(), "outcome" => *outcome)
                    .absolute(0);
            }
            for class in CLASSES {
                metrics::counter!(ATTEMPTS_TOTAL, "queue" => q.clone(), "job_type" => j.clone(), "class" => *class)
                    .absolute(0);
            }
            for reason in ALL_REASONS {
                metrics::counter!(DEAD_LETTERS_TOTAL, "queue" => q.clone(), "job_type" => j.clone(), "reason" => reason_label(*reason))
                    .absolute(0);
            }
        }
    }
}

const ALL_REASONS: &[DeadReason] = &[
    DeadReason::Permanent,
    DeadReason::Crash,
    DeadReason::AttemptsExhausted,
    DeadReason::ElapsedExhausted,
    DeadReason::LeaseExpiries,
    DeadReason::NoPlugin,
    DeadReason::Malformed,
    DeadReason::Unrecordable,
    DeadReason::KeyUnusable,
];

/// The `reason` label of a dead letter: a short snake_case word (the
/// dead-letter entry keeps the longer text).
#[must_use]
pub fn reason_label(reason: DeadReason) -> &'static str {
    match reason {
        DeadReason::Permanent => "permanent",
        DeadReason::Crash => "crash",
        DeadReason::AttemptsExhausted => "attempts_exhausted",
        DeadReason::ElapsedExhausted => "elapsed_exhausted",
        DeadReason::LeaseExpiries => "lease_expiries",
        DeadReason::NoPlugin => "no_plugin",
        DeadReason::Malformed => "malformed",
        DeadReason::Unrecordable => "unrecordable",
        DeadReason::KeyUnusable => "key_unusable",
    }
}

static KNOWN_JOBS: OnceLock<HashMap<String, HashSet<String>>> = OnceLock::new();

/// Remembers the configured job types per queue, for [`job_label`]. Only
/// the first call of a process counts.
pub fn set_known_jobs(jobs: HashMap<String, HashSet<String>>) {
    let _ = KNOWN_JOBS.set(jobs);
}

/// The `job` label for job type `job` of `queue`: the name when it is
/// configured for that queue, else [`UNKNOWN_JOB`] (entries can name
/// anything; labels must stay a bounded set).
#[must_use]
pub fn job_label(queue: &str, job: &str) -> String {
    match KNOWN_JOBS.get().and_then(|m| m.get(queue)) {
        Some(types) if types.contains(job) => job.to_string(),
        _ => UNKNOWN_JOB.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_histogram_has_sorted_buckets() {
        for (name, buckets) in BUCKETS {
            assert!(METRICS.contains(name), "{name}");
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
    }

    #[test]
    fn metric_names_are_unique_and_prefixed() {
        let set: HashSet<&str> = METRICS.iter().copied().collect();
        assert_eq!(set.len(), METRICS.len());
        // Ward's own are prefixed; the standard process metrics keep the
        // names every Prometheus client gives them.
        assert!(
            METRICS
                .iter()
                .all(|m| m.starts_with("ward_") || PROCESS_METRICS.contains(m))
        );
        assert!(PROCESS_METRICS.iter().all(|m| METRICS.contains(m)));
    }
}
