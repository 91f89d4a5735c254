//! Internal events, one struct each: `emit()` bumps the metrics and, where
//! the event deserves a line, writes it, so the two never drift apart.
//!
//! Events only count and log: they raise no alerts and call nothing else of
//! the daemon (alerts are raised by the callers, e.g. [`crate::obs::recorded`]
//! and the breakers), so this module imports only metric names and plain
//! domain types. The per-attempt log line stays in [`crate::worker`]
//! (`log_attempt`); these events add what is counted.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::job::{DeadReason, Outcome};
use crate::obs::metrics::{self as m, job_label};
use crate::store::QueueSample;
use crate::transition::{Completion, Transition};

/// The hot-path metric handles of one (queue, job type), registered once.
/// Building a labelled key per event (allocating and hashing the label
/// strings, then a registry lookup) was a visible share of daemon CPU per
/// job; a handle is a shared pointer to the metric. A configured job type
/// holds its own ([`JobMetrics::of`] when it is loaded), so an attempt
/// reaches them without a lock or a lookup.
#[derive(Debug)]
pub struct JobMetrics {
    duration: Histogram,
    instantiate: Histogram,
    time_to_success: Histogram,
    /// `ward_job_wait_seconds`.
    wait: Histogram,
    attempts_to_success: Histogram,
    /// `ward_jobs_enqueued_total`.
    enqueued: Counter,
    /// `ward_jobs_total` by outcome, in [`m::OUTCOMES`] order.
    jobs: [Counter; m::OUTCOMES.len()],
    /// `ward_attempts_total` by class, in [`m::CLASSES`] order.
    attempts: Vec<Counter>,
    /// The queue's `ward_inflight`.
    inflight: Gauge,
}

impl JobMetrics {
    /// The handles of job type `job` in `queue` (a name no job type of the
    /// queue has counts under its bounded label, see [`job_label`]).
    #[must_use]
    pub fn of(queue: &str, job: &str) -> Arc<JobMetrics> {
        handles(queue, job)
    }
}

/// Looked up per batch of completions and for the first read of a job
/// whose type is not configured: hashed with `foldhash`, not SipHash, as
/// the worker's per-attempt registries are.
type Fast = foldhash::fast::RandomState;
type HandleMap = HashMap<String, HashMap<String, Arc<JobMetrics>, Fast>, Fast>;
static HANDLES: LazyLock<Mutex<HandleMap>> = LazyLock::new(Mutex::default);
static INFLIGHT_GAUGES: LazyLock<Mutex<HashMap<String, Gauge, Fast>>> =
    LazyLock::new(Mutex::default);

fn handles(queue: &str, job: &str) -> Arc<JobMetrics> {
    let mut map = HANDLES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Configured job types are their own label: found without building one.
    if let Some(h) = map.get(queue).and_then(|jobs| jobs.get(job)) {
        return h.clone();
    }
    let job = job_label(queue, job);
    if let Some(h) = map.get(queue).and_then(|jobs| jobs.get(&job)) {
        return h.clone();
    }
    let (q, j) = (queue.to_string(), job.clone());
    let h = Arc::new(JobMetrics {
        duration: metrics::histogram!(m::JOB_DURATION, "queue" => q.clone(), "job_type" => j.clone()),
        instantiate: metrics::histogram!(m::PLUGIN_INSTANTIATE, "queue" => q.clone(), "job_type" => j.clone()),
        time_to_success: metrics::histogram!(m::TIME_TO_SUCCESS, "queue" => q.clone(), "job_type" => j.clone()),
        wait: metrics::histogram!(m::JOB_WAIT, "queue" => q.clone(), "job_type" => j.clone()),
        attempts_to_success: metrics::histogram!(m::ATTEMPTS_TO_SUCCESS, "queue" => q.clone(), "job_type" => j.clone()),
        enqueued: metrics::counter!(m::JOBS_ENQUEUED_TOTAL, "queue" => q.clone(), "job_type" => j.clone()),
        jobs: m::OUTCOMES.map(|o| metrics::counter!(m::JOBS_TOTAL, "queue" => q.clone(), "job_type" => j.clone(), "outcome" => o)),
        attempts: m::CLASSES.iter().map(|&c| metrics::counter!(m::ATTEMPTS_TOTAL, "queue" => q.clone(), "job_type" => j.clone(), "class" => c)).collect(),
        inflight: inflight_gauge(queue),
    });
    map.entry(q).or_default().insert(j, h.clone());
    h
}

