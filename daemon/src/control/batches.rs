//! Batches as an operator sees them: create, seal, show (counts, times and
//! the failures grouped by class and code), list. Shared by `ward batch`
//! and the admin API; the ledger itself is kept by the store's scripts
//! (see `store/batches.rs`).

use std::collections::BTreeMap;

use crate::store::{BatchLedger, Callbacks, FailedMember, Queue, QueueError, Sealed, bad_batch_id};

use super::audit::{self, Action, Actor};

/// Most batches [`list`] returns.
pub const LIST_MAX: usize = 1000;

/// Why a batch action was refused (nothing changed), or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The id is not one a batch can have, or a callback's job type not
    /// one a job type can have.
    #[error("{0}")]
    BadId(String),
    /// `create` with the id of a batch that exists.
    #[error(
        "batch `{id}` exists already in queue `{queue}`; pick another id, or add to it with `ward enqueue --batch {id}`"
    )]
    Exists {
        /// The queue.
        queue: String,
        /// The batch id.
        id: String,
    },
    /// No batch of that id in the queue.
    #[error("queue `{queue}` has no batch `{id}` (see `ward batch list {queue}`)")]
    Missing {
        /// The queue.
        queue: String,
        /// The batch id.
        id: String,
    },
    /// A pause that cannot be (its end is already past).
    #[error(transparent)]
    Pause(#[from] super::pause::PauseError),
    /// Redis failed.
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// The failures of one class and code, with a sample.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailureGroup {
    /// The failure class (`permanent`, `transient`, ..., `crash`).
    pub class: String,
    /// The failure code ('' for none).
    pub code: String,
    /// Why they were dead-lettered (the first member's reason).
    pub reason: String,
    /// How many members.
    pub count: u64,
    /// One member's message.
    pub sample_message: String,
    /// That member's job id.
    pub sample_job_id: String,
}

/// One batch as `ward batch show` and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchView {
    /// The queue.
    pub queue: String,
    /// The ledger: counts, state, times.
    #[serde(flatten)]
    pub ledger: BatchLedger,
    /// `open`, `sealed` or `finished` (sealed with nothing pending).
    pub status: &'static str,
    /// From creation to the finish (or to now), ms.
    pub elapsed_ms: u64,
    /// The dead members grouped by class and code, largest group first.
    pub failures: Vec<FailureGroup>,
    /// One line: "12 of 40000 failed: 9 permanent [invalid-row], ...".
    pub summary: String,
    /// Members under way (leased by a daemon, not yet recorded), of the
    /// `pending` ones; counted by `show` only (`None` in a list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<u64>,
    /// Its pause (quarantine, `ward batch pause`), if it has one.
    pub paused: Option<crate::store::Pause>,
}

/// Creates the open batch `id` (a generated one when `None`) with its
/// `callbacks`; returns its id.
///
/// # Errors
/// A bad or taken id, a callback job type no job type could have, or Redis
/// errors.
pub async fn create(
    q: &Queue,
    actor: &Actor,
    id: Option<&str>,
    callbacks: &Callbacks,
) -> Result<String, BatchError> {
    for (name, job) in [
        ("on_complete", &callbacks.on_complete),
        ("on_success", &callbacks.on_success),
    ] {
        if let Some(job) = job
            && let Some(why) = crate::config::check_name(job)
        {
            return Err(BatchError::BadId(format!("{name} job type `{job}` {why}")));
        }
    }
    let id = match id {
        Some(id) => id.to_string(),
        None => format!(
            "b{}-{:06x}",
            crate::clock::now_ms(),
            rand::random::<u32>() & 0xff_ffff
        ),
    };
    if let Some(why) = bad_batch_id(&id) {
        return Err(BatchError::BadId(why));
    }
    let created = q.create_batch(&id, callbacks).await?;
    // Recorded either way: the trail shows who tried what.
    audit::record(
        &q.store(),
        actor,
        Action {
            action: "batch-create",
            queue: &q.keys.queue,
            target: id.clone(),
            count: u64::from(created),
            detail: Some(serde_json::json!({ "callbacks": callbacks })),
            ..Action::default()
        },
    )
    .await?;
    if !created {
        return Err(BatchError::Exists {
            queue: q.keys.queue.clone(),
            id,
        });
    }
    Ok(id)
}

/// Seals batch `id`; returns false when it was sealed already.
///
/// # Errors
/// No such batch, or Redis errors.
pub async fn seal(q: &Queue, actor: &Actor, id: &str) -> Result<bool, BatchError> {
    let sealed = q.seal_batch(id).await?;
    // Recorded either way: the trail shows who tried what.
    audit::record(
        &q.store(),
        actor,
        Action {
            action: "batch-seal",
            queue: &q.keys.queue,
            target: id.to_string(),
            count: u64::from(sealed == Sealed::Now),
            ..Action::default()
        },
    )
    .await?;
    match sealed {
        Sealed::Missing => Err(missing(q, id)),
        Sealed::Already => Ok(false),
        Sealed::Now => Ok(true),
    }
}

/// Batch `id` with its failures grouped, as of `now_ms`.
///
/// # Errors
/// No such batch, or Redis errors.
pub async fn show(q: &Queue, id: &str, now_ms: u64) -> Result<BatchView, BatchError> {
    let Some(ledger) = q.batch(id).await? else {
        return Err(missing(q, id));
    };
    let failed = if ledger.dead > 0 {
        q.batch_failures(id).await?
    } else {
        Vec::new()
    };
    let running = if ledger.pending > 0 {
        super::batch_pause::running(q, id).await?
    } else {
        0
    };
    let mut v = view(&q.keys.queue, ledger, &failed, now_ms);
    v.running = Some(running);
    v.paused = super::batch_pause::paused(q, id).await?;
    Ok(v)
}

