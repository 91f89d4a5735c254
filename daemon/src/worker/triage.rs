//! What each leased delivery needs: an attempt, or an outcome already
//! known without running anything (a malformed entry, a job type with no
//! plugin, a duplicate of an idempotency key, a job held back by an open
//! circuit breaker or a pause), and the builders of those completions
//! (`admit.rs`, run after the group gate, holds jobs back by their
//! upstreams' limits).

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::job::{DeadReason, FailureClass, JobEntry, Malformed, Outcome};
use crate::redact;
use crate::store::{self, KeyCheck, Keys, Leased, Pauses, Queue};
use crate::transition::{Completion, Deferral, Ran, Transition};

use super::cancels::Cancels;
use super::plugins::{JobType, JobTypes};

/// The longest a job waits behind an open breaker before it is looked at
/// again: a breaker an operator forces open for hours, then closes early
/// (`ward breakers close`), releases its jobs within this time. Normal
/// openings (`open_for`, 30 s unless set) are shorter, so this rarely
/// shortens anything.
const BREAKER_RECHECK: Duration = Duration::from_secs(30);

/// After idempotency keys: how long to wait before asking Redis again.
const CHECK_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// What to do with one leased delivery.
pub(crate) enum Work {
    /// Run the plugin.
    Run(JobEntry, Arc<JobType>),
    /// Nothing to run: the outcome is already known (malformed, no plugin,
    /// duplicate, lost attempt).
    Record(Completion),
}

/// What may stop a delivery from running, as this daemon sees it now.
#[derive(Clone, Copy)]
pub(crate) struct Gates<'a> {
    /// The queue's circuit breakers, when a job type lists upstreams.
    pub(crate) breakers: Option<&'a Breakers>,
    /// The queue's pauses.
    pub(crate) pauses: &'a Pauses,
    /// Cancel requests.
    pub(crate) cancels: &'a Cancels,
}

/// Sorts leased deliveries into attempts to run and outcomes already known.
/// Idempotency keys were claimed by the lease; a keyed delivery it did not
/// claim (a plain read, or its job type came with a reload meanwhile) is
/// checked here, the whole batch in one round trip, after the keys claimed
/// for entries that never run are given back ([`give_back_keys`]), so a
/// delivery the lease found behind such an entry is checked again.
pub(crate) async fn triage(
    queue: &Queue,
    builder: Builder<'_>,
    jobs: &JobTypes,
    deliveries: Vec<Leased>,
    gates: Gates<'_>,
    max_payload: usize,
) -> Vec<Work> {
    let queue_name = builder.queue;
    let now = crate::clock::now_ms();
    let mut out = Vec::with_capacity(deliveries.len());
    let mut keyed: Vec<(JobEntry, Arc<JobType>)> = Vec::new();
    let mut never_run: Vec<(String, String)> = Vec::new();
    for (d, check) in deliveries {
        let parsed = d.parse();
        if let Ok(entry) = &parsed
            && entry.is_first_delivery()
        {
            crate::obs::events::JobEnqueued {
                queue: queue_name,
                job: &entry.job,
                metrics: jobs.get(&entry.job).map(|jt| &*jt.metrics),
            }
            .emit();
        }
        match parsed {
            Err(m) => {
                if let Some(key) = &m.unclaimed_key {
                    never_run.push((m.entry_id.clone(), key.clone()));
                }
                out.push(Work::Record(malformed(builder, m)));
            }
            // A cancel wins over a pause: the job is not wanted at all.
            Ok(entry) if gates.cancels.is_requested(&entry.id) => {
                out.push(Work::Record(cancelled(builder, entry, jobs)));
            }
            Ok(entry) if gates.pauses.holds(&entry.job, now).is_some() => {
                let queue = gates.pauses.holds(&entry.job, now) == Some(true);
                let jt = jobs.get(&entry.job).map(Arc::as_ref);
                out.push(Work::Record(held(builder, entry, jt, queue)));
            }
            // No pause at all (the usual case): nothing read per job.
            Ok(entry)
                if !gates.pauses.0.is_empty() && gates.pauses.holds_batch(entry.batch(), now) =>
            {
                let jt = jobs.get(&entry.job).map(Arc::as_ref);
                out.push(Work::Record(batch_held(builder, entry, jt)));
            }
            Ok(entry) if entry.payload.len() > max_payload => {
                if entry.is_first_delivery()
                    && let Some(key) = &entry.idempotency_key
                {
                    never_run.push((entry.id.clone(), key.clone()));
                }
                out.push(Work::Record(too_large(builder, entry, max_payload)));
            }
            Ok(entry) => match jobs.get(&entry.job) {
                None => out.push(Work::Record(no_plugin(builder, jobs, entry))),
                Some(jt) => match held_back(gates.breakers, jt) {
                    Some((upstream, wait)) => {
                        out.push(Work::Record(deferred(builder, entry, jt, upstream, wait)));
                    }
                    None if entry.idempotency_key.is_none() => {
                        out.push(Work::Run(entry, jt.clone()));
                    }
                    None => match check {
                        // Its key was claimed by an entry of this read that
                        // never runs, and is given back below: ask again.
                        Some(KeyCheck::DuplicateOf(owner))
                            if never_run.iter().any(|(e, _)| *e == owner) =>
                        {
                            keyed.push((entry, jt.clone()));
                        }
                        Some(check) => out.push(checked(builder, entry, jt.clone(), check)),
                        // `ward_enqueue` set its key to it as it added it.
                        None if entry.key_claimed => out.push(Work::Run(entry, jt.clone())),
                        None => keyed.push((entry, jt.clone())),
                    },
                },
            },
        }
    }
    give_back_keys(queue, &never_run).await;
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
        out.push(checked(builder, entry, jt, check));
    }
    out
}