fn inflight_gauge(queue: &str) -> Gauge {
    let mut map = INFLIGHT_GAUGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(g) = map.get(queue) {
        return g.clone();
    }
    let g = metrics::gauge!(m::INFLIGHT, "queue" => queue.to_string());
    map.insert(queue.to_string(), g.clone());
    g
}

/// An attempt's plugin call ended (any outcome).
#[derive(Debug)]
pub struct AttemptFinished<'a> {
    /// The job type's handles.
    pub metrics: &'a JobMetrics,
    /// Plugin time, instantiation included.
    pub elapsed: Duration,
    /// Time to instantiate the plugin, when instantiation finished.
    pub instantiate: Option<Duration>,
    /// For a first attempt: how long the job waited from its enqueue.
    pub waited: Option<Duration>,
}

impl AttemptFinished<'_> {
    /// Records the duration histograms.
    pub fn emit(&self) {
        let h = self.metrics;
        h.duration.record(self.elapsed.as_secs_f64());
        if let Some(i) = self.instantiate {
            h.instantiate.record(i.as_secs_f64());
        }
        if let Some(w) = self.waited {
            h.wait.record(w.as_secs_f64());
        }
    }
}

/// A daemon read the entry a producer wrote for a new job (its first
/// delivery: [`crate::job::JobEntry::is_first_delivery`]). Each entry is
/// read first by exactly one daemon of the fleet (`XREADGROUP >`), so the
/// fleet's sum counts every such job once.
#[derive(Debug)]
pub struct JobEnqueued<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The job type, as the entry names it.
    pub job: &'a str,
    /// The job type's handles, when it is configured.
    pub metrics: Option<&'a JobMetrics>,
}

impl JobEnqueued<'_> {
    /// Counts `ward_jobs_enqueued_total`.
    pub fn emit(&self) {
        match self.metrics {
            Some(h) => h.enqueued.increment(1),
            None => handles(self.queue, self.job).enqueued.increment(1),
        }
    }
}

/// A batch of finished attempts is durable in Redis (its `apply` script
/// returned). Emitted only then, so no count and no alert ever precedes the
/// state it reports.
#[derive(Debug)]
pub struct CompletionsApplied<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The batch.
    pub batch: &'a [Completion],
    /// Per completion, whether it took effect (another daemon may have
    /// recorded the delivery first); missing flags count as taken.
    pub took: &'a [bool],
}

impl CompletionsApplied<'_> {
    /// Counts every completion that took effect.
    pub fn emit(&self) {
        // A batch is mostly one job type: look its handles up once.
        let mut last: Option<(&str, Arc<JobMetrics>)> = None;
        for (i, c) in self.batch.iter().enumerate() {
            if !self.took.get(i).copied().unwrap_or(true) {
                continue;
            }
            let h = match &last {
                Some((job, h)) if *job == c.job() => h.clone(),
                _ => {
                    let h = handles(self.queue, c.job());
                    last = Some((c.job(), h.clone()));
                    h
                }
            };
            JobRecorded {
                queue: self.queue,
                completion: c,
            }
            .emit_with(&h);
        }
    }
}

/// One completion of a [`CompletionsApplied`] batch; only ever emitted as
/// part of one, with the batch's metric handles.
#[derive(Debug)]
struct JobRecorded<'a> {
    queue: &'a str,
    completion: &'a Completion,
}

