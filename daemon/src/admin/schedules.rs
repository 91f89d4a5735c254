//! Schedules: `GET /v1/schedules` and `GET /v1/schedules/{name}` (next and
//! last fire, the last fire's job and its state, as `ward schedules` shows
//! them), and the operator's `POST /v1/schedules/{name}/pause`, `/resume`
//! and `/fire`, which call [`control::schedules`] as `ward schedules
//! pause|resume|fire` do.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};

use super::{Api, ApiError, Caller, Operator};
use crate::config::ScheduleConfig;
use crate::control::schedules::{self, ScheduleView};

/// Schedule `name` of the config, or 404 naming the ones it has.
fn find<'a>(api: &'a Api, name: &str) -> Result<&'a ScheduleConfig, ApiError> {
    let all = &api.config().schedules;
    all.iter().find(|s| s.name == name).ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        ApiError::not_found(format!(
            "no schedule `{name}` in this API's config (schedules: {})",
            known.join(", ")
        ))
    })
}

/// `GET /v1/schedules`
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let mut out = Vec::new();
    for s in &api.config().schedules {
        out.push(schedules::view(&api.store().queue(&s.queue), s).await?);
    }
    Ok(Json(out))
}

/// `GET /v1/schedules/{name}`
pub(super) async fn one(
    _: Caller,
    State(api): State<Api>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let s = find(&api, &name)?;
    Ok(Json(
        schedules::view(&api.store().queue(&s.queue), s).await?,
    ))
}

/// The body of a schedule action.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteBody {
    /// Why, for the audit trail (required, as `--note`).
    note: String,
}

/// What an action did.
#[derive(Debug, serde::Serialize)]
pub(super) struct Acted {
    /// The schedule.
    name: String,
    /// For pause and resume: whether it is paused now, and whether that
    /// changed anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    paused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed: Option<bool>,
    /// For fire: the job it enqueued.
    #[serde(skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
}

/// `POST /v1/schedules/{name}/pause`: `{"note": "..."}`; it fires no more
/// until resumed.
pub(super) async fn pause(
    op: Operator,
    state: State<Api>,
    name: Path<String>,
    body: Bytes,
) -> Result<Json<Acted>, ApiError> {
    set_paused(op, state, name, body, true).await
}

/// `POST /v1/schedules/{name}/resume`: `{"note": "..."}`; it fires again
/// from its next fire time.
pub(super) async fn resume(
    op: Operator,
    state: State<Api>,
    name: Path<String>,
    body: Bytes,
) -> Result<Json<Acted>, ApiError> {
    set_paused(op, state, name, body, false).await
}

async fn set_paused(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
    pause: bool,
) -> Result<Json<Acted>, ApiError> {
    let note = note(&body)?;
    let s = find(&api, &name)?;
    let q = api.store().queue(&s.queue);
    let changed = schedules::set_paused(&q, &caller.actor(), &name, pause, &note).await?;
    Ok(Json(Acted {
        name,
        paused: Some(pause),
        changed: Some(changed),
        job_id: None,
    }))
}

/// `POST /v1/schedules/{name}/fire`: `{"note": "..."}`; enqueues its job
/// now, outside its times.
pub(super) async fn fire(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Acted>, ApiError> {
    let note = note(&body)?;
    let s = find(&api, &name)?;
    let q = api.store().queue(&s.queue);
    let done = schedules::fire_now(&q, &caller.actor(), s, &note).await?;
    Ok(Json(Acted {
        name,
        paused: None,
        changed: None,
        job_id: Some(done.id),
    }))
}

fn note(body: &[u8]) -> Result<String, ApiError> {
    let note = super::body::<NoteBody>(body, r#"{"note": "why"}"#)?.note;
    if note.trim().is_empty() {
        return Err(ApiError::bad_request("`note` must say why"));
    }
    Ok(note)
}
