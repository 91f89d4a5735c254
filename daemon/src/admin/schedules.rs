//! `GET /v1/schedules`: the config's `[[schedule]]` tables and when each
//! fires next (UTC, from this host's clock, as the daemons compute it).

use axum::Json;
use axum::extract::State;

use super::{Api, Caller};
use crate::schedule::next_fire;

/// One schedule.
#[derive(Debug, serde::Serialize)]
pub(super) struct ScheduleView {
    name: String,
    cron: String,
    queue: String,
    job: String,
    /// The next fire time, Unix ms (`None`: it never fires again).
    next_fire_ms: Option<i64>,
}

/// `GET /v1/schedules`
pub(super) async fn list(_: Caller, State(api): State<Api>) -> Json<Vec<ScheduleView>> {
    let now = chrono::Utc::now();
    Json(
        api.config()
            .schedules
            .iter()
            .map(|s| ScheduleView {
                name: s.name.clone(),
                cron: s.cron.clone(),
                queue: s.queue.clone(),
                job: s.job.clone(),
                next_fire_ms: next_fire(&s.schedule, now).map(|t| t.timestamp_millis()),
            })
            .collect(),
    )
}
