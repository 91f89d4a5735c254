//! Cancelling every job that matches a filter: job type, where it is
//! (queued, delayed, paused, running), when it was enqueued, correlation
//! fields. Jobs are found page by page ([`super::find::Pages`]) and
//! each match is cancelled as `ward job cancel` cancels one, so a run can
//! be interrupted and run again: a job already cancelled is `finished` the
//! second time and counts nothing. One audit entry per run.

use std::collections::BTreeMap;

use crate::store::{Cancelled, Candidate, Queue, QueueError};

use super::audit::{self, Action, Actor};
pub use super::find::JobFilter;
use super::find::Pages;

/// How many matching ids a dry run shows.
pub const SAMPLE: usize = 10;

/// What a bulk cancel did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BulkCancelReport {
    /// Jobs that matched.
    pub matched: u64,
    /// Jobs now cancelled (they will never run).
    pub cancelled: u64,
    /// Running jobs whose daemon was asked to interrupt them.
    pub requested: u64,
    /// Matches that had finished or gone by the time they were reached.
    pub unchanged: u64,
    /// The first matching ids, by state.
    pub sample: BTreeMap<String, Vec<String>>,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
}

/// Cancels every job of `q` that `filter` matches (with `dry_run`, only
/// counts them), page by page, and records one audit entry (unless a dry
/// run).
///
/// # Errors
/// Redis errors; the jobs cancelled before stay cancelled.
pub async fn cancel_matching(
    q: &Queue,
    actor: &Actor,
    filter: &JobFilter,
    note: &str,
    dry_run: bool,
) -> Result<BulkCancelReport, QueueError> {
    let mut report = BulkCancelReport {
        dry_run,
        ..BulkCancelReport::default()
    };
    let result = walk(q, actor, filter, note, &mut report).await;
    if !dry_run {
        audit::record(
            &q.store(),
            actor,
            Action {
                action: "cancel",
                queue: &q.keys.queue,
                target: filter.describe(),
                count: report.cancelled + report.requested,
                note,
                detail: serde_json::to_value(&report).ok(),
            },
        )
        .await?;
    }
    result.map(|()| report)
}

async fn walk(
    q: &Queue,
    actor: &Actor,
    filter: &JobFilter,
    note: &str,
    report: &mut BulkCancelReport,
) -> Result<(), QueueError> {
    let mut pages = Pages::new(filter);
    while let Some(page) = pages.next(q).await? {
        act(q, actor, filter, note, page, report).await?;
    }
    Ok(())
}

async fn act(
    q: &Queue,
    actor: &Actor,
    filter: &JobFilter,
    note: &str,
    page: Vec<Candidate>,
    report: &mut BulkCancelReport,
) -> Result<(), QueueError> {
    for c in page.into_iter().filter(|c| filter.matches(c)) {
        report.matched += 1;
        let sample = report
            .sample
            .entry(c.state.as_str().to_string())
            .or_default();
        if sample.len() < SAMPLE {
            sample.push(c.id.clone());
        }
        if report.dry_run {
            continue;
        }
        match q.cancel_job(&c.id, &actor.name, note).await? {
            Cancelled::Now { .. } => report.cancelled += 1,
            Cancelled::Requested { new: true } => report.requested += 1,
            _ => report.unchanged += 1,
        }
    }
    Ok(())
}
