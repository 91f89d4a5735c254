//! Cancel: jobs that should not run (any more). A waiting job (delayed,
//! held by a pause, queued) is marked `cancelled` and never runs; a running
//! one gets a cancel request that the daemon running it acts on at once
//! (see `worker/services/control.rs`), interrupting the attempt; a finished
//! one is left as it is.

use crate::store::{Cancelled, Queue, QueueError};

use super::audit::{self, Action, Actor};

/// What a cancel did to one job, as operators read it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CancelOutcome {
    /// It was waiting (`was`: `delayed`, `paused` or `queued`); it will
    /// never run.
    Cancelled {
        /// Where it waited.
        was: String,
    },
    /// It was running: the daemon running it interrupts the attempt, which
    /// ends as `cancelled`. `new` is false when a request was already there.
    Requested {
        /// Whether this made the request.
        new: bool,
    },
    /// It had already finished (`state`): nothing changed.
    Finished {
        /// Its final state.
        state: String,
    },
    /// The queue has no such job.
    NotFound,
}

impl CancelOutcome {
    /// The word for it: `cancelled`, `requested`, `finished`, `not found`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            CancelOutcome::Cancelled { .. } => "cancelled",
            CancelOutcome::Requested { .. } => "requested",
            CancelOutcome::Finished { .. } => "finished",
            CancelOutcome::NotFound => "not found",
        }
    }

    /// Whether the job changed.
    #[must_use]
    pub fn changed(&self) -> bool {
        matches!(
            self,
            CancelOutcome::Cancelled { .. } | CancelOutcome::Requested { new: true }
        )
    }
}

impl From<Cancelled> for CancelOutcome {
    fn from(c: Cancelled) -> Self {
        match c {
            Cancelled::Now { was } => CancelOutcome::Cancelled { was },
            Cancelled::Requested { new } => CancelOutcome::Requested { new },
            Cancelled::Finished { state } => CancelOutcome::Finished { state },
            Cancelled::Missing => CancelOutcome::NotFound,
        }
    }
}

/// One job's result.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobCancel {
    /// The job id.
    pub id: String,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: CancelOutcome,
}

/// What one cancel command did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CancelReport {
    /// Per job id, in the order given.
    pub jobs: Vec<JobCancel>,
    /// How many jobs changed (cancelled, or newly requested).
    pub changed: u64,
    /// The audit entry's id.
    pub audit_id: String,
}

/// Cancels the jobs `ids` of `queue`, done by `actor` because of `note`
/// (`""` for none), one job at a time (each atomically), and records one
/// audit entry (`cancel`, count = jobs changed).
///
/// # Errors
/// Redis errors. Jobs cancelled before one failed stay cancelled, and the
/// audit entry records them before the error is returned.
pub async fn cancel(
    queue: &Queue,
    actor: &Actor,
    ids: &[String],
    note: &str,
) -> Result<CancelReport, QueueError> {
    let mut jobs = Vec::with_capacity(ids.len());
    let mut failed = None;
    for id in ids {
        match queue.cancel_job(id, &actor.name, note).await {
            Ok(c) => jobs.push(JobCancel {
                id: id.clone(),
                outcome: c.into(),
            }),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let changed = jobs.iter().filter(|j| j.outcome.changed()).count();
    let changed = u64::try_from(changed).unwrap_or(u64::MAX);
    let count = |word: &str| jobs.iter().filter(|j| j.outcome.as_str() == word).count();
    let detail = serde_json::json!({
        "cancelled": count("cancelled"),
        "requested": count("requested"),
        "finished": count("finished"),
        "not_found": count("not found"),
    });
    let action = Action {
        action: "cancel",
        queue: &queue.keys.queue,
        target: ids.join(" "),
        count: changed,
        note,
        detail: Some(detail),
    };
    let audit_id = audit::record(&queue.store(), actor, action).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(CancelReport {
        jobs,
        changed,
        audit_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cancels_and_new_requests_count_as_changes() {
        let was = || "queued".to_string();
        assert!(CancelOutcome::Cancelled { was: was() }.changed());
        assert!(CancelOutcome::Requested { new: true }.changed());
        assert!(!CancelOutcome::Requested { new: false }.changed());
        assert!(!CancelOutcome::Finished { state: was() }.changed());
        assert!(!CancelOutcome::NotFound.changed());
        assert_eq!(CancelOutcome::NotFound.as_str(), "not found");
        let json = serde_json::to_value(JobCancel {
            id: "1-0".into(),
            outcome: CancelOutcome::Finished {
                state: "succeeded".into(),
            },
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "1-0", "result": "finished", "state": "succeeded"})
        );
    }
}
