//! Alerts: events (a job was dead-lettered, a circuit breaker opened) go
//! through a bounded channel to one task that groups them per kind, queue
//! and job type, and POSTs one JSON body per group to every webhook.
//!
//! ```text
//! callers ──raise(event)──► [bounded channel] ──► Grouper ──Alert──► webhook (retries, backoff)
//!            (never waits: full = dropped and counted)
//! ```
//!
//! Grouping, per `(kind, queue, job)`:
//! - events are counted in a sliding `window`;
//! - once `threshold` events fall in it, the group waits `group_wait` for
//!   more (a burst of 20 dead letters makes one alert, not 20), then sends
//!   one alert with the count at that moment;
//! - after that, the group stays quiet for `cooldown`, unless its count
//!   reached `growth_factor` times the count last sent.
//!
//! Two kinds are conditions of the whole queue rather than counts of
//! events (`conditions.rs`, judged on every queue sample): `queue_wait` (the
//! oldest ready job waited past `[[queue]] max_wait`) and `stalled` (jobs
//! waited `stall_after` while no outcome was recorded). One event of them
//! makes an alert, repeated only after the cooldown.
//!
//! Every daemon of a queue sees the same queue-wide condition, and the
//! same batch ledger: before an alert of those kinds (and of
//! `retry_spike`) goes out, the daemon claims it in Redis for the cooldown
//! (`store/alert_claim.rs`), so one daemon of the fleet sends it
//! (`fleet.rs`).
//!
//! The [`Grouper`] (`group.rs`) is pure (time is passed in), so its rules
//! are unit-tested without clocks or sockets; `webhook.rs` sends.

mod conditions;
mod fleet;
mod format;
mod group;
mod webhook;

pub use conditions::{WatchRule, conditions};
pub use fleet::register_queue;
pub use group::{Alert, Grouper, Latest};
pub use webhook::Webhook;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::clock::now_ms;
use crate::config::observability::{AlertsConfig, BatchFailureRule};
use crate::job::{DeadReason, Outcome};
use crate::obs::events::{AlertDeduped, AlertDropped, AlertUnsent};
use crate::transition::Completion;
use webhook::http_client;

/// Alert events waiting for the alert task; past this, events are dropped
/// (and counted) rather than slowing down job processing.
pub const CHANNEL_SIZE: usize = 4096;
/// How long a stopping daemon waits for alerts still being delivered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// Jobs were moved to the dead-letter stream.
    DeadLetter,
    /// A circuit breaker opened.
    BreakerOpen,
    /// A job type's retries crossed `[alerts] retry_threshold` in the window.
    RetrySpike,
    /// A batch's dead members crossed `[alerts] batch_failure_ratio`.
    BatchFailures,
    /// The queue's oldest ready job waited longer than `[[queue]] max_wait`.
    QueueWait,
    /// Jobs waited `[[queue]] stall_after` while no daemon recorded any
    /// outcome of the queue.
    Stalled,
}

impl AlertKind {
    /// Every kind (their names are [`crate::obs::metrics::ALERT_KINDS`]).
    pub const ALL: [AlertKind; 6] = [
        AlertKind::DeadLetter,
        AlertKind::BreakerOpen,
        AlertKind::RetrySpike,
        AlertKind::BatchFailures,
        AlertKind::QueueWait,
        AlertKind::Stalled,
    ];

    /// The snake_case name used in alert bodies, logs and labels.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DeadLetter => "dead_letter",
            AlertKind::BreakerOpen => "breaker_open",
            AlertKind::RetrySpike => "retry_spike",
            AlertKind::BatchFailures => "batch_failures",
            AlertKind::QueueWait => "queue_wait",
            AlertKind::Stalled => "stalled",
        }
    }

    /// A condition of the whole queue (judged per sample), not a count of
    /// events: one event alerts, and the alert repeats only after the
    /// cooldown.
    #[must_use]
    pub fn is_condition(self) -> bool {
        matches!(self, AlertKind::QueueWait | AlertKind::Stalled)
    }

    /// Whether every daemon may raise the same alert (a queue-wide
    /// condition, a batch's ledger, a job type's retries), so one daemon of
    /// the fleet claims it before sending.
    #[must_use]
    pub fn fleet_wide(self) -> bool {
        !matches!(self, AlertKind::DeadLetter | AlertKind::BreakerOpen)
    }
}

/// What a queue-wide condition ([`AlertKind::is_condition`]) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Condition {
    /// Jobs ready (not yet delivered) at the sample.
    pub ready: u64,
    /// How long the oldest ready job has waited, ms.
    pub oldest_wait_ms: u64,
    /// The limit crossed (`max_wait` or `stall_after`), ms.
    pub limit_ms: u64,
    /// Since when the condition holds (Unix ms, the Redis clock).
    pub since_ms: u64,
}

