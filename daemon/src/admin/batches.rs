//! Batches: `GET /v1/queues/{queue}/batches` and
//! `GET /v1/queues/{queue}/batches/{id}`, as `ward batch list|show --json`
//! print them (from [`control::batches`]), and the operator's
//! `POST /v1/queues/{queue}/batches` (create),
//! `POST /v1/queues/{queue}/batches/{id}/seal`, `.../retry-failed`,
//! `.../cancel`, `.../pause` and `.../resume`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::{Api, ApiError, Caller, Operator};
use crate::control::batches::{self, BatchError, BatchView};
use crate::store::Callbacks;

impl From<BatchError> for ApiError {
    fn from(e: BatchError) -> ApiError {
        if let BatchError::Store(e) = e {
            return e.into();
        }
        let status = match &e {
            BatchError::Missing { .. } => StatusCode::NOT_FOUND,
            BatchError::Exists { .. } => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// `GET /v1/queues/{queue}/batches`: newest first, without failures.
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<Vec<BatchView>>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(batches::list(&q, crate::clock::now_ms()).await?))
}

/// `GET /v1/queues/{queue}/batches/{id}`: counts, times, failures grouped.
pub(super) async fn show(
    _: Caller,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<BatchView>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(batches::show(&q, &id, crate::clock::now_ms()).await?))
}

/// The body of `POST .../batches`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    /// The batch id (default: a new one).
    id: Option<String>,
    /// Job type enqueued once when every member has ended.
    on_complete: Option<String>,
    /// Job type enqueued once when every member has succeeded.
    on_success: Option<String>,
}

/// `POST /v1/queues/{queue}/batches`: `{"id": "import-17",
/// "on_complete": "notify", "on_success": "publish"}` (each optional);
/// answers `{"id": ...}`.
pub(super) async fn create(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: CreateBody = if body.is_empty() {
        CreateBody::default()
    } else {
        super::body(&body, r#"{"id": "import-17"}"#)?
    };
    let (_, q) = api.queue(&queue)?;
    let callbacks = Callbacks {
        on_complete: body.on_complete,
        on_success: body.on_success,
    };
    let id = batches::create(&q, &caller.actor(), body.id.as_deref(), &callbacks).await?;
    Ok(Json(serde_json::json!({ "id": id })))
}

/// `POST /v1/queues/{queue}/batches/{id}/seal`: answers
/// `{"sealed": true}`, or `false` when it was sealed already.
pub(super) async fn seal(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    let now = batches::seal(&q, &caller.actor(), &id).await?;
    Ok(Json(serde_json::json!({ "sealed": now })))
}

/// The body of `POST .../batches/{id}/retry-failed` and `.../cancel`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActBody {
    /// Why (required unless `dry_run`).
    #[serde(default)]
    note: String,
    /// Count and change nothing.
    #[serde(default)]
    dry_run: bool,
}

fn act_body(body: &axum::body::Bytes) -> Result<ActBody, ApiError> {
    let b: ActBody = super::body(body, r#"{"note": "rows fixed", "dry_run": false}"#)?;
    if !b.dry_run && b.note.trim().is_empty() {
        return Err(ApiError::bad_request(
            "say why (`note`), or send \"dry_run\": true to count first",
        ));
    }
    Ok(b)
}

/// `POST /v1/queues/{queue}/batches/{id}/retry-failed`: requeues exactly
/// the batch's dead members, as `ward batch retry-failed`; answers the
/// bulk report of `POST .../dead/requeue`.
pub(super) async fn retry_failed(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<crate::control::dead::Report>, ApiError> {
    let b = act_body(&body)?;
    let (_, q) = api.queue(&queue)?;
    let report =
        crate::control::batch_actions::retry_failed(&q, &caller.actor(), &id, &b.note, b.dry_run)
            .await?;
    Ok(Json(report))
}

/// `POST /v1/queues/{queue}/batches/{id}/cancel`: cancels every member
/// still waiting or running, as `ward batch cancel`; answers the report of
/// `POST .../jobs/cancel`.
pub(super) async fn cancel(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<crate::control::bulk_cancel::BulkCancelReport>, ApiError> {
    let b = act_body(&body)?;
    let (_, q) = api.queue(&queue)?;
    let report =
        crate::control::batch_actions::cancel_rest(&q, &caller.actor(), &id, &b.note, b.dry_run)
            .await?;
    Ok(Json(report))
}

/// The body of `POST .../batches/{id}/pause`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PauseBody {
    /// Why (required).
    #[serde(default)]
    note: String,
    /// Resume by itself: a duration from now (`30m`) or an RFC 3339 time.
    until: Option<String>,
}

/// The body of `POST .../batches/{id}/resume` (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeBody {
    /// Why.
    #[serde(default)]
    note: String,
}

/// `POST /v1/queues/{queue}/batches/{id}/pause`: quarantines the batch, as
/// `ward batch pause`: its members are held, not run, until a resume.
pub(super) async fn pause(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<crate::control::batch_pause::BatchPaused>, ApiError> {
    let b: PauseBody = super::body(
        &body,
        r#"{"note": "bad rows, looking into it", "until": "2h"}"#,
    )?;
    let until_ms = super::pause::until_ms(b.until.as_deref())?;
    let (_, q) = api.queue(&queue)?;
    let done =
        crate::control::batch_pause::pause(&q, &caller.actor(), &id, &b.note, until_ms).await?;
    Ok(Json(done))
}

/// `POST /v1/queues/{queue}/batches/{id}/resume`: lets a paused batch go,
/// as `ward batch resume`; answers how many held members were released.
pub(super) async fn resume(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<crate::control::batch_pause::BatchPaused>, ApiError> {
    let b: ResumeBody = if body.is_empty() {
        ResumeBody::default()
    } else {
        super::body(&body, r#"{"note": "rows fixed"}"#)?
    };
    let (_, q) = api.queue(&queue)?;
    let done = crate::control::batch_pause::resume(&q, &caller.actor(), &id, &b.note).await?;
    Ok(Json(done))
}
