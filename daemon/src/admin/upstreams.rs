//! Flow control per upstream: `GET /v1/upstreams` and
//! `GET /v1/queues/{queue}/upstreams`, as `ward upstreams` shows them (from
//! [`control::upstreams::list`]): limits from the API's config, tokens,
//! attempts in flight, a Retry-After hold and the breaker, from Redis.

use axum::Json;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller};
use crate::config::QueueConfig;
use crate::control::upstreams::{self, UpstreamLine};

/// The upstreams of queue `cfg`.
pub(super) async fn of(api: &Api, cfg: &QueueConfig) -> Result<Vec<UpstreamLine>, ApiError> {
    let named: Vec<String> = cfg
        .jobs
        .values()
        .flat_map(|j| j.upstreams.iter().cloned())
        .collect();
    let q = api.store().queue(&cfg.name);
    Ok(upstreams::list(&q, &api.config().upstreams, &named).await?)
}

/// `GET /v1/upstreams`: every queue's.
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<UpstreamLine>>, ApiError> {
    let mut out = Vec::new();
    for cfg in &api.config().queues {
        out.extend(of(&api, cfg).await?);
    }
    Ok(Json(out))
}

/// `GET /v1/queues/{queue}/upstreams`
pub(super) async fn of_queue(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<Vec<UpstreamLine>>, ApiError> {
    let (cfg, _) = api.queue(&queue)?;
    Ok(Json(of(&api, cfg).await?))
}
