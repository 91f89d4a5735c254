//! `GET /v1/queues/{queue}/series?minutes=N`: the per-minute counts of
//! finished jobs the daemons write (see [`crate::series`]), by job type,
//! oldest minute first; what the web screen's charts draw.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use super::{Api, ApiError, Caller};
use crate::series::{self, Minute};
use crate::store::Queue;

/// Minutes shown when none are asked for: the last hour.
pub(super) const HOUR: u64 = 60;
/// The most minutes one read returns: the day the series keeps.
const MAX_MINUTES: u64 = 24 * 60;

/// The query of `GET /v1/queues/{queue}/series`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeriesQuery {
    /// How many minutes back from now, this one included (default 60, at
    /// most 1440).
    minutes: Option<u64>,
}

/// The answer: the minutes, oldest first.
#[derive(Debug, serde::Serialize)]
pub(super) struct SeriesView {
    queue: String,
    /// Each minute's start, Unix ms, and its counts by job type.
    minutes: Vec<MinuteView>,
}

/// One minute of [`SeriesView`].
#[derive(Debug, serde::Serialize)]
struct MinuteView {
    at_ms: u64,
    #[serde(flatten)]
    minute: Minute,
}

/// The last `n` minutes of `q` up to now, oldest first.
pub(super) async fn last(q: &Queue, n: u64) -> Result<Vec<Minute>, ApiError> {
    let range = series::last_minutes(crate::clock::now_ms(), n.clamp(1, MAX_MINUTES));
    Ok(q.series(range).await?)
}

/// `GET /v1/queues/{queue}/series`
pub(super) async fn of_queue(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
    query: Result<Query<SeriesQuery>, QueryRejection>,
) -> Result<Json<SeriesView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let n = query.minutes.unwrap_or(HOUR);
    if n == 0 || n > MAX_MINUTES {
        return Err(ApiError::bad_request(format!(
            "minutes must be 1 to {MAX_MINUTES} (the series keeps a day), not {n}"
        )));
    }
    let (_, q) = api.queue(&queue)?;
    let minutes = last(&q, n)
        .await?
        .into_iter()
        .map(|m| MinuteView {
            at_ms: m.minute * series::MINUTE_MS,
            minute: m,
        })
        .collect();
    Ok(Json(SeriesView { queue, minutes }))
}
