//! What each leased delivery needs: an attempt, or an outcome already
//! known without running anything (a malformed entry, a job type with no
//! plugin, a duplicate of an idempotency key, a job held back by an open
//! circuit breaker), and the builders of those completions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::job::{DeadReason, FailureClass, Outcome};
use crate::store::{self, Action, Completion, Delivery, KeyCheck, Queue};

use super::plugins::JobType;

/// After idempotency keys: how long to wait before asking Redis again.
const CHECK_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// What to do with one leased delivery.
pub(crate) enum Work {
    /// Run the plugin.
    Run(store::JobEntry, Arc<JobType>),
    /// Nothing to run: the outcome is already known (malformed, no plugin,
    /// duplicate, lost attempt).
    Record(Completion),
}

/// Sorts leased deliveries into attempts to run and outcomes already known,
/// checking idempotency keys for the whole batch in one round trip.
pub(crate) async fn triage(
    queue: &Queue,
    queue_name: &str,
    jobs: &HashMap<String, Arc<JobType>>,
    deliveries: Vec<Delivery>,
    breakers: Option<&Breakers>,
) -> Vec<Work> {
    let mut out = Vec::with_capacity(deliveries.len());
    let mut keyed: Vec<(store::JobEntry, Arc<JobType>)> = Vec::new();
    for d in deliveries {
        match d.parse() {
            Err(m) => out.push(Work::Record(malformed(queue_name, m))),
            Ok(entry) => match jobs.get(&entry.job) {
                None => out.push(Work::Record(no_plugin(queue_name, jobs, entry))),
                Some(jt) => match held_back(breakers, jt) {
                    Some((upstream, wait)) => {
                        out.push(Work::Record(deferred(
                            queue_name, entry, jt, &upstream, wait,
                        )));
                    }
                    None if entry.idempotency_key.is_some() => keyed.push((entry, jt.clone())),
                    None => out.push(Work::Run(entry, jt.clone())),
                },
            },
        }
    }
    if keyed.is_empty() {
        return out;
    }
    let items: Vec<(&str, &str, Duration)> = keyed
        .iter()
        .map(|(e, jt)| {
            (
                e.id.as_str(),
                e.idempotency_key.as_deref().unwrap_or(""),
                jt.idempotency_ttl,
            )
        })
        .collect();
    let mut backoff = CHECK_RETRY;
    let checks = loop {
        match queue.check_keys(&items).await {
            Ok(c) => break c,
            Err(e) => {
                // Running without the check could run a completed job twice;
                // the deliveries stay leased (and renewed) while Redis is away.
                let delay = backoff.next();
                tracing::error!(queue = %queue_name, error = %e, retry_in = ?delay, "cannot check idempotency keys; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    };
    for ((entry, jt), check) in keyed.into_iter().zip(checks) {
        match check {
            KeyCheck::Run => out.push(Work::Run(entry, jt)),
            KeyCheck::DuplicateOf(owner) => {
                tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, duplicate_of = %owner, "duplicate enqueue of an idempotency key; acknowledged without running");
                out.push(Work::Record(duplicate(entry, &jt, Some(owner))));
            }
            KeyCheck::Completed => {
                tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, "redelivery of a job that already succeeded; acknowledged without running");
                out.push(Work::Record(duplicate(entry, &jt, None)));
            }
        }
    }
    out
}

/// The open breaker that holds `jt`'s jobs back, and for how long.
fn held_back(breakers: Option<&Breakers>, jt: &JobType) -> Option<(String, Duration)> {
    if jt.upstreams.is_empty() {
        return None;
    }
    let b = breakers?;
    let (upstream, until) = b.open_among(&jt.upstreams)?;
    Some((upstream, b.wait_until(until)))
}

/// A job not run because its upstream's breaker is open: back to the
/// delayed set until the breaker's time is up (plus a little jitter, so the
/// held-back jobs do not all arrive at once), without using an attempt.
fn deferred(
    queue_name: &str,
    entry: store::JobEntry,
    jt: &JobType,
    upstream: &str,
    wait: Duration,
) -> Completion {
    tracing::debug!(queue = %queue_name, job_id = %entry.id, job = %entry.job, upstream, wait = ?wait, "circuit breaker open; job held back");
    let message = format!(
        "not run: the circuit breaker of upstream `{upstream}` is open for another {}",
        humantime::format_duration(Duration::from_millis(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
        ))
    );
    let outcome = Outcome::failure(FailureClass::Transient, message)
        .with_code(crate::breaker::CODE)
        .with_upstream(upstream);
    let attempt = entry.attempt.saturating_sub(1);
    let mut c = completion(entry, Some(jt), outcome, Action::Retry);
    c.attempt = attempt;
    let jitter = rand::random::<u64>() % 250;
    c.delay_ms = u64::try_from(wait.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(jitter)
        .max(1);
    c
}

/// A completion for `entry` with nothing decided yet; callers set the rest.
pub(crate) fn completion(
    entry: store::JobEntry,
    job_type: Option<&JobType>,
    outcome: Outcome,
    action: Action,
) -> Completion {
    let now = store::now_ms();
    Completion {
        entry_id: entry.entry_id,
        job_id: entry.id,
        job: entry.job,
        attempt: entry.attempt,
        started_ms: 0,
        first_at_ms: entry.first_at.unwrap_or(0),
        delay_ms: 0,
        finished_ms: now,
        payload: entry.payload,
        outcome,
        action,
        plugin_digest: job_type.map_or_else(|| "".into(), |jt| jt.plugin.digest().clone()),
        checkpoint: entry.checkpoint,
        extra: entry.extra,
        idempotency_key: entry.idempotency_key,
        idempotency_ttl: job_type.map_or(crate::config::DEFAULT_IDEMPOTENCY_TTL, |jt| {
            jt.idempotency_ttl
        }),
        lease_expiries: entry.lease_expiries,
        duplicate_of: None,
        dead_payload: None,
    }
}

pub(crate) fn malformed(queue_name: &str, m: store::Malformed) -> Completion {
    tracing::warn!(queue = %queue_name, entry = %m.entry_id, why = %m.why, "malformed entry; dead-lettering it");
    let entry = store::JobEntry {
        id: m.entry_id.clone(),
        entry_id: m.entry_id,
        job: String::new(),
        payload: m.payload,
        attempt: 1,
        idempotency_key: None,
        checkpoint: None,
        first_at: None,
        last_delay_ms: None,
        lease_expiries: 0,
        extra: m.extra,
    };
    let outcome = Outcome::failure(FailureClass::Permanent, m.why).with_code("malformed-entry");
    let mut c = completion(entry, None, outcome, Action::Dead(DeadReason::Malformed));
    c.attempt = 0;
    c
}

fn no_plugin(
    queue_name: &str,
    jobs: &HashMap<String, Arc<JobType>>,
    entry: store::JobEntry,
) -> Completion {
    let mut known: Vec<&str> = jobs.keys().map(String::as_str).collect();
    known.sort_unstable();
    let why = format!(
        "no [[job]] named `{}` in queue `{queue_name}` (configured: {})",
        entry.job,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    );
    tracing::warn!(queue = %queue_name, job_id = %entry.id, job = %entry.job, "{why}; dead-lettering it");
    let outcome = Outcome::failure(FailureClass::Permanent, why).with_code("no-plugin");
    let attempt = entry.attempt.saturating_sub(1);
    let mut c = completion(entry, None, outcome, Action::Dead(DeadReason::NoPlugin));
    c.attempt = attempt;
    c
}

fn duplicate(entry: store::JobEntry, job_type: &JobType, owner: Option<String>) -> Completion {
    let mut c = completion(
        entry,
        Some(job_type),
        Outcome::Success(Vec::new()),
        Action::Duplicate,
    );
    c.duplicate_of = owner;
    c.attempt = c.attempt.saturating_sub(1);
    c
}