/// How often giving back the keys of entries that never ran is tried.
const GIVE_BACK_TRIES: u32 = 5;

/// Gives back the idempotency keys a lease claimed for first deliveries
/// that are dead-lettered without running for what they are (not a job at
/// all, or a payload over `max_payload`), `(entry id, key)` each: the lease
/// claims a keyed entry's key as it reads it, before the entry is checked,
/// and a key kept by an entry that never ran would make the producer's
/// corrected resend with the same key a duplicate of it. If Redis cannot
/// be reached for it, the entry is dead-lettered all the same and the key
/// stays until its TTL; the log names the key, for an operator to delete.
pub(crate) async fn give_back_keys(queue: &Queue, never_run: &[(String, String)]) {
    if never_run.is_empty() {
        return;
    }
    let items: Vec<(&str, &str)> = never_run
        .iter()
        .map(|(entry, key)| (entry.as_str(), key.as_str()))
        .collect();
    let mut backoff = CHECK_RETRY;
    for tried in 1..=GIVE_BACK_TRIES {
        match queue.release_keys(&items).await {
            Ok(()) => return,
            Err(e) if tried == GIVE_BACK_TRIES => {
                for (entry, key) in never_run {
                    tracing::error!(queue = %queue.keys.queue, entry = %entry, key = %queue.keys.idempotency(key), error = %e, "cannot give back the idempotency key of an entry dead-lettered without running; until it expires a resend with this key is taken for a duplicate: delete the key to let it run");
                }
            }
            Err(e) => {
                let delay = backoff.next();
                tracing::warn!(queue = %queue.keys.queue, error = %e, retry_in = ?delay, "cannot give back the idempotency keys of entries dead-lettered without running; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// What a keyed delivery becomes, given what its key's check said.
fn checked(builder: Builder<'_>, entry: JobEntry, jt: Arc<JobType>, check: KeyCheck) -> Work {
    let queue_name = builder.queue;
    match check {
        KeyCheck::Run => Work::Run(entry, jt),
        KeyCheck::DuplicateOf(owner) => {
            tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, duplicate_of = %owner, "duplicate enqueue of an idempotency key; acknowledged without running");
            Work::Record(duplicate(builder, entry, &jt, Some(owner)))
        }
        KeyCheck::Unusable(redis_says) => {
            let key =
                Keys::new(queue_name).idempotency(entry.idempotency_key.as_deref().unwrap_or(""));
            let why = format!(
                "its idempotency key `{key}` cannot be claimed ({redis_says}): Ward did not write that key; see what it holds with `TYPE {key}`, remove it, then requeue this job"
            );
            tracing::error!(queue = %queue_name, job_id = %entry.id, job = %entry.job, key = %key, "an idempotency key holds another type; dead-lettering the job without running it");
            Work::Record(builder.unrunnable(
                entry,
                why,
                "idempotency-key-unusable",
                DeadReason::KeyUnusable,
            ))
        }
        KeyCheck::Completed => {
            tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, "redelivery of a job that already succeeded; acknowledged without running");
            Work::Record(duplicate(builder, entry, &jt, None))
        }
    }
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

/// What one queue's completions are built with besides their own facts:
/// how its dead letters show their payloads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Builder<'a> {
    /// The queue (an oversized payload's marker names the job's record).
    pub(crate) queue: &'a str,
    /// Largest payload copied into a dead letter.
    pub(crate) payload_max: usize,
}

impl Builder<'_> {
    /// What the completion of `entry` records beside its outcome when no
    /// attempt ran (callers that ran one set its times): the job type's
    /// plugin and idempotency TTL, finished now, and for a dead letter what
    /// it shows of the payload.
    pub(crate) fn ran(
        self,
        entry: &JobEntry,
        job_type: Option<&JobType>,
        transition: &Transition,
    ) -> Ran {
        self.ran_at(entry, job_type, transition, store::now_ms())
    }

    /// [`Builder::ran`], finished at `finished_ms` (Unix ms): an attempt
    /// knows when it ended without reading the clock again.
    pub(crate) fn ran_at(
        self,
        entry: &JobEntry,
        job_type: Option<&JobType>,
        transition: &Transition,
        finished_ms: u64,
    ) -> Ran {
        Ran {
            plugin_digest: job_type.map_or_else(|| "".into(), |jt| jt.plugin.digest().clone()),
            idempotency_ttl: job_type.map_or(crate::config::DEFAULT_IDEMPOTENCY_TTL, |jt| {
                jt.idempotency_ttl
            }),
            started_ms: 0,
            first_at_ms: entry.first_at.unwrap_or(0),
            finished_ms,
            checkpoint: None,
            lost: false,
            dead_payload: self.dead_payload(entry, job_type, transition),
            results: job_type.map(|jt| jt.results).unwrap_or_default(),
        }
    }

    /// What a dead letter of `entry` shows of its payload: the job type's
    /// secret fields redacted, a marker instead of a payload over the
    /// queue's maximum; `None` for the payload as it is, or when
    /// `transition` is no dead letter. Done before anything reaches Redis
    /// or a log line; the job record keeps the original for a requeue.
    fn dead_payload(
        self,
        entry: &JobEntry,
        job_type: Option<&JobType>,
        transition: &Transition,
    ) -> Option<Vec<u8>> {
        if !matches!(transition, Transition::DeadLetter(_)) {
            return None;
        }
        let redact = job_type.map_or(&[][..], |jt| jt.redact.as_slice());
        let record = Keys::new(self.queue).record(&entry.id);
        match redact::dead_payload(&entry.payload, redact, self.payload_max, &record) {
            std::borrow::Cow::Owned(shown) => Some(shown),
            std::borrow::Cow::Borrowed(_) => None,
        }
    }

    /// The completion of `entry` when nothing ran.
    pub(super) fn not_run(
        self,
        entry: JobEntry,
        job_type: Option<&JobType>,
        outcome: Outcome,
        transition: Transition,
    ) -> Completion {
        let ran = self.ran(&entry, job_type, &transition);
        Completion::new(entry, outcome, transition, ran)
    }

    /// The dead letter of an entry that cannot run at all (`why`, with
    /// failure code `code`): a permanent failure, no attempt spent.
    fn unrunnable(
        self,
        entry: JobEntry,
        why: String,
        code: &str,
        reason: DeadReason,
    ) -> Completion {
        let outcome = Outcome::failure(FailureClass::Permanent, why).with_code(code);
        self.not_run(entry, None, outcome, Transition::DeadLetter(reason))
    }
}

/// A job not run because its upstream's breaker is open: back to the
/// delayed set until the breaker's time is up (plus a little jitter, so the
/// held-back jobs do not all arrive at once), without using an attempt.
fn deferred(
    builder: Builder<'_>,
    entry: JobEntry,
    jt: &JobType,
    upstream: String,
    wait: Duration,
) -> Completion {
    tracing::debug!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, upstream, wait = ?wait, "circuit breaker open; job held back");
    let why = Deferral::BreakerOpen { upstream };
    let outcome = why.recorded(wait);
    let jitter = rand::random::<u64>() % 250;
    let delay = Duration::from_millis(
        u64::try_from(wait.min(BREAKER_RECHECK).as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(jitter)
            .max(1),
    );
    builder.not_run(entry, Some(jt), outcome, Transition::Defer { delay, why })
}

/// A job not run because its job type, or its whole queue (`queue`), is
/// paused: held in `ward:{Q}:held` until a resume, without using an attempt.
fn held(builder: Builder<'_>, entry: JobEntry, jt: Option<&JobType>, queue: bool) -> Completion {
    tracing::debug!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, whole_queue = queue, "paused; job held");
    let why = Deferral::Paused { queue };
    let outcome = why.recorded(Duration::ZERO);
    let transition = Transition::Defer {
        delay: Duration::ZERO,
        why,
    };
    builder.not_run(entry, jt, outcome, transition)
}

/// A member of a paused (quarantined) batch: held like a paused job
/// type's job until `ward batch resume`, without using an attempt.
fn batch_held(builder: Builder<'_>, entry: JobEntry, jt: Option<&JobType>) -> Completion {
    let batch = entry.batch().unwrap_or_default().to_string();
    tracing::debug!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, batch, "batch paused; job held");
    let why = Deferral::BatchPaused { batch };
    let outcome = why.recorded(Duration::ZERO);
    let transition = Transition::Defer {
        delay: Duration::ZERO,
        why,
    };
    builder.not_run(entry, jt, outcome, transition)
}

