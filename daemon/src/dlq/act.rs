//! Requeuing and discarding dead letters, one Lua script call per chunk of
//! them (see [`Queue::requeue_dead_chunk`] and [`Queue::discard_dead_chunk`]).

use serde::Serialize;

/// Dead letters requeued or discarded per script call: a requeue is a dozen
/// commands, so 25 keep one call near a millisecond (a few on a loaded
/// machine), however many a bulk action covers.
pub const ACT_CHUNK: usize = 25;

use super::DeadLetter;
use crate::store::{DeadRef, Queue, QueueError, Resolution};

/// What is done to each dead letter: `ward dlq requeue` or `discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Back as a fresh job.
    Requeue,
    /// Marked "won't retry" and removed.
    Discard,
}

impl Op {
    /// The past participle, for reports: `requeued`, `discarded`.
    #[must_use]
    pub fn done(self) -> &'static str {
        match self {
            Op::Requeue => "requeued",
            Op::Discard => "discarded",
        }
    }

    /// The verb, for errors: `requeue`, `discard`.
    #[must_use]
    pub fn verb(self) -> &'static str {
        match self {
            Op::Requeue => "requeue",
            Op::Discard => "discard",
        }
    }
}

/// What became of one id acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Acted {
    /// Done; for a requeue, the new entry's id in `ward:{Q}:jobs`.
    Done {
        /// The job id.
        id: String,
        /// The new entry of a requeued job.
        entry: Option<String>,
    },
    /// The id had no dead letter to act on.
    NoDeadLetter {
        /// The id as given.
        id: String,
        /// Why, for a message (see [`super::not_dead`]).
        why: String,
    },
    /// The dead letter went meanwhile: someone requeued or discarded it, or
    /// retention removed it. Nothing changed.
    Gone {
        /// The job id.
        id: String,
    },
    /// Refused, nothing changed.
    Refused {
        /// The job id.
        id: String,
        /// Why.
        why: String,
    },
}

impl Acted {
    /// Whether the job was acted on.
    #[must_use]
    pub fn is_done(&self) -> bool {
        matches!(self, Acted::Done { .. })
    }

    /// The report's line for it, e.g. `requeued  1-0  new entry 2-0` or
    /// `not discarded  1-0  no dead letter`.
    #[must_use]
    pub fn line(&self, op: Op, queue: &str) -> String {
        let done = op.done();
        match self {
            Acted::Done {
                id,
                entry: Some(entry),
            } => format!("{done}  {id}  new entry {entry}"),
            Acted::Done { id, entry: None } => format!("{done}  {id}"),
            Acted::NoDeadLetter { id, .. } => format!("not {done}  {id}  no dead letter"),
            Acted::Gone { id } => format!(
                "not {done}  {id}  already requeued or discarded (no longer in ward:{{{queue}}}:dead)"
            ),
            Acted::Refused { id, why } => format!("not {done}  {id}  {why}"),
        }
    }
}

/// Applies `op` to `letters`, one script call per [`ACT_CHUNK`] of them;
/// one outcome per dead letter, in order. `by` and `note` go to each job's
/// history.
///
/// # Errors
/// Redis errors: the chunks before the one that failed were acted on.
pub async fn act(
    q: &Queue,
    letters: &[DeadLetter],
    op: Op,
    by: &str,
    note: &str,
) -> Result<Vec<Acted>, QueueError> {
    let mut out = Vec::with_capacity(letters.len());
    for chunk in letters.chunks(ACT_CHUNK) {
        let refs: Vec<DeadRef<'_>> = chunk
            .iter()
            .map(|d| DeadRef {
                dead_id: &d.dead_id,
                job_id: &d.id,
            })
            .collect();
        let done = match op {
            Op::Requeue => q.requeue_dead_chunk(by, note, &refs).await?,
            Op::Discard => q.discard_dead_chunk(by, note, &refs).await?,
        };
        out.extend(
            chunk
                .iter()
                .zip(done)
                .map(|(d, r)| Acted::of(d.id.clone(), r)),
        );
    }
    Ok(out)
}

impl Acted {
    /// What `resolution` of job `id` means for the operator.
    #[must_use]
    pub fn of(id: String, resolution: Resolution) -> Acted {
        match resolution {
            Resolution::Done(entry) => Acted::Done { id, entry },
            Resolution::Gone => Acted::Gone { id },
            Resolution::Refused(why) => Acted::Refused { id, why },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_reports_one_line_naming_the_job() {
        let line = |a: Acted, op| a.line(op, "q");
        let id = || "1-0".to_string();
        assert_eq!(
            line(
                Acted::Done {
                    id: id(),
                    entry: Some("2-0".into())
                },
                Op::Requeue
            ),
            "requeued  1-0  new entry 2-0"
        );
        assert_eq!(
            line(
                Acted::Done {
                    id: id(),
                    entry: None
                },
                Op::Discard
            ),
            "discarded  1-0"
        );
        assert_eq!(
            line(
                Acted::NoDeadLetter {
                    id: id(),
                    why: "gone".into()
                },
                Op::Discard
            ),
            "not discarded  1-0  no dead letter"
        );
        assert_eq!(
            line(Acted::Gone { id: id() }, Op::Requeue),
            "not requeued  1-0  already requeued or discarded (no longer in ward:{q}:dead)"
        );
        assert_eq!(
            line(
                Acted::Refused {
                    id: id(),
                    why: "no".into()
                },
                Op::Requeue
            ),
            "not requeued  1-0  no"
        );
    }
}
