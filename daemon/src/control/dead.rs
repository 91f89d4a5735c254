//! Requeuing and discarding dead letters: of given job ids, of every dead
//! letter matching a filter (in bounded chunks, safe to interrupt and run
//! again), and requeuing one with a corrected payload. `ward dlq` and the
//! admin API both call these; each call leaves one audit entry (a dry run,
//! which changes nothing, leaves none).
//!
//! Why a bulk action is safe to interrupt: each chunk is one script call
//! in which every requeue or discard removes its dead letter (the XDEL is
//! the guard, see `store/lua/requeue.lua`), so a run started again walks
//! only what is left, and a job that died again meanwhile is a new dead
//! letter with a newer entry id, above where the walk starts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;

use super::audit::{self, Action, Actor};
use crate::dlq::{self, Acted, DeadLetter, Filter, Located, Op, Pages};
use crate::store::{DeadLetterAct, PayloadEdit, Queue, QueueError};

/// How many job ids a report keeps as a sample (and `--dry-run` shows).
pub const DEFAULT_SAMPLE: usize = 10;

/// How a bulk action runs.
#[derive(Debug, Clone)]
pub struct BulkOptions {
    /// Why, for each job's history and the audit trail (`""` for none).
    pub note: String,
    /// Count the matches and take a sample; change nothing.
    pub dry_run: bool,
    /// How many job ids the report keeps as a sample.
    pub sample: usize,
    /// Dead letters read per page: bounds how many payloads are in memory
    /// at once (each script call acts on at most [`dlq::ACT_CHUNK`]).
    pub chunk: usize,
    /// Act on at most this many (the newest matching first).
    pub limit: Option<u64>,
    /// Set to stop after the chunk under way (SIGINT, a closed request):
    /// what was done is reported and put on the audit trail.
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for BulkOptions {
    fn default() -> BulkOptions {
        BulkOptions {
            note: String::new(),
            dry_run: false,
            sample: DEFAULT_SAMPLE,
            chunk: dlq::ACT_PAGE,
            limit: None,
            stop: None,
        }
    }
}

/// What an action did, for `ward dlq` to print and the API to return.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The action as the audit trail names it: `requeue`, `discard`, `edit`.
    pub action: String,
    /// The queue.
    pub queue: String,
    /// What was asked: the job ids, or the filter's description.
    pub target: String,
    /// How many ids were given, or how many dead letters matched.
    pub matched: u64,
    /// How many were requeued or discarded.
    pub acted: u64,
    /// How many had no dead letter (any more): not found, or requeued,
    /// discarded or trimmed meanwhile.
    pub skipped: u64,
    /// How many were refused (see `problems` for why).
    pub failed: u64,
    /// The first job ids acted on (in a dry run: the first matching).
    pub sample: Vec<String>,
    /// The first ids not acted on, with why.
    pub problems: Vec<Acted>,
    /// A dry run: nothing changed.
    pub dry_run: bool,
    /// Stopped before the end (see [`BulkOptions::stop`]); run it again
    /// to go on.
    pub interrupted: bool,
    /// An edit's digests (`edit` only).
    pub edit: Option<PayloadEdit>,
    /// The audit entry's id (`None` for a dry run).
    pub audit_id: Option<String>,
}

impl Report {
    fn new(action: &str, q: &Queue, target: String) -> Report {
        Report {
            action: action.to_string(),
            queue: q.keys.queue.clone(),
            target,
            ..Report::default()
        }
    }

    /// How many of those asked for were not acted on.
    #[must_use]
    pub fn not_acted(&self) -> u64 {
        self.skipped + self.failed
    }

