//! `GET /v1/breakers`, `GET /v1/queues/{queue}/breakers`: each queue's
//! circuit breakers, as `ward breakers` shows them.

use axum::Json;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller, every_queue};
use crate::store::Queue;

/// One upstream's breaker.
#[derive(Debug, serde::Serialize)]
pub(super) struct BreakerView {
    queue: String,
    upstream: String,
    /// `open` or `closed`.
    state: &'static str,
    /// Failures counted in the current window.
    failures: u32,
    /// Open until, Unix ms (Redis' clock), while open.
    open_until_ms: Option<u64>,
    /// Times it opened (within the life of its Redis hash).
    openings: u32,
}

async fn of(q: Queue) -> Result<Vec<BreakerView>, ApiError> {
    let (now, states) = q.breakers().await?;
    Ok(states
        .into_iter()
        .map(|b| {
            let open = b.open_until_ms > now;
            BreakerView {
                queue: q.keys.queue.clone(),
                upstream: b.upstream,
                state: if open { "open" } else { "closed" },
                failures: b.failures,
                open_until_ms: open.then_some(b.open_until_ms),
                openings: b.openings,
            }
        })
        .collect())
}

/// `GET /v1/breakers`: every queue's.
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<BreakerView>>, ApiError> {
    Ok(Json(every_queue(&api, of).await?))
}

/// `GET /v1/queues/{queue}/breakers`
pub(super) async fn of_queue(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<Vec<BreakerView>>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(of(q).await?))
}
