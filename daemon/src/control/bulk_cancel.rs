//! Cancelling every job that matches a filter: job type, where it is
//! (queued, delayed, paused, running), when it was enqueued, correlation
//! fields. Jobs are found page by page ([`crate::store::Candidate`]) and
//! each match is cancelled as `ward job cancel` cancels one, so a run can
//! be interrupted and run again: a job already cancelled is `finished` the
//! second time and counts nothing. One audit entry per run.

use std::collections::BTreeMap;

use crate::obs::events::enqueued_ms;
use crate::priority::Priority;
use crate::store::{Cancelled, Candidate, Queue, QueueError, Waiting};

use super::audit::{self, Action, Actor};

/// How many jobs one page looks at.
pub const PAGE: usize = 500;
/// How many matching ids a dry run shows.
pub const SAMPLE: usize = 10;

/// Which jobs a bulk cancel takes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobFilter {
    /// Only this job type.
    pub job: Option<String>,
    /// Only jobs in these states (empty: queued, delayed and paused; a
    /// running job is only taken when `running` is named).
    pub states: Vec<Waiting>,
    /// Only jobs enqueued at or after this (Unix ms, from the job id).
    pub since_ms: Option<u64>,
    /// Only jobs enqueued before this (Unix ms).
    pub until_ms: Option<u64>,
    /// Only jobs whose field `name` is exactly `value`, for every pair.
    pub fields: Vec<(String, String)>,
}

impl JobFilter {
    fn states(&self) -> Vec<Waiting> {
        if self.states.is_empty() {
            vec![Waiting::Queued, Waiting::Delayed, Waiting::Paused]
        } else {
            self.states.clone()
        }
    }

    /// Whether `c` matches (its state is the page's, already chosen).
    #[must_use]
    pub fn matches(&self, c: &Candidate) -> bool {
        if self.job.as_ref().is_some_and(|j| *j != c.job) {
            return false;
        }
        let at = enqueued_ms(&c.id);
        if self.since_ms.is_some_and(|s| at.is_none_or(|t| t < s)) {
            return false;
        }
        if self.until_ms.is_some_and(|u| at.is_none_or(|t| t >= u)) {
            return false;
        }
        self.fields.iter().all(|(k, v)| {
            c.fields
                .iter()
                .any(|(name, value)| name == k && value.as_slice() == v.as_bytes())
        })
    }

    /// The filter as one line, for the audit trail and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "state {}",
            self.states()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("|")
        )];
        if let Some(j) = &self.job {
            parts.push(format!("job {j}"));
        }
        if let Some(s) = self.since_ms {
            parts.push(format!("since {}", crate::text::format_ms(s)));
        }
        if let Some(u) = self.until_ms {
            parts.push(format!("until {}", crate::text::format_ms(u)));
        }
        for (k, v) in &self.fields {
            parts.push(format!("{k}={v}"));
        }
        parts.join(", ")
    }
}

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
    for state in filter.states() {
        match state {
            Waiting::Delayed | Waiting::Paused => {
                let mut cursor = 0;
                loop {
                    let (next, page) = q.scan_set(state, cursor, PAGE).await?;
                    act(q, actor, filter, note, page, report).await?;
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
            }
            Waiting::Queued | Waiting::Running => {
                for level in Priority::ALL {
                    let mut after: Option<String> = None;
                    loop {
                        let (last, page) = if state == Waiting::Queued {
                            q.scan_stream(level, after.as_deref(), PAGE).await?
                        } else {
                            q.scan_running(level, after.as_deref(), PAGE).await?
                        };
                        act(q, actor, filter, note, page, report).await?;
                        if last.is_none() {
                            break;
                        }
                        after = last;
                    }
                }
            }
        }
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
