//! `GET /v1/queues`, `GET /v1/queues/{queue}`: each queue's depth by state,
//! as `ward stats` shows it.

use axum::Json;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller};
use crate::config::QueueConfig;
use crate::control::pause::{self, PauseView};
use crate::store::Queue;

/// One queue: its jobs by state, and what the config says of it.
#[derive(Debug, serde::Serialize)]
pub(super) struct QueueView {
    pub(super) queue: String,
    /// Whether a daemon has ever consumed it (the group `ward` exists).
    pub(super) consumed: bool,
    /// How many jobs it holds, by state.
    pub(super) jobs: Depth,
    /// Age of the oldest entry not yet delivered, ms.
    pub(super) oldest_ready_ms: Option<u64>,
    /// The job types the config maps to plugins.
    pub(super) job_types: Vec<String>,
    /// Attempts one daemon runs at once.
    pub(super) concurrency: u32,
    /// Its pauses (`target` `*`: the whole queue), each with the jobs it
    /// holds.
    pub(super) paused: Vec<PauseView>,
    /// Jobs held back while their job type or the queue is paused.
    pub(super) held: u64,
}

/// Jobs by state: `ready` (not yet delivered), `leased` (running or about
/// to), `delayed` (retries and scheduled), `dead` (dead letters).
#[derive(Debug, serde::Serialize)]
pub(super) struct Depth {
    pub(super) ready: u64,
    pub(super) leased: u64,
    pub(super) delayed: u64,
    pub(super) dead: u64,
}

/// One queue's view, as `GET /v1/queues/{queue}` answers and the web
/// screen's overview shows it.
pub(super) async fn view(cfg: &QueueConfig, q: &Queue) -> Result<QueueView, ApiError> {
    let s = q.sample().await?;
    let pauses = pause::status(q).await?;
    let jobs = Depth {
        ready: s.ready,
        leased: s.pending,
        delayed: s.delayed,
        dead: s.dead,
    };
    Ok(QueueView {
        queue: cfg.name.clone(),
        consumed: s.group_exists,
        jobs,
        oldest_ready_ms: s.oldest_ready_ms.map(|t| s.now_ms.saturating_sub(t)),
        job_types: cfg.jobs.keys().cloned().collect(),
        concurrency: cfg.concurrency,
        paused: pauses.pauses,
        held: pauses.held.total,
    })
}

/// `GET /v1/queues`
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    let mut out = Vec::new();
    for cfg in &api.config().queues {
        out.push(view(cfg, &api.store().queue(&cfg.name)).await?);
    }
    Ok(Json(out))
}

/// `GET /v1/queues/{queue}`
pub(super) async fn one(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
) -> Result<Json<QueueView>, ApiError> {
    let (cfg, q) = api.queue(&queue)?;
    Ok(Json(view(cfg, &q).await?))
}
