//! Circuit breakers: `GET /v1/breakers` and `GET /v1/queues/{queue}/breakers`
//! (as `ward breakers` shows them, from [`control::breakers::list`]), and
//! the operator's overrides `POST .../breakers/{upstream}/open` and
//! `.../close` ([`control::breakers::force`], as `ward breakers open|close`).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller, Operator, every_queue};
use crate::control::breakers::{self, BreakerLine, Override};
use crate::store::Queue;

async fn of(q: Queue) -> Result<Vec<BreakerLine>, ApiError> {
    Ok(breakers::list(&q).await?)
}

/// `GET /v1/breakers`: every queue's.
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<BreakerLine>>, ApiError> {
    Ok(Json(every_queue(&api, of).await?))
}

/// `GET /v1/queues/{queue}/breakers`
pub(super) async fn of_queue(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<Vec<BreakerLine>>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(of(q).await?))
}

/// The body of `POST .../open`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OpenBody {
    /// How long: `30s`, `10m`, `2h`.
    #[serde(rename = "for")]
    open_for: String,
    /// Why, for the audit trail (required, as `ward breakers open --note`).
    note: String,
}

/// The body of `POST .../close`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CloseBody {
    /// Why, for the audit trail (required).
    note: String,
}

/// What an override left.
#[derive(Debug, serde::Serialize)]
pub(super) struct Forced {
    pub(super) queue: String,
    pub(super) upstream: String,
    /// `open` or `closed`, now.
    pub(super) state: &'static str,
    /// Whether it was open before.
    pub(super) was_open: bool,
    /// Open until, Unix ms (Redis' clock), when open.
    pub(super) open_until_ms: Option<u64>,
}

/// `POST /v1/queues/{queue}/breakers/{upstream}/open`: `{"for": "10m",
/// "note": "..."}`; jobs that need the upstream wait, spending no attempt.
pub(super) async fn open(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, upstream)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Forced>, ApiError> {
    let body: OpenBody = super::body(&body, r#"{"for": "10m", "note": "why"}"#)?;
    let open_for: Duration = humantime::parse_duration(body.open_for.trim()).map_err(|e| {
        ApiError::bad_request(format!(
            "`for` `{}` is not a duration ({e}); write it like \"30s\", \"10m\" or \"2h\"",
            body.open_for
        ))
    })?;
    force(
        &api,
        &caller,
        &queue,
        &upstream,
        Override::Open(open_for),
        &body.note,
    )
    .await
}

/// `POST /v1/queues/{queue}/breakers/{upstream}/close`: `{"note": "..."}`;
/// its failures are forgotten and the jobs that need it run again.
pub(super) async fn close(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, upstream)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Forced>, ApiError> {
    let body: CloseBody = super::body(&body, r#"{"note": "why"}"#)?;
    force(
        &api,
        &caller,
        &queue,
        &upstream,
        Override::Close,
        &body.note,
    )
    .await
}

/// Forces a breaker open or closed ([`breakers::force`]), as
/// `ward breakers open|close` and the web screen do.
pub(super) async fn force(
    api: &Api,
    caller: &Caller,
    queue: &str,
    upstream: &str,
    how: Override,
    note: &str,
) -> Result<Json<Forced>, ApiError> {
    let (_, q) = api.queue(queue)?;
    let forced = breakers::force(&q, &caller.actor(), upstream, how, note).await?;
    Ok(Json(Forced {
        queue: queue.to_string(),
        upstream: upstream.to_string(),
        state: if forced.open_until_ms.is_some() {
            "open"
        } else {
            "closed"
        },
        was_open: forced.was_open,
        open_until_ms: forced.open_until_ms,
    }))
}
