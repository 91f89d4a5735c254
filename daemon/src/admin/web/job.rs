//! A job's page: its state, its history (each attempt's class, code,
//! message, duration and plugin digest), its payload as the API shows it
//! (redacted for viewers), and for a dead job the operator's requeue,
//! edit-and-requeue and discard with a required note
//! ([`crate::control::dead::by_ids`] and
//! [`crate::control::dead::requeue_edited`], as
//! `POST /v1/queues/{queue}/dead/{id}/requeue|edit|discard` call them).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::guard::{Action, Viewer};
use super::{Page, WebError, done, html, seg, ts};
use crate::admin::jobs::{self, JobView};
use crate::admin::{Api, dead};
use crate::dlq::Op;

/// One line of the history, ready to show.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HistoryRow {
    /// The attempt's number, or the event's name (`requeued`, `held`).
    pub what: String,
    /// When it started (or happened).
    pub at: String,
    /// `success`, `transient`, `recoverable`, `permanent`, `timeout`,
    /// `crash` (empty for an event).
    pub class: String,
    /// The failure's code.
    pub code: String,
    /// The failure's message, or the event's who and why.
    pub message: String,
    /// How long the attempt took.
    pub took: String,
    /// The plugin's digest (its first 12 hex digits).
    pub plugin: String,
    /// What followed: `retry in 1000 ms`, `dead (permanent)`, ...
    pub then: String,
}

/// A history line (JSON, as the store keeps it) as a row.
#[must_use]
pub fn history_row(h: &serde_json::Value) -> HistoryRow {
    let text = |k: &str| {
        h.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default()
    };
    let num = |k: &str| h.get(k).and_then(serde_json::Value::as_u64);
    if h.get("event").is_some() && h.get("attempt").is_none() {
        let mut message = [("by ", text("by")), ("", text("why")), ("", text("note"))]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(p, v)| format!("{p}{v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if h.get("edited").and_then(serde_json::Value::as_bool) == Some(true) {
            message.push_str(" (with a new payload)");
        }
        return HistoryRow {
            what: text("event"),
            at: ts(&num("at")),
            message,
            ..HistoryRow::default()
        };
    }
    let (started, finished) = (num("started_at"), num("finished_at"));
    let then = match text("then").as_str() {
        "retry" => format!("retry in {} ms", text("delay_ms")),
        "dead" => format!("dead ({})", text("reason")),
        other => other.to_string(),
    };
    HistoryRow {
        what: format!("#{}", text("attempt")),
        at: ts(&started.or(finished)),
        class: text("class"),
        code: text("code"),
        message: text("message"),
        took: match (started, finished) {
            (Some(a), Some(b)) => format!("{} ms", b.saturating_sub(a)),
            _ => String::new(),
        },
        plugin: text("plugin"),
        then,
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    page: Page,
    queue: String,
    link: String,
    job: JobView,
    /// A dead job's payload for an operator to edit and requeue with, when
    /// it is text (bytes that are not UTF-8 are edited with `ward dlq
    /// requeue --payload`, not in a text box).
    editable: Option<String>,
    history: Vec<HistoryRow>,
    first: String,
    last: String,
    due: String,
}

impl JobPage {
    fn seg(&self, s: &str) -> String {
        seg(s)
    }

    /// Whether the job waits or runs, so a cancel would change something.
    fn cancellable(&self) -> bool {
        matches!(
            self.job.status.state.as_str(),
            "queued" | "delayed" | "retrying" | "paused" | "running"
        )
    }
}

/// `GET /ui/queues/{queue}/jobs/{id}`
pub(super) async fn page(
    v: Viewer,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let job = jobs::view(&api, &v.session.caller, &queue, &id).await?;
    let history = job.status.history.iter().map(history_row).collect();
    let editable = if job.status.state == "dead" && !v.session.caller.is_viewer() {
        let (_, q) = api.queue(&queue)?;
        q.record_payload(&id)
            .await
            .map_err(crate::admin::ApiError::from)?
            .and_then(|p| String::from_utf8(p).ok())
    } else {
        None
    };
    Ok(html(&JobPage {
        editable,
        page: Page::new(&v, format!("Job {id}")),
        link: seg(&queue),
        first: ts(&job.status.first_attempt_at_ms),
        last: ts(&job.status.last_attempt_at_ms),
        due: ts(&job.status.due_at_ms),
        queue,
        job,
        history,
    }))
}

/// The form of a single requeue or discard.
#[derive(Debug, serde::Deserialize)]
pub(super) struct NoteForm {
    #[serde(default)]
    note: String,
}

/// `POST /ui/queues/{queue}/dead/{id}/requeue`
pub(super) async fn requeue(
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    a: Action<NoteForm>,
) -> Response {
    act(&api, &queue, id, Op::Requeue, a).await
}

/// `POST /ui/queues/{queue}/dead/{id}/discard`
pub(super) async fn discard(
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    a: Action<NoteForm>,
) -> Response {
    act(&api, &queue, id, Op::Discard, a).await
}

/// The edit-and-requeue form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct EditForm {
    #[serde(default)]
    payload: String,
    #[serde(default)]
    note: String,
}

