//! Requeuing and discarding dead letters, one Lua script per job (see
//! [`Queue::requeue_dead`] and [`Queue::discard_dead`]).

use anyhow::Context as _;

use super::DeadLetter;
use crate::store::{DeadLetterAct, Queue, Resolution};

/// What is done to each dead letter: `ward dlq requeue` or `discard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// What became of one id handed to [`act`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acted {
    /// Done; for a requeue, the new entry's id in `ward:{Q}:jobs`.
    Done {
        /// The job id.
        id: String,
        /// The new entry of a requeued job.
        entry: Option<String>,
    },
    /// The id had no dead letter to act on (already reported by whoever
    /// looked it up).
    NoDeadLetter {
        /// The id as given.
        id: String,
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
            Acted::NoDeadLetter { id } => format!("not {done}  {id}  no dead letter"),
            Acted::Gone { id } => format!(
                "not {done}  {id}  already requeued or discarded (no longer in ward:{{{queue}}}:dead)"
            ),
            Acted::Refused { id, why } => format!("not {done}  {id}  {why}"),
        }
    }
}

/// Applies `op` to each dead letter in turn (an id without one, `None`,
/// is not acted on), handing each outcome to `report` as it happens, so a
/// Redis error part-way leaves the ones before it reported. Returns how
/// many ids were not acted on.
///
/// # Errors
/// Redis errors, which stop the run.
pub async fn act(
    q: &Queue,
    letters: Vec<(String, Option<DeadLetter>)>,
    op: Op,
    by: &str,
    note: &str,
    mut report: impl FnMut(&Acted),
) -> anyhow::Result<usize> {
    let mut failed = 0usize;
    for (id, d) in letters {
        let acted = match d {
            None => Acted::NoDeadLetter { id },
            Some(d) => {
                let act = DeadLetterAct {
                    dead_id: &d.dead_id,
                    job_id: &d.id,
                    by,
                    note,
                };
                let result = match op {
                    Op::Requeue => q.requeue_dead(&act).await,
                    Op::Discard => q.discard_dead(&act).await,
                };
                let id = d.id;
                match result.with_context(|| format!("cannot {} job `{id}`", op.verb()))? {
                    Resolution::Done(entry) => Acted::Done { id, entry },
                    Resolution::Gone => Acted::Gone { id },
                    Resolution::Refused(why) => Acted::Refused { id, why },
                }
            }
        };
        if !acted.is_done() {
            failed += 1;
        }
        report(&acted);
    }
    Ok(failed)
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
            line(Acted::NoDeadLetter { id: id() }, Op::Discard),
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