impl JobRecorded<'_> {
    /// Bumps `ward_jobs_total`, `ward_attempts_total`, and the success
    /// histograms or `ward_dead_letters_total`.
    fn emit_with(&self, h: &JobMetrics) {
        let c = self.completion;
        let outcome = match c.transition() {
            Transition::Succeed => 0,
            Transition::Retry { .. } => 1,
            Transition::DeadLetter(_) => 2,
            Transition::Duplicate { .. } => 3,
            Transition::Defer { .. } => 4,
            Transition::Cancel { .. } => 5,
        };
        h.jobs[outcome].increment(1);
        if let Some(class) = attempt_class(c)
            && let Some(i) = m::CLASSES.iter().position(|k| *k == class)
        {
            h.attempts[i].increment(1);
        }
        match *c.transition() {
            Transition::Succeed => {
                let since = enqueued_ms(c.job_id())
                    .or((c.first_at_ms() > 0).then_some(c.first_at_ms()))
                    .unwrap_or(c.started_ms());
                let seconds = c.finished_ms().saturating_sub(since) as f64 / 1000.0;
                h.time_to_success.record(seconds);
                h.attempts_to_success.record(f64::from(c.attempt().max(1)));
            }
            Transition::DeadLetter(reason) => count_dead_letter(self.queue, c.job(), reason),
            Transition::Retry { .. }
            | Transition::Defer { .. }
            | Transition::Duplicate { .. }
            | Transition::Cancel { .. } => {}
        }
        // A batch member's end, as APPLY records it in the batch's ledger
        // (a failure of a job with a cancel request is recorded cancelled
        // there, and counted dead here: the host does not know of the
        // request).
        if c.batch().is_some() {
            let outcome = match c.transition() {
                Transition::Succeed => Some("succeeded"),
                // A second job with a used key; a redelivery of an ended
                // job (no other owner) was counted when it ended.
                Transition::Duplicate { of: Some(of) } if of != c.job_id() => Some("succeeded"),
                Transition::DeadLetter(_) => Some("dead"),
                Transition::Cancel { .. } => Some("cancelled"),
                _ => None,
            };
            if let Some(outcome) = outcome {
                metrics::counter!(m::BATCH_MEMBERS_TOTAL, "queue" => self.queue.to_string(), "outcome" => outcome)
                    .increment(1);
            }
        }
    }
}

/// A completion Redis refused to record after its acknowledgement: the
/// APPLY script dead-lettered its job as `unrecordable` instead (see
/// [`crate::obs::unrecordable`]).
#[derive(Debug)]
pub struct Unrecordable<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The completion that could not be recorded.
    pub completion: &'a Completion,
}

impl Unrecordable<'_> {
    /// Counts the job as dead: `ward_jobs_total{outcome="dead"}` and
    /// `ward_dead_letters_total{reason="unrecordable"}`. (Not
    /// `ward_batch_members_total`: APPLY may have ended the member in its
    /// ledger before the write Redis refused, and the reply does not say.)
    pub fn emit(&self) {
        let job = self.completion.job();
        if let Some(i) = m::OUTCOMES.iter().position(|o| *o == "dead") {
            handles(self.queue, job).jobs[i].increment(1);
        }
        count_dead_letter(self.queue, job, DeadReason::Unrecordable);
    }
}

/// Counts one dead letter of job type `job` in `queue`.
fn count_dead_letter(queue: &str, job: &str, reason: DeadReason) {
    let job = job_label(queue, job);
    metrics::counter!(m::DEAD_LETTERS_TOTAL, "queue" => queue.to_string(), "job_type" => job, "reason" => m::reason_label(reason))
        .increment(1);
}

/// The class an attempt ended with, or `None` when nothing ran (a
/// duplicate, a deferral, a malformed entry, a job type without a plugin).
fn attempt_class(c: &Completion) -> Option<&'static str> {
    if !c.transition().ran() {
        return None;
    }
    match c.outcome() {
        Outcome::Success(_) => Some("success"),
        Outcome::Failure(f) => Some(f.class.as_str()),
    }
}

