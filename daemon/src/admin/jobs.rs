//! `GET /v1/queues/{queue}/jobs/{id}`: a job as `ward job show` shows it,
//! with its payload (redacted for viewers); `GET /v1/queues/{queue}/jobs`:
//! the jobs waiting or running by filter, as `ward job list` lists them
//! ([`control::find::list`]).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use super::{Api, ApiError, Caller, shown};
use crate::control::find::{self, JobFilter, Listing};
use crate::store::{JobStatus, Waiting};

/// `GET /v1/queues/{queue}/jobs?job=&state=queued,running&since=&until=&field.NAME=VALUE&limit=`
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
) -> Result<Json<Listing>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (filter, limit) = filter_of(query)?;
    let (_, q) = api.queue(&queue)?;
    Ok(Json(find::list(&q, &filter, limit).await?))
}

/// The filter and limit a listing's query names; an unknown key or value
/// is a 400 that says which.
fn filter_of(query: BTreeMap<String, String>) -> Result<(JobFilter, usize), ApiError> {
    let time = |t: &str| crate::dlq::parse_since(t).map_err(ApiError::bad_request);
    let mut filter = JobFilter::default();
    let mut limit = 50;
    for (key, value) in query {
        match key.as_str() {
            "job" => filter.job = Some(value),
            "state" => {
                for s in value.split(',').filter(|s| !s.is_empty()) {
                    let state: Waiting = serde_json::from_value(serde_json::Value::String(
                        s.into(),
                    ))
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "state `{s}` is not one of queued, delayed, paused, running"
                        ))
                    })?;
                    filter.states.push(state);
                }
            }
            "since" => filter.since_ms = Some(time(&value)?),
            "until" => filter.until_ms = Some(time(&value)?),
            "limit" => {
                limit = value.parse().map_err(|_| {
                    ApiError::bad_request(format!("limit `{value}` is not a number"))
                })?;
            }
            other => match other.strip_prefix("field.") {
                Some(name) if !name.is_empty() => filter.fields.push((name.to_string(), value)),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter `{other}` (job, state, since, until, field.NAME, limit)"
                    )));
                }
            },
        }
    }
    Ok((filter, limit))
}

/// A job: its status, and its payload as the caller may see it.
#[derive(Debug, serde::Serialize)]
pub(super) struct JobView {
    #[serde(flatten)]
    pub(super) status: JobStatus,
    /// The payload (from the job record; absent before the first attempt
    /// ended, or once a success dropped it).
    pub(super) payload: Option<String>,
}

/// `GET /v1/queues/{queue}/jobs/{id}`
pub(super) async fn show(
    caller: Caller,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(view(&api, &caller, &queue, &id).await?))
}

/// Job `id` of `queue` as `caller` may see it (payload and result
/// redacted for a viewer): the API's answer and the web screen's job page.
///
/// # Errors
/// [`ApiError`] 404 for a queue or job it does not know; Redis errors.
pub(super) async fn view(
    api: &Api,
    caller: &Caller,
    queue: &str,
    id: &str,
) -> Result<JobView, ApiError> {
    let (cfg, q) = api.queue(queue)?;
    let Some(mut status) = q.job_status(id).await? else {
        return Err(ApiError::not_found(format!(
            "no job `{id}` in queue `{queue}` (records of succeeded jobs are kept for the queue's succeeded_ttl)"
        )));
    };
    let viewer = caller.is_viewer();
    let job = status.job.clone();
    let payload = q
        .record_payload(id)
        .await?
        .map(|p| shown::payload(viewer, cfg, job.as_deref(), &q.keys.record(id), &p));
    status.result = status
        .result
        .take()
        .map(|r| shown::result(viewer, cfg, job.as_deref(), r));
    Ok(JobView { status, payload })
}