    /// Counts one outcome in, keeping samples bounded by `sample`.
    fn tally(&mut self, acted: &Acted, sample: usize) {
        match acted {
            Acted::Done { id, .. } => {
                self.acted += 1;
                if self.sample.len() < sample {
                    self.sample.push(id.clone());
                }
                return;
            }
            Acted::Refused { .. } => self.failed += 1,
            Acted::NoDeadLetter { .. } | Acted::Gone { .. } => self.skipped += 1,
        }
        if self.problems.len() < sample {
            self.problems.push(acted.clone());
        }
    }
}

/// What an action tells its caller while it runs, so `ward dlq` prints as
/// it goes (the API ignores it and returns the [`Report`]).
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// A bulk action counted the dead letters matching, before acting on
    /// them (or instead, in a dry run).
    Matched {
        /// How many match.
        count: u64,
        /// The first job ids matching.
        sample: &'a [String],
    },
    /// One id acted on, or not.
    Acted(&'a Acted),
}

/// Applies `op` to the dead letters of job ids (or dead-letter entry ids)
/// `ids`: a requeue puts each back as a fresh job (attempt 1, budget
/// reset, original payload), a discard marks it "won't retry". An id with
/// no dead letter is reported as such ([`Acted::NoDeadLetter`]).
///
/// # Errors
/// Redis errors; the jobs acted on before one are still on the audit trail.
pub async fn by_ids(
    q: &Queue,
    actor: &Actor,
    op: Op,
    ids: &[String],
    note: &str,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, QueueError> {
    let mut report = Report::new(op.verb(), q, ids.join(" "));
    report.matched = ids.len() as u64;
    let run = async {
        for chunk in ids.chunks(dlq::ACT_PAGE) {
            let mut found: Vec<DeadLetter> = Vec::new();
            let mut outcomes: Vec<Option<Acted>> = Vec::with_capacity(chunk.len());
            for id in chunk {
                match dlq::locate(q, id).await? {
                    Located::Dead(d) => {
                        found.push(*d);
                        outcomes.push(None);
                    }
                    other => outcomes.push(Some(Acted::NoDeadLetter {
                        id: id.clone(),
                        why: dlq::not_dead(&q.keys.queue, id, &other),
                    })),
                }
            }
            let mut done = dlq::act(q, &found, op, &actor.name, note)
                .await?
                .into_iter();
            for acted in outcomes
                .into_iter()
                .filter_map(|o| o.or_else(|| done.next()))
            {
                report.tally(&acted, DEFAULT_SAMPLE);
                progress(Progress::Acted(&acted));
            }
        }
        Ok(())
    };
    let result: Result<(), QueueError> = run.await;
    finish(q, actor, report, note, None, result).await
}

/// Applies `op` to every dead letter of `q` matching `filter` (all of them
/// for an empty filter), newest first: counts them (reporting the count
/// and a sample through `progress`), then, unless a dry run, acts on them
/// one chunk per script call, reading one page at a time, so neither Redis
/// nor the caller's memory holds more than a chunk at once. Dead letters
/// added after the count are left alone.
///
/// # Errors
/// Redis errors; what was done before one is still on the audit trail.
pub async fn bulk(
    q: &Queue,
    actor: &Actor,
    op: Op,
    filter: &Filter,
    options: &BulkOptions,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, QueueError> {
    let target = if filter.is_empty() {
        "every dead letter".to_string()
    } else {
        filter.describe()
    };
    let mut report = Report::new(op.verb(), q, target);
    let chunk = options.chunk.max(1);
    let (count, sample, top) = dlq::count(q, filter, chunk, options.sample).await?;
    report.matched = count as u64;
    progress(Progress::Matched {
        count: report.matched,
        sample: &sample,
    });
    if options.dry_run {
        report.dry_run = true;
        report.sample = sample;
        return Ok(report);
    }
    let run = async {
        let Some(top) = top else { return Ok(()) };
        let mut pages = Pages::from(filter.clone(), chunk, &top);
        let limit = options.limit.unwrap_or(u64::MAX);
        while let Some((mut letters, _)) = pages.next(q).await? {
            if options
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst))
            {
                report.interrupted = true;
                break;
            }
            let room = limit.saturating_sub(report.acted + report.not_acted());
            if room == 0 {
                break;
            }
            letters.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            if letters.is_empty() {
                continue;
            }
            for acted in dlq::act(q, &letters, op, &actor.name, &options.note).await? {
                report.tally(&acted, options.sample);
                progress(Progress::Acted(&acted));
            }
        }
        Ok(())
    };
    let result: Result<(), QueueError> = run.await;
    let detail = serde_json::json!({ "filter": filter, "matched": report.matched });
    finish(q, actor, report, &options.note, Some(detail), result).await
}

