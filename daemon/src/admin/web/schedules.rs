//! Schedules: each one's cron, time zone, policies, next and last fire and
//! the last fire's job (the API's [`crate::control::schedules::view`]),
//! and for operators pause, resume and fire now, each with a required note
//! (the functions `ward schedules pause|resume|fire` call).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::guard::{Action, Viewer};
use super::{Page, WebError, done, html, seg, ts};
use crate::admin::{Api, ApiError};
use crate::control::schedules::{self, ScheduleView};

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    page: Page,
    schedules: Vec<ScheduleView>,
}

impl SchedulesPage {
    fn seg(&self, s: &str) -> String {
        seg(s)
    }
    fn ts(&self, ms: &Option<u64>) -> String {
        ts(ms)
    }
    fn opt(&self, v: &Option<String>) -> String {
        v.clone().unwrap_or_else(|| "-".to_string())
    }
    fn paused(&self, v: &Option<serde_json::Value>) -> String {
        v.as_ref().map_or_else(String::new, |p| {
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            format!("paused by {}: {}", text("by"), text("note"))
        })
    }
}

/// `GET /ui/schedules`
pub(super) async fn page(v: Viewer, State(api): State<Api>) -> Result<Response, WebError> {
    let mut out = Vec::new();
    for s in &api.config().schedules {
        out.push(
            schedules::view(&api.store().queue(&s.queue), s)
                .await
                .map_err(ApiError::from)?,
        );
    }
    Ok(html(&SchedulesPage {
        page: Page::new(&v, "Schedules"),
        schedules: out,
    }))
}

/// The form of a schedule action.
#[derive(Debug, serde::Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    note: String,
}

/// What an operator asks of a schedule.
#[derive(Clone, Copy)]
enum Ask {
    Pause,
    Resume,
    Fire,
}

/// `POST /ui/schedules/{name}/pause`
pub(super) async fn pause(
    State(api): State<Api>,
    Path(name): Path<String>,
    a: Action<NoteForm>,
) -> Response {
    act(&api, &name, Ask::Pause, a).await
}

/// `POST /ui/schedules/{name}/resume`
pub(super) async fn resume(
    State(api): State<Api>,
    Path(name): Path<String>,
    a: Action<NoteForm>,
) -> Response {
    act(&api, &name, Ask::Resume, a).await
}

/// `POST /ui/schedules/{name}/fire`
pub(super) async fn fire(
    State(api): State<Api>,
    Path(name): Path<String>,
    a: Action<NoteForm>,
) -> Response {
    act(&api, &name, Ask::Fire, a).await
}

async fn act(api: &Api, name: &str, ask: Ask, a: Action<NoteForm>) -> Response {
    let outcome = async {
        let note = a.form.note.trim();
        if note.is_empty() {
            return Err(WebError::bad_request(
                "a note is required: say why".to_string(),
            ));
        }
        let Some(s) = api.config().schedules.iter().find(|s| s.name == name) else {
            return Err(ApiError::not_found(format!("no schedule `{name}`")).into());
        };
        let q = api.store().queue(&s.queue);
        let actor = a.caller.actor();
        let said = match ask {
            Ask::Pause | Ask::Resume => {
                let pause = matches!(ask, Ask::Pause);
                let changed = schedules::set_paused(&q, &actor, name, pause, note)
                    .await
                    .map_err(ApiError::from)?;
                let verb = if pause { "paused" } else { "resumed" };
                if changed {
                    format!("Schedule {name} {verb}.")
                } else {
                    format!("Schedule {name} was {verb} already.")
                }
            }
            Ask::Fire => {
                let done = schedules::fire_now(&q, &actor, s, note)
                    .await
                    .map_err(ApiError::from)?;
                format!("Schedule {name} fired: job {}.", done.id)
            }
        };
        Ok(said)
    }
    .await;
    done(api, &a.id, "/ui/schedules", outcome)
}