/// When a job was first enqueued, read from its id: a plain enqueue's id is
/// its stream entry id (`<ms>-<seq>`) and a delayed enqueue's is
/// `d<ms>-<n>`, both in the Redis server's clock. `None` for other ids.
#[must_use]
pub fn enqueued_ms(job_id: &str) -> Option<u64> {
    let id = job_id.strip_prefix('d').unwrap_or(job_id);
    let (ms, seq) = id.split_once('-')?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || ms.is_empty() {
        return None;
    }
    // One pass over the digits (twice per job: the wait and the time to
    // success), where checking them and then `parse` read them twice.
    ms.bytes().try_fold(0u64, |n, b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A queue's depth and lag were sampled.
#[derive(Debug)]
pub struct QueueSampled<'a> {
    /// The queue.
    pub queue: &'a str,
    /// What Redis said.
    pub sample: &'a QueueSample,
}

impl QueueSampled<'_> {
    /// Sets the depth and lag gauges.
    pub fn emit(&self) {
        let s = self.sample;
        for (state, n) in [
            ("ready", s.ready),
            ("pending", s.pending),
            ("delayed", s.delayed),
            ("dead", s.dead),
        ] {
            metrics::gauge!(m::QUEUE_DEPTH, "queue" => self.queue.to_string(), "state" => state)
                .set(n as f64);
        }
        let lag_ms = s
            .oldest_ready_ms
            .map_or(0, |oldest| s.now_ms.saturating_sub(oldest));
        metrics::gauge!(m::QUEUE_LAG, "queue" => self.queue.to_string())
            .set(lag_ms as f64 / 1000.0);
        metrics::gauge!(m::BATCHES_UNFINISHED, "queue" => self.queue.to_string())
            .set(s.batches_unfinished as f64);
    }
}

/// Sampling a queue failed (Redis away). Logged once per failure streak by
/// the caller; the gauges keep their last values.
#[derive(Debug)]
pub struct QueueSampleFailed<'a> {
    /// The queue.
    pub queue: &'a str,
    /// Why.
    pub error: &'a str,
}

impl QueueSampleFailed<'_> {
    /// Logs a warning.
    pub fn emit(&self) {
        tracing::warn!(queue = %self.queue, error = %self.error, "cannot sample queue depth; keeping the last values");
    }
}

/// An attempt is running; dropping the guard ends it (`ward_inflight`).
#[derive(Debug)]
#[must_use = "the attempt counts as in flight until the guard is dropped"]
pub struct InFlight<'a> {
    gauge: &'a Gauge,
}

/// Attempts in flight in this process, every queue (systemd's `STATUS=`).
static IN_FLIGHT_TOTAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many attempts run in this process now.
#[must_use]
pub fn in_flight_total() -> u64 {
    IN_FLIGHT_TOTAL.load(std::sync::atomic::Ordering::Relaxed)
}

impl InFlight<'_> {
    /// Counts one more attempt in flight for the queue of `metrics`.
    pub fn start(metrics: &JobMetrics) -> InFlight<'_> {
        let gauge = &metrics.inflight;
        gauge.increment(1.0);
        IN_FLIGHT_TOTAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight { gauge }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
        IN_FLIGHT_TOTAL.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// An alert event could not be queued: the alert task is behind.
#[derive(Debug)]
pub struct AlertDropped<'a> {
    /// What kind of alert (its snake_case name).
    pub kind: &'static str,
    /// Its queue.
    pub queue: &'a str,
    /// Its job type.
    pub job: &'a str,
}

impl AlertDropped<'_> {
    /// Counts `ward_alerts_dropped_total` and logs a warning.
    pub fn emit(&self) {
        metrics::counter!(m::ALERTS_DROPPED_TOTAL, "kind" => self.kind).increment(1);
        tracing::warn!(kind = self.kind, queue = %self.queue, job = %self.job, "alert queue full; alert event dropped");
    }
}