/// Requeues the dead letter of job `id` with `payload` in place of its own
/// (see [`Queue::requeue_dead_edited`]): the audit entry's action is
/// `edit`, its detail the digests and sizes of both payloads.
///
/// # Errors
/// Redis errors.
pub async fn requeue_edited(
    q: &Queue,
    actor: &Actor,
    id: &str,
    payload: &[u8],
    note: &str,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Report, QueueError> {
    let mut report = Report::new("edit", q, id.to_string());
    report.matched = 1;
    let acted = match dlq::locate(q, id).await? {
        Located::Dead(d) => {
            let act = DeadLetterAct {
                dead_id: &d.dead_id,
                job_id: &d.id,
                by: &actor.name,
                note,
            };
            let (resolution, edit) = q.requeue_dead_edited(&act, payload).await?;
            report.edit = Some(edit);
            Acted::of(d.id.clone(), resolution)
        }
        other => Acted::NoDeadLetter {
            id: id.to_string(),
            why: dlq::not_dead(&q.keys.queue, id, &other),
        },
    };
    report.tally(&acted, DEFAULT_SAMPLE);
    progress(Progress::Acted(&acted));
    let detail = report
        .edit
        .as_ref()
        .and_then(|e| serde_json::to_value(e).ok());
    finish(q, actor, report, note, detail, Ok(())).await
}

/// Puts what `report` did on the audit trail, even when `result` is an
/// error part-way, then returns the report or that error.
async fn finish(
    q: &Queue,
    actor: &Actor,
    mut report: Report,
    note: &str,
    detail: Option<serde_json::Value>,
    result: Result<(), QueueError>,
) -> Result<Report, QueueError> {
    let mut detail = detail.unwrap_or_else(|| serde_json::json!({}));
    if let Some(d) = detail.as_object_mut() {
        d.insert("skipped".into(), report.skipped.into());
        d.insert("failed".into(), report.failed.into());
        if report.interrupted {
            d.insert("interrupted".into(), true.into());
        }
        if let Err(e) = &result {
            d.insert("error".into(), e.to_string().into());
        }
    }
    let action = Action {
        action: &report.action,
        queue: &q.keys.queue,
        target: report.target.clone(),
        count: report.acted,
        note,
        detail: Some(detail),
    };
    let recorded = audit::record(&q.store(), actor, action).await;
    result?;
    report.audit_id = Some(recorded?);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_counts_every_outcome_and_keeps_bounded_samples() {
        let mut r = Report::default();
        let done = |i: usize| Acted::Done {
            id: format!("{i}-0"),
            entry: None,
        };
        for i in 0..5 {
            r.tally(&done(i), 2);
        }
        r.tally(&Acted::Gone { id: "g".into() }, 2);
        r.tally(
            &Acted::NoDeadLetter {
                id: "n".into(),
                why: "no".into(),
            },
            2,
        );
        r.tally(
            &Acted::Refused {
                id: "r".into(),
                why: "no".into(),
            },
            2,
        );
        assert_eq!((r.acted, r.skipped, r.failed, r.not_acted()), (5, 2, 1, 3));
        assert_eq!(r.sample, ["0-0", "1-0"], "the first ones, at most 2");
        assert_eq!(r.problems.len(), 2);
    }
}