/// The queue's batches, newest first (at most [`LIST_MAX`]), without
/// their failures.
///
/// # Errors
/// Redis errors.
pub async fn list(q: &Queue, now_ms: u64) -> Result<Vec<BatchView>, BatchError> {
    let mut pauses = q.pauses().await?;
    Ok(q.batches(LIST_MAX)
        .await?
        .into_iter()
        .map(|l| {
            let paused = pauses.0.remove(&super::batch_pause::field(&l.id));
            BatchView {
                paused,
                ..view(&q.keys.queue, l, &[], now_ms)
            }
        })
        .collect())
}

/// Whether batch `id` exists; an action on a missing one is refused
/// before it walks anything.
///
/// # Errors
/// [`BatchError::Missing`], or Redis errors.
pub async fn exists(q: &Queue, id: &str) -> Result<(), BatchError> {
    match q.batch(id).await? {
        Some(_) => Ok(()),
        None => Err(missing(q, id)),
    }
}

fn missing(q: &Queue, id: &str) -> BatchError {
    BatchError::Missing {
        queue: q.keys.queue.clone(),
        id: id.to_string(),
    }
}

/// The view of `ledger` with `failed` grouped. Pure, for tests.
#[must_use]
pub fn view(queue: &str, ledger: BatchLedger, failed: &[FailedMember], now_ms: u64) -> BatchView {
    let failures = group(failed);
    let status = match (ledger.sealed, ledger.pending) {
        (false, _) => "open",
        (true, 0) => "finished",
        (true, _) => "sealed",
    };
    // A requeued member may run after the first finish: elapsed counts to
    // the first finish (it is the batch's run), or to now while running.
    let end = match (status, ledger.finished_at_ms) {
        ("finished", Some(f)) => f,
        _ => now_ms,
    };
    let elapsed_ms = end.saturating_sub(ledger.created_at_ms);
    let summary = summary(&ledger, &failures);
    BatchView {
        queue: queue.to_string(),
        ledger,
        status,
        elapsed_ms,
        failures,
        summary,
        running: None,
        paused: None,
    }
}

/// The dead members by class and code, largest group first.
fn group(failed: &[FailedMember]) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<(&str, &str), FailureGroup> = BTreeMap::new();
    for m in failed {
        groups
            .entry((&m.class, &m.code))
            .and_modify(|g| g.count += 1)
            .or_insert_with(|| FailureGroup {
                class: m.class.clone(),
                code: m.code.clone(),
                reason: m.reason.clone(),
                count: 1,
                sample_message: m.message.clone(),
                sample_job_id: m.job_id.clone(),
            });
    }
    let mut out: Vec<FailureGroup> = groups.into_values().collect();
    out.sort_by_key(|g| std::cmp::Reverse(g.count));
    out
}

/// "12 of 40000 failed: 9 permanent [invalid-row], 3 transient [http-503]".
fn summary(l: &BatchLedger, failures: &[FailureGroup]) -> String {
    let mut s = format!("{} of {} failed", l.dead, l.total);
    if !failures.is_empty() {
        let parts: Vec<String> = failures
            .iter()
            .map(|g| {
                if g.code.is_empty() {
                    format!("{} {}", g.count, g.class)
                } else {
                    format!("{} {} [{}]", g.count, g.class, g.code)
                }
            })
            .collect();
        s.push_str(": ");
        s.push_str(&parts.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, class: &str, code: &str, message: &str) -> FailedMember {
        FailedMember {
            job_id: id.into(),
            class: class.into(),
            code: code.into(),
            message: message.into(),
            reason: "permanent".into(),
            attempts: 1,
            at: 5,
        }
    }

    #[test]
    fn failures_are_grouped_by_class_and_code_largest_first() {
        let ledger = BatchLedger {
            id: "b".into(),
            sealed: true,
            created_at_ms: 1_000,
            finished_at_ms: Some(4_000),
            total: 40_000,
            succeeded: 39_988,
            dead: 12,
            ..BatchLedger::default()
        };
        let mut failed: Vec<FailedMember> = (0..9)
            .map(|i| {
                member(
                    &format!("p{i}"),
                    "permanent",
                    "invalid-row",
                    "row 3: no email",
                )
            })
            .collect();
        failed.extend((0..3).map(|i| member(&format!("t{i}"), "transient", "http-503", "down")));
        let v = view("q", ledger, &failed, 9_000);
        assert_eq!(v.status, "finished");
        assert_eq!(v.elapsed_ms, 3_000);
        assert_eq!(
            v.summary,
            "12 of 40000 failed: 9 permanent [invalid-row], 3 transient [http-503]"
        );
        assert_eq!(v.failures[0].sample_message, "row 3: no email");
        assert_eq!(v.failures[1].count, 3);
    }

    #[test]
    fn an_open_batch_runs_until_now() {
        let ledger = BatchLedger {
            created_at_ms: 1_000,
            total: 2,
            pending: 2,
            ..BatchLedger::default()
        };
        let v = view("q", ledger, &[], 3_500);
        assert_eq!((v.status, v.elapsed_ms), ("open", 2_500));
        assert_eq!(v.summary, "0 of 2 failed");
    }
}
