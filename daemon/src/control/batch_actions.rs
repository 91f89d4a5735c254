//! Acting on a batch's members: requeue exactly its dead ones
//! (`ward batch retry-failed`), cancel every one still waiting or running
//! (`ward batch cancel`). Both are the bulk actions of any filter
//! ([`super::dead::bulk`], [`super::bulk_cancel::cancel_matching`]) on the
//! `batch` field every member's entry and dead letter carries, so they
//! page, audit and resume exactly like those; the ledger counts the
//! members back (a requeued dead member is pending again) in the same
//! scripts.

use crate::dlq::{Filter, Op};
use crate::store::{Queue, Waiting};

use super::Actor;
use super::batches::{self, BatchError};
use super::bulk_cancel::{self, BulkCancelReport, JobFilter};
use super::dead::{self, BulkOptions, Report};

/// The field a member carries its batch id in.
const FIELD: &str = "batch";

/// Requeues batch `id`'s dead members (with `dry_run`, counts them).
///
/// # Errors
/// No such batch; Redis errors (what was requeued before stays requeued).
pub async fn retry_failed(
    q: &Queue,
    actor: &Actor,
    id: &str,
    note: &str,
    dry_run: bool,
) -> Result<Report, BatchError> {
    batches::exists(q, id).await?;
    let filter = Filter {
        fields: vec![(FIELD.to_string(), id.to_string())],
        ..Filter::default()
    };
    let options = BulkOptions {
        note: note.to_string(),
        dry_run,
        ..BulkOptions::default()
    };
    Ok(dead::bulk(q, actor, Op::Requeue, &filter, &options, |_| {}).await?)
}

/// Cancels batch `id`'s members still queued, delayed, paused or running
/// (with `dry_run`, counts them).
///
/// # Errors
/// No such batch; Redis errors (what was cancelled before stays cancelled).
pub async fn cancel_rest(
    q: &Queue,
    actor: &Actor,
    id: &str,
    note: &str,
    dry_run: bool,
) -> Result<BulkCancelReport, BatchError> {
    batches::exists(q, id).await?;
    let filter = JobFilter {
        states: vec![
            Waiting::Queued,
            Waiting::Delayed,
            Waiting::Paused,
            Waiting::Running,
        ],
        fields: vec![(FIELD.to_string(), id.to_string())],
        ..JobFilter::default()
    };
    Ok(bulk_cancel::cancel_matching(q, actor, &filter, note, dry_run).await?)
}