/// An entry that could not be read as a job: dead-lettered as it is.
pub(crate) fn malformed(builder: Builder<'_>, m: Malformed) -> Completion {
    tracing::warn!(queue = %builder.queue, entry = %m.entry_id, why = %m.why, "malformed entry; dead-lettering it");
    let entry = JobEntry {
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
        key_claimed: false,
        extra: m.extra,
    };
    builder.unrunnable(entry, m.why, "malformed-entry", DeadReason::Malformed)
}

/// An entry whose payload is over the queue's `max_payload`: dead-lettered
/// without running, so no plugin instance ever holds it. The record keeps
/// the job type and payload, so it can be requeued once the limit is raised.
fn too_large(builder: Builder<'_>, entry: JobEntry, max: usize) -> Completion {
    let why = format!(
        "the payload is {} bytes, over the queue's max_payload of {max} bytes; raise [[queue]] max_payload or send a smaller payload (e.g. a reference to the data)",
        entry.payload.len()
    );
    tracing::warn!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, why = %why, "payload too large; dead-lettering it");
    builder.unrunnable(entry, why, "payload-too-large", DeadReason::Malformed)
}

fn no_plugin(builder: Builder<'_>, jobs: &JobTypes, entry: JobEntry) -> Completion {
    let queue_name = builder.queue;
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
    builder.unrunnable(entry, why, "no-plugin", DeadReason::NoPlugin)
}

/// A delivery whose job an operator cancelled before it ran: recorded as
/// `cancelled`, never run.
fn cancelled(builder: Builder<'_>, entry: JobEntry, jobs: &JobTypes) -> Completion {
    tracing::info!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, "job cancelled before it ran; not running it");
    let outcome = Outcome::failure(
        FailureClass::Cancelled,
        "cancelled by an operator before it ran",
    )
    .with_code("cancelled");
    let jt = jobs.get(&entry.job).map(Arc::as_ref);
    builder.not_run(entry, jt, outcome, Transition::Cancel { ran: false })
}

fn duplicate(
    builder: Builder<'_>,
    entry: JobEntry,
    job_type: &JobType,
    owner: Option<String>,
) -> Completion {
    builder.not_run(
        entry,
        Some(job_type),
        Outcome::Success(Vec::new()),
        Transition::Duplicate { of: owner },
    )
}
