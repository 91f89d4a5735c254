//! Pausing: `GET /v1/queues/{queue}/pauses` (the pauses in force and the
//! held jobs, as `ward stats` shows them) and the operator's
//! `POST /v1/queues/{queue}/pause` and `.../resume`, which call
//! [`control::pause`] as `ward pause|resume` do.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{Api, ApiError, Caller, Operator};
use crate::control::pause::{self, PauseError, PauseStatus, Paused, Resumed};

impl From<PauseError> for ApiError {
    fn from(e: PauseError) -> ApiError {
        match e {
            PauseError::Store(e) => e.into(),
            other => ApiError::new(StatusCode::BAD_REQUEST, other.to_string()),
        }
    }
}

/// A body's `until` (a duration from now, or an RFC 3339 time) as Unix
/// ms; 400 when it is neither.
pub(super) fn until_ms(until: Option<&str>) -> Result<Option<u64>, ApiError> {
    until
        .map(|u| pause::parse_until(u, crate::clock::now_ms()))
        .transpose()
        .map_err(ApiError::bad_request)
}

/// `GET /v1/queues/{queue}/pauses`
pub(super) async fn status(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<PauseStatus>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(pause::status(&q).await?))
}

/// The body of `POST .../pause`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseBody {
    /// Only this job type (default: the whole queue).
    job: Option<String>,
    /// Why (required).
    #[serde(default)]
    note: String,
    /// Resume by itself: a duration from now (`30m`) or an RFC 3339 time.
    until: Option<String>,
}

/// `POST /v1/queues/{queue}/pause`: `{"job": "send", "note": "...",
/// "until": "30m"}` (`job` and `until` optional).
pub(super) async fn pause(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<Paused>, ApiError> {
    let body: PauseBody = super::body(&body, r#"{"job": "send", "note": "why", "until": "30m"}"#)?;
    let until_ms = until_ms(body.until.as_deref())?;
    let (_, q) = api.queue(&queue)?;
    let done = pause::pause(
        &q,
        &caller.actor(),
        body.job.as_deref(),
        &body.note,
        until_ms,
    )
    .await?;
    Ok(Json(done))
}

/// The body of `POST .../resume`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeBody {
    /// Only this job type (default: the whole queue).
    job: Option<String>,
    /// Why (optional).
    #[serde(default)]
    note: String,
}

/// `POST /v1/queues/{queue}/resume`: `{"job": "send", "note": "..."}`
/// (both optional); the held jobs go back to the stream.
pub(super) async fn resume(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<Resumed>, ApiError> {
    let body: ResumeBody = super::body(&body, r#"{"job": "send", "note": "why"}"#)?;
    let (_, q) = api.queue(&queue)?;
    let done = pause::resume(&q, &caller.actor(), body.job.as_deref(), &body.note).await?;
    Ok(Json(done))
}