/// An alert went out to a webhook, or gave up.
#[derive(Debug)]
pub struct AlertDelivered<'a> {
    /// What kind of alert (its snake_case name).
    pub kind: &'static str,
    /// Its queue.
    pub queue: &'a str,
    /// Its job type.
    pub job: &'a str,
    /// The webhook, as shown in logs (no path, no secrets).
    pub sink: &'a str,
    /// Requests made.
    pub attempts: u32,
    /// `None` when it was accepted, else the last error.
    pub error: Option<&'a str>,
}

impl AlertDelivered<'_> {
    /// Counts `ward_alerts_total{result}` and logs the result.
    pub fn emit(&self) {
        let result = if self.error.is_some() {
            "failed"
        } else {
            "sent"
        };
        metrics::counter!(m::ALERTS_TOTAL, "kind" => self.kind, "result" => result).increment(1);
        match self.error {
            None => {
                tracing::info!(kind = self.kind, queue = %self.queue, job = %self.job, sink = %self.sink, attempts = self.attempts, "alert sent")
            }
            Some(e) => {
                tracing::error!(kind = self.kind, queue = %self.queue, job = %self.job, sink = %self.sink, attempts = self.attempts, error = %e, "alert not delivered; giving up")
            }
        }
    }
}

/// A fleet-wide alert was not sent: another daemon of the fleet claimed it
/// for this cooldown and sends it.
#[derive(Debug)]
pub struct AlertDeduped<'a> {
    /// What kind of alert (its snake_case name).
    pub kind: &'static str,
    /// Its queue.
    pub queue: &'a str,
    /// Its job type (`*`: the whole queue).
    pub job: &'a str,
}

impl AlertDeduped<'_> {
    /// Counts `ward_alerts_total{result="deduped"}` and logs at debug.
    pub fn emit(&self) {
        metrics::counter!(m::ALERTS_TOTAL, "kind" => self.kind, "result" => "deduped").increment(1);
        tracing::debug!(kind = self.kind, queue = %self.queue, job = %self.job, "alert claimed by another daemon of the fleet; not sent from here");
    }
}

/// An alert is due but no webhook is configured: it is only logged.
#[derive(Debug)]
pub struct AlertUnsent<'a> {
    /// The alert, as JSON.
    pub body: &'a str,
    /// What kind of alert (its snake_case name).
    pub kind: &'static str,
}

impl AlertUnsent<'_> {
    /// Counts `ward_alerts_total{result="unsent"}` and logs the alert.
    pub fn emit(&self) {
        metrics::counter!(m::ALERTS_TOTAL, "kind" => self.kind, "result" => "unsent").increment(1);
        tracing::warn!(kind = self.kind, alert = %self.body, "alert (no [[alerts.webhook]] configured)");
    }
}

/// A live reload ended: counted by result; an applied one is the config's
/// newest successful load. (The reload logs its own lines: what changed,
/// or why it was refused.)
pub fn config_reload(applied: bool) {
    let result = if applied { "applied" } else { "refused" };
    metrics::counter!(m::CONFIG_RELOADS_TOTAL, "result" => result).increment(1);
    if applied {
        #[allow(
            clippy::cast_precision_loss,
            reason = "milliseconds since 1970 fit an f64 exactly until the year 287396"
        )]
        let now = crate::clock::now_ms() as f64 / 1000.0;
        metrics::gauge!(m::CONFIG_LAST_RELOAD_SUCCESS).set(now);
    }
}

/// Sets `ward_breaker_open{queue, upstream}` (1 open, 0 closed).
pub fn breaker_state(queue: &str, upstream: &str, open: bool) {
    metrics::gauge!(m::BREAKER_OPEN, "queue" => queue.to_string(), "upstream" => upstream.to_string())
        .set(if open { 1.0 } else { 0.0 });
}

