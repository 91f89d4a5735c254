//! `GET /v1/daemons`, `GET /v1/queues/{queue}/daemons`: the consumers of
//! each queue's group (one per daemon run) with what they hold, and what
//! each daemon's heartbeat last said of itself (version, last seen).

use axum::Json;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller, every_queue};
use crate::store::{ConsumerInfo, DaemonBeat, Queue};

/// One daemon consuming one queue.
#[derive(Debug, serde::Serialize)]
pub(super) struct DaemonView {
    pub(super) queue: String,
    #[serde(flatten)]
    pub(super) consumer: ConsumerInfo,
    /// Its version and last beat; `None` when it has not beaten within
    /// three beats (stopped, or a daemon older than this field).
    pub(super) beat: Option<DaemonBeat>,
    /// Whether it beat recently (its heartbeat hash has not expired).
    pub(super) alive: bool,
}

/// The daemons consuming `q`: the consumers of its group, and the daemons
/// that beat for it without having leased from it yet (Redis lists a
/// consumer only once a read gave it something), shown holding nothing.
pub(super) async fn of(q: Queue) -> Result<Vec<DaemonView>, ApiError> {
    let mut out = Vec::new();
    let mut consumers = q.consumers().await?;
    for name in q.beating().await? {
        if !consumers.iter().any(|c| c.name == name) {
            consumers.push(ConsumerInfo {
                name,
                pending: 0,
                idle_ms: 0,
                inactive_ms: None,
            });
        }
    }
    for consumer in consumers {
        let beat = q.beat(&consumer.name).await?;
        out.push(DaemonView {
            queue: q.keys.queue.clone(),
            alive: beat.is_some(),
            consumer,
            beat,
        });
    }
    Ok(out)
}

/// `GET /v1/daemons`: every queue's.
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<DaemonView>>, ApiError> {
    Ok(Json(every_queue(&api, of).await?))
}

/// `GET /v1/queues/{queue}/daemons`
pub(super) async fn of_queue(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<Vec<DaemonView>>, ApiError> {
    let (_, q) = api.queue(&queue)?;
    Ok(Json(of(q).await?))
}
