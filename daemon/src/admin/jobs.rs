//! `GET /v1/queues/{queue}/jobs/{id}`: a job as `ward job show` shows it,
//! with its payload (redacted for viewers).

use axum::Json;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller, shown};
use crate::store::JobStatus;

/// A job: its status, and its payload as the caller may see it.
#[derive(Debug, serde::Serialize)]
pub(super) struct JobView {
    #[serde(flatten)]
    status: JobStatus,
    /// The payload (from the job record; absent before the first attempt
    /// ended, or once a success dropped it).
    payload: Option<String>,
}

/// `GET /v1/queues/{queue}/jobs/{id}`
pub(super) async fn show(
    caller: Caller,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    let (cfg, q) = api.queue(&queue)?;
    let Some(mut status) = q.job_status(&id).await? else {
        return Err(ApiError::not_found(format!(
            "no job `{id}` in queue `{queue}` (records of succeeded jobs are kept for the queue's succeeded_ttl)"
        )));
    };
    let viewer = caller.is_viewer();
    let job = status.job.clone();
    let payload = q
        .record_payload(&id)
        .await?
        .map(|p| shown::payload(viewer, cfg, job.as_deref(), &q.keys.record(&id), &p));
    status.result = status
        .result
        .take()
        .map(|r| shown::result(viewer, cfg, job.as_deref(), r));
    Ok(Json(JobView { status, payload }))
}
