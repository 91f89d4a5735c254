//! Cancelling: the operator's `POST /v1/queues/{queue}/jobs/{id}/cancel`
//! and, for several jobs at once, `POST /v1/queues/{queue}/cancel`; both
//! call [`control::cancel::cancel`] as `ward job cancel` does (one audit
//! entry per request).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::{Api, ApiError, Operator};
use crate::control::cancel::{self, CancelOutcome, CancelReport};

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