/// A payload as a browser's text box sent it, as the bytes to run the job
/// with: a form sends line breaks as CRLF whatever was typed, so they are
/// read back as the LF a payload written elsewhere would hold.
#[must_use]
pub fn typed_payload(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n").into_bytes()
}

/// `POST /ui/queues/{queue}/dead/{id}/edit`: requeue with the payload of
/// the form, as `ward dlq requeue QUEUE ID --payload FILE` (audited as `edit`).
pub(super) async fn edit(
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    a: Action<EditForm>,
) -> Response {
    let back = format!("/ui/queues/{}/jobs/{}", seg(&queue), seg(&id));
    let payload = typed_payload(&a.form.payload);
    let outcome = dead::edit_on(&api, &a.caller, &queue, id.clone(), &payload, &a.form.note)
        .await
        .map(|_| {
            format!(
                "Job {id} requeued with the edited payload ({} bytes).",
                payload.len()
            )
        })
        .map_err(super::WebError::from);
    done(&api, &a.id, &back, outcome)
}

/// `POST /ui/queues/{queue}/jobs/{id}/cancel`: as `ward job cancel` (a
/// waiting job never runs, a running one is interrupted on its daemon).
pub(super) async fn cancel(
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    a: Action<NoteForm>,
) -> Response {
    let back = format!("/ui/queues/{}/jobs/{}", seg(&queue), seg(&id));
    let outcome = async {
        let note = a.form.note.trim();
        if note.is_empty() {
            return Err(WebError::bad_request(
                "a note is required: say why it is cancelled".to_string(),
            ));
        }
        let (_, q) = api.queue(&queue)?;
        let report =
            crate::control::cancel::cancel(&q, &a.caller.actor(), std::slice::from_ref(&id), note)
                .await
                .map_err(crate::admin::ApiError::from)?;
        let what = match report.jobs.first().map(|j| &j.outcome) {
            Some(crate::control::cancel::CancelOutcome::Cancelled { was }) => {
                format!("Job {id} cancelled (it was {was}); it will never run.")
            }
            Some(crate::control::cancel::CancelOutcome::Requested { .. }) => {
                format!("Job {id} is running: its daemon was asked to stop it.")
            }
            _ => format!("Job {id} had already ended; nothing changed."),
        };
        Ok(what)
    }
    .await;
    done(&api, &a.id, &back, outcome)
}

async fn act(api: &Api, queue: &str, id: String, op: Op, a: Action<NoteForm>) -> Response {
    let back = format!("/ui/queues/{}/jobs/{}", seg(queue), seg(&id));
    let outcome = async {
        let note = a.form.note.trim();
        if note.is_empty() {
            return Err(WebError::bad_request(format!(
                "a note is required: say why it is {}",
                op.done()
            )));
        }
        dead::act_on(api, &a.caller, queue, id.clone(), op, note).await?;
        Ok(format!("Job {id} {}.", op.done()))
    }
    .await;
    done(api, &a.id, &back, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_reads_with_its_class_code_and_duration() {
        let row = history_row(&serde_json::json!({
            "attempt": 2, "started_at": 1000, "finished_at": 1250, "class": "transient",
            "code": "http-503", "message": "<b>down</b>", "then": "retry", "delay_ms": 2000,
            "plugin": "abcdef012345"
        }));
        assert_eq!(row.what, "#2");
        assert_eq!(row.class, "transient");
        assert_eq!(row.code, "http-503");
        assert_eq!(
            row.message, "<b>down</b>",
            "kept as is: the template escapes"
        );
        assert_eq!(row.took, "250 ms");
        assert_eq!(row.then, "retry in 2000 ms");
        assert_eq!(row.plugin, "abcdef012345");
    }

    #[test]
    fn a_typed_payload_keeps_its_bytes_but_not_the_forms_crlf() {
        assert_eq!(typed_payload("{\r\n  \"a\": 1\r\n}"), b"{\n  \"a\": 1\n}");
        assert_eq!(typed_payload("é<b>"), "é<b>".as_bytes());
    }

    #[test]
    fn an_event_reads_with_who_and_why() {
        let row = history_row(&serde_json::json!({
            "event": "requeued", "at": 5000, "by": "api:ops", "note": "fixed upstream"
        }));
        assert_eq!(row.what, "requeued");
        assert_eq!(row.message, "by api:ops; fixed upstream");
        assert_eq!(row.class, "");
    }
}
