//! Cancelling: the operator's `POST /v1/queues/{queue}/jobs/{id}/cancel`
//! and, for several jobs at once, `POST /v1/queues/{queue}/cancel`; both
//! call [`control::cancel::cancel`] as `ward job cancel` does (one audit
//! entry per request); `POST /v1/queues/{queue}/jobs/cancel` cancels every
//! job matching a filter ([`bulk_cancel::cancel_matching`]).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::{Api, ApiError, Operator};
use crate::control::bulk_cancel::{self, BulkCancelReport, JobFilter};
use crate::control::cancel::{self, CancelOutcome, CancelReport};
use crate::store::Waiting;

/// The body of a cancel.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    /// The job ids (`POST .../cancel` only).
    #[serde(default)]
    ids: Vec<String>,
    /// Why (required, as `ward job cancel --note`).
    note: String,
}

/// `POST /v1/queues/{queue}/jobs/{id}/cancel`: `{"note": "..."}`. 404 when
/// the queue has no such job; a finished job is left as it is (200, with
/// `"result": "finished"`).
pub(super) async fn one(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<CancelReport>, ApiError> {
    let body: CancelBody = super::body(&body, r#"{"note": "why"}"#)?;
    if !body.ids.is_empty() {
        return Err(ApiError::bad_request(
            "the job id is in the path; `ids` belongs to POST /v1/queues/{queue}/cancel",
        ));
    }
    let report = run(&api, &caller, &queue, &[id], &body.note).await?;
    if report
        .jobs
        .iter()
        .all(|j| j.outcome == CancelOutcome::NotFound)
    {
        return Err(ApiError::not_found(format!(
            "no job `{}` in queue `{queue}`",
            report.jobs.first().map_or("", |j| j.id.as_str())
        )));
    }
    Ok(Json(report))
}

/// `POST /v1/queues/{queue}/cancel`: `{"ids": ["1-0", "2-0"], "note":
/// "..."}`; what became of each id, ids not found included.
pub(super) async fn many(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<CancelReport>, ApiError> {
    let body: CancelBody = super::body(&body, r#"{"ids": ["1-0"], "note": "why"}"#)?;
    if body.ids.is_empty() {
        return Err(ApiError::bad_request("`ids` must name at least one job"));
    }
    Ok(Json(
        run(&api, &caller, &queue, &body.ids, &body.note).await?,
    ))
}

async fn run(
    api: &Api,
    caller: &super::Caller,
    queue: &str,
    ids: &[String],
    note: &str,
) -> Result<CancelReport, ApiError> {
    if note.trim().is_empty() {
        return Err(ApiError::bad_request(
            "say why you cancel: `note` is required",
        ));
    }
    let (_, q) = api.queue(queue)?;
    Ok(cancel::cancel(&q, &caller.actor(), ids, note).await?)
}

/// The body of `POST /v1/queues/{queue}/jobs/cancel`: which jobs.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchingBody {
    /// Only this job type.
    job: Option<String>,
    /// Only jobs in these states (`queued`, `delayed`, `paused`, `running`;
    /// none: the three waiting ones).
    #[serde(default)]
    states: Vec<Waiting>,
    /// Only enqueued since / before: a duration back from now or an RFC
    /// 3339 time.
    since: Option<String>,
    until: Option<String>,
    /// Fields of the job's entry, each with exactly this value.
    #[serde(default)]
    fields: std::collections::BTreeMap<String, String>,
    /// Count and sample; change nothing.
    #[serde(default)]
    dry_run: bool,
    /// Why (required unless `dry_run`).
    #[serde(default)]
    note: String,
}

/// `POST /v1/queues/{queue}/jobs/cancel`: every job matching a filter, as
/// `ward job cancel --all` ([`bulk_cancel::cancel_matching`]).
pub(super) async fn matching(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<BulkCancelReport>, ApiError> {
    let b: MatchingBody = super::body(
        &body,
        r#"{"job": "send", "states": ["queued"], "dry_run": true, "note": "why"}"#,
    )?;
    let time = |t: Option<&str>| {
        t.map(crate::dlq::parse_since)
            .transpose()
            .map_err(ApiError::bad_request)
    };
    let filter = JobFilter {
        job: b.job,
        states: b.states,
        since_ms: time(b.since.as_deref())?,
        until_ms: time(b.until.as_deref())?,
        fields: b.fields.into_iter().collect(),
    };
    let unfiltered = filter.job.is_none()
        && filter.since_ms.is_none()
        && filter.until_ms.is_none()
        && filter.fields.is_empty();
    if !b.dry_run && (unfiltered || b.note.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "name a filter (job, since, until, fields) and say why (`note`), or send \"dry_run\": true to count first",
        ));
    }
    let (_, q) = api.queue(&queue)?;
    let report =
        bulk_cancel::cancel_matching(&q, &caller.actor(), &filter, &b.note, b.dry_run).await?;
    Ok(Json(report))
}