/// One thing worth alerting on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    /// What happened.
    pub kind: AlertKind,
    /// The queue.
    pub queue: String,
    /// The job type, as a metrics label (configured or `unknown`).
    pub job: String,
    /// The job concerned.
    pub job_id: String,
    /// When it happened, Unix ms.
    pub at_ms: u64,
    /// Failure class of the last attempt, if one ran.
    pub class: Option<String>,
    /// Failure code of the last attempt.
    pub code: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// From the first attempt's start to now, ms.
    pub elapsed_ms: u64,
    /// The upstream the last failure named.
    pub upstream: Option<String>,
    /// Why (for a dead letter, its reason).
    pub reason: String,
    /// The last error message (not redacted yet).
    pub message: String,
    /// For a queue-wide condition, what it found.
    pub condition: Option<Condition>,
}

impl AlertEvent {
    /// The event for a completion that dead-lettered its job.
    #[must_use]
    pub fn dead_letter(queue: &str, job_label: &str, c: &Completion, reason: DeadReason) -> Self {
        let (class, code, upstream, message) = match c.outcome() {
            Outcome::Failure(f) => (
                Some(f.class.as_str().to_string()),
                f.code.clone(),
                f.upstream.clone(),
                f.message.clone(),
            ),
            Outcome::Success(_) => (None, None, None, String::new()),
        };
        AlertEvent {
            kind: AlertKind::DeadLetter,
            queue: queue.to_string(),
            job: job_label.to_string(),
            job_id: c.job_id().to_string(),
            at_ms: c.finished_ms(),
            class,
            code,
            attempts: c.attempt(),
            elapsed_ms: if c.first_at_ms() > 0 {
                c.finished_ms().saturating_sub(c.first_at_ms())
            } else {
                0
            },
            upstream,
            reason: reason.as_str().to_string(),
            message,
            condition: None,
        }
    }
}

impl AlertEvent {
    /// The event for a completion Redis refused to record, dead-lettered
    /// as `unrecordable` with Redis' words `why` (see
    /// [`crate::obs::unrecordable`]); its class and code are the dead
    /// letter's.
    #[must_use]
    pub fn unrecordable(queue: &str, job_label: &str, c: &Completion, why: &str) -> Self {
        let mut e = AlertEvent::dead_letter(queue, job_label, c, DeadReason::Unrecordable);
        e.class = Some("crash".to_string());
        e.code = Some("unrecordable".to_string());
        e.upstream = None;
        e.message = format!("the outcome could not be recorded in Redis: {why}");
        e
    }

    /// The event for a completion that scheduled a retry of its job.
    #[must_use]
    pub fn retry(queue: &str, job_label: &str, c: &Completion) -> Self {
        let mut e = AlertEvent::dead_letter(queue, job_label, c, DeadReason::AttemptsExhausted);
        e.kind = AlertKind::RetrySpike;
        e.reason = "retrying".to_string();
        e
    }

    /// Upstream `upstream`'s circuit breaker opened; `c` is the completion
    /// whose failure tipped it.
    #[must_use]
    pub fn breaker_open(queue: &str, job_label: &str, upstream: &str, c: &Completion) -> Self {
        let mut e = AlertEvent::dead_letter(queue, job_label, c, DeadReason::AttemptsExhausted);
        e.kind = AlertKind::BreakerOpen;
        e.upstream = Some(upstream.to_string());
        e.reason = format!("circuit breaker of upstream `{upstream}` opened");
        e
    }
}

impl AlertEvent {
    /// A dead member `c` of batch `batch` left `dead` of its `ended`
    /// members dead, at or over `rule`'s ratio.
    #[must_use]
    pub fn batch_failures(
        queue: &str,
        job_label: &str,
        c: &Completion,
        batch: &str,
        dead: u64,
        ended: u64,
        rule: &BatchFailureRule,
    ) -> Self {
        let mut e = AlertEvent::dead_letter(queue, job_label, c, DeadReason::Permanent);
        e.kind = AlertKind::BatchFailures;
        #[allow(
            clippy::cast_precision_loss,
            reason = "member counts are far below 2^52; a percentage for people"
        )]
        let pct = dead as f64 * 100.0 / ended.max(1) as f64;
        e.reason = format!(
            "batch `{batch}`: {dead} of {ended} ended members dead ({pct:.1}%), at or over [alerts] batch_failure_ratio {}",
            rule.ratio
        );
        e
    }
}

static SENDER: OnceLock<mpsc::Sender<AlertEvent>> = OnceLock::new();
static BATCH_RULE: OnceLock<BatchFailureRule> = OnceLock::new();

/// `[alerts] batch_failure_ratio` and `batch_failure_min` of the running
/// daemon, once [`start`]ed with them; `None`: no batch alerts.
#[must_use]
pub fn batch_rule() -> Option<BatchFailureRule> {
    BATCH_RULE.get().copied()
}