/// Sets `ward_upstream_tokens` (`+Inf` without a rate: `tokens` `None`),
/// `_in_flight` and `_held_until_seconds` of `{queue, upstream}`.
pub fn upstream_state(
    queue: &str,
    upstream: &str,
    tokens: Option<f64>,
    in_flight: u64,
    held_until_ms: u64,
) {
    let labels = [
        ("queue", queue.to_string()),
        ("upstream", upstream.to_string()),
    ];
    metrics::gauge!(m::UPSTREAM_TOKENS, &labels).set(tokens.unwrap_or(f64::INFINITY));
    #[allow(clippy::cast_precision_loss, reason = "a gauge")]
    {
        metrics::gauge!(m::UPSTREAM_IN_FLIGHT, &labels).set(in_flight as f64);
        metrics::gauge!(m::UPSTREAM_HELD_UNTIL, &labels).set(held_until_ms as f64 / 1000.0);
    }
}

/// Counts jobs held back by an upstream's limits:
/// `ward_upstream_deferred_total{queue, upstream, reason}`.
pub fn upstream_deferred(queue: &str, upstream: &str, reason: &'static str, n: u64) {
    metrics::counter!(m::UPSTREAM_DEFERRED_TOTAL, "queue" => queue.to_string(), "upstream" => upstream.to_string(), "reason" => reason)
        .increment(n);
}

/// An upstream answered with a Retry-After: every job of it waits.
pub struct UpstreamHeld<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The upstream.
    pub upstream: &'a str,
    /// For how long.
    pub hold: std::time::Duration,
}

impl UpstreamHeld<'_> {
    /// Logs the hold (the gauge follows on the next refresh).
    pub fn emit(&self) {
        tracing::warn!(queue = %self.queue, upstream = %self.upstream, hold = ?self.hold, "upstream asked to wait (Retry-After); every job that calls it waits until then");
    }
}

/// Sets `ward_paused{queue, job_type}` (1 paused, 0 not); `job_type` is
/// `*` for the whole queue.
pub fn paused_state(queue: &str, job_type: &str, paused: bool) {
    let job = if job_type == "*" {
        job_type.to_string()
    } else {
        job_label(queue, job_type)
    };
    metrics::gauge!(m::PAUSED, "queue" => queue.to_string(), "job_type" => job).set(if paused {
        1.0
    } else {
        0.0
    });
}

/// A circuit breaker opened because of this daemon's report: the gauge goes
/// to 1 and a warning says why and for how long. The caller raises the
/// `breaker_open` alert.
#[derive(Debug)]
pub struct BreakerOpened<'a> {
    /// The queue.
    pub queue: &'a str,
    /// The upstream.
    pub upstream: &'a str,
    /// The job type whose failure opened it.
    pub job: &'a str,
    /// Failures that open it (`[defaults.breaker] failures`).
    pub failures: u32,
    /// Within this window.
    pub window: Duration,
    /// How long it stays open.
    pub open_for: Duration,
}

impl BreakerOpened<'_> {
    /// Sets the gauge and logs a warning.
    pub fn emit(&self) {
        breaker_state(self.queue, self.upstream, true);
        let upstream = self.upstream;
        tracing::warn!(
            queue = %self.queue, upstream = %upstream, job = %self.job,
            open_for = ?self.open_for,
            "circuit breaker opened: {} failures within {:?}; jobs that need `{upstream}` wait until it closes",
            self.failures, self.window
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_times_come_from_entry_ids_and_delayed_ids() {
        assert_eq!(enqueued_ms("1763791234567-0"), Some(1_763_791_234_567));
        assert_eq!(enqueued_ms("d1763791234567-12"), Some(1_763_791_234_567));
        assert_eq!(enqueued_ms("order-17"), None);
        assert_eq!(enqueued_ms("1763791234567"), None);
        assert_eq!(enqueued_ms("-1"), None);
        assert_eq!(enqueued_ms("+1-0"), None, "digits only");
        assert_eq!(enqueued_ms("99999999999999999999-0"), None, "past u64");
        assert_eq!(enqueued_ms("1-"), None);
    }
}