/// Hands an event to the alert task without waiting. When the task is
/// behind and its queue is full, the event is dropped, counted in
/// `ward_alerts_dropped_total` and logged. Before [`start`], does nothing.
pub fn raise(event: AlertEvent) {
    let Some(tx) = SENDER.get() else { return };
    if let Err(mpsc::error::TrySendError::Full(e)) = tx.try_send(event) {
        AlertDropped {
            kind: e.kind.as_str(),
            queue: &e.queue,
            job: &e.job,
        }
        .emit();
    }
}

/// The running alert task.
#[derive(Debug)]
pub struct AlertTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Reads the webhooks' secrets and starts the alert task (once per process).
///
/// # Errors
/// A webhook whose secret is missing or whose values are not valid.
pub fn start(cfg: &AlertsConfig) -> Result<AlertTask, String> {
    let client = http_client(&crate::config::Roots::default());
    let resolve = |table: &str, hooks: &[crate::config::observability::WebhookConfig]| {
        hooks
            .iter()
            .enumerate()
            .map(|(i, hook)| {
                Webhook::resolve(hook, &client, cfg.rules.cooldown)
                    .map_err(|e| format!("{table} #{}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let sinks = Sinks {
        first: resolve("[[alerts.webhook]]", &cfg.webhooks)?.into(),
        escalation: resolve("[[alerts.escalation]]", &cfg.escalation)?.into(),
        cooldown: cfg.rules.cooldown,
    };
    if let Some(rule) = cfg.batch_failures {
        let _ = BATCH_RULE.set(rule);
    }
    let (tx, rx) = mpsc::channel(CHANNEL_SIZE);
    if SENDER.set(tx).is_err() {
        tracing::warn!("alerts were started twice in one process; the first start is used");
    }
    let (stop, stop_rx) = watch::channel(false);
    let grouper = Grouper::new(cfg.rules, cfg.environment.clone());
    let task = tokio::spawn(run(rx, grouper, sinks, stop_rx));
    Ok(AlertTask { stop, task })
}

impl AlertTask {
    /// Sends what is still gathering and waits (at most 10 s) for deliveries
    /// under way.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    mut rx: mpsc::Receiver<AlertEvent>,
    mut grouper: Grouper,
    sinks: Sinks,
    mut stop: watch::Receiver<bool>,
) {
    let mut sending = JoinSet::new();
    loop {
        while sending.try_join_next().is_some() {}
        let wait = grouper.next_due().map_or(Duration::from_secs(3600), |due| {
            Duration::from_millis(due.saturating_sub(now_ms()))
        });
        tokio::select! {
            event = rx.recv() => match event {
                Some(e) => grouper.observe(e, now_ms()),
                None => break,
            },
            () = tokio::time::sleep(wait) => {
                for alert in grouper.take_due(now_ms()) {
                    dispatch(&mut sending, &sinks, &alert);
                }
            }
            _ = stop.changed() => break,
        }
    }
    // Stopping: what arrived and every group still gathering goes out now.
    while let Ok(e) = rx.try_recv() {
        grouper.observe(e, now_ms());
    }
    for alert in grouper.take_all(now_ms()) {
        dispatch(&mut sending, &sinks, &alert);
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while sending.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            alerts = sending.len(),
            "stopping with alert deliveries still retrying; they are abandoned"
        );
    }
}

/// Where alerts go: every first alert to `first`, an escalation to
/// `escalation` only.
struct Sinks {
    first: Arc<[Webhook]>,
    escalation: Arc<[Webhook]>,
    /// `[alerts] cooldown`: how long a fleet-wide alert's claim lasts.
    cooldown: Duration,
}

fn dispatch(sending: &mut JoinSet<()>, all: &Sinks, alert: &Alert) {
    let sinks = if alert.escalated {
        &all.escalation
    } else {
        &all.first
    };
    if sinks.is_empty() {
        let body = serde_json::to_string(alert).unwrap_or_default();
        AlertUnsent {
            body: &body,
            kind: alert.kind.as_str(),
        }
        .emit();
        return;
    }
    let mut deliveries = Vec::new();
    for sink in sinks.iter() {
        let body = match sink.body(alert) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize an alert");
                continue;
            }
        };
        deliveries.push(sink.clone().deliver(
            body,
            alert.kind,
            alert.queue.clone(),
            alert.job.clone(),
        ));
    }
    if !alert.kind.fleet_wide() {
        for d in deliveries {
            sending.spawn(d);
        }
        return;
    }
    // Claimed first: another daemon of the fleet may send this one.
    let (alert, cooldown) = (alert.clone(), all.cooldown);
    sending.spawn(async move {
        if fleet::may_send(&alert, cooldown).await {
            futures_util::future::join_all(deliveries).await;
        } else {
            AlertDeduped {
                kind: alert.kind.as_str(),
                queue: &alert.queue,
                job: &alert.job,
            }
            .emit();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_preregistered_under_its_name() {
        assert_eq!(
            AlertKind::ALL.map(AlertKind::as_str),
            crate::obs::metrics::ALERT_KINDS
        );
    }
}
