//! Dead letters: `GET /v1/queues/{queue}/dead` (the filters of
//! `ward dlq list`), `GET .../dead/{id}`, and the operator's
//! `POST .../dead/{id}/requeue` and `POST .../dead/{id}/discard`.
//!
//! The actions call what `ward dlq requeue|discard` calls ([`dlq::locate`],
//! [`dlq::act`], then one audit entry through [`control::audit::record`]).
//! When the bulk part moves those into `control::dead`, these handlers call
//! that instead.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use super::{Api, ApiError, Caller, Operator, shown};
use crate::control::{self, Action};
use crate::dlq::{self, DEFAULT_LIST_LIMIT, DeadLetter, Filter, Located, Op};

/// The most dead letters one list returns.
const MAX_LIST: usize = 1000;

/// The query of `GET /v1/queues/{queue}/dead`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only this job type.
    job: Option<String>,
    /// Only reasons containing this text, ignoring case.
    reason: Option<String>,
    /// Only since: a duration back from now (`30m`) or an RFC 3339 time.
    since: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<usize>,
}

/// `GET /v1/queues/{queue}/dead`: the newest dead letters matching.
pub(super) async fn list(
    caller: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (cfg, q) = api.queue(&queue)?;
    let since_ms = query
        .since
        .as_deref()
        .map(dlq::parse_since)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let filter = Filter {
        job: query.job,
        reason: query.reason,
        since_ms,
    };
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST);
    let letters = dlq::list(&q, &filter, limit).await?;
    let viewer = caller.is_viewer();
    Ok(Json(
        letters
            .into_iter()
            .map(|d| shown::dead_letter(viewer, cfg, d))
            .collect(),
    ))
}

/// A dead letter with the job's history.
#[derive(Debug, serde::Serialize)]
pub(super) struct DeadView {
    #[serde(flatten)]
    dead: DeadLetter,
    history: Vec<serde_json::Value>,
}

/// `GET /v1/queues/{queue}/dead/{id}`: one dead letter, by job id or by
/// its entry id in `ward:{Q}:dead`.
pub(super) async fn show(
    caller: Caller,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
) -> Result<Json<DeadView>, ApiError> {
    let (cfg, q) = api.queue(&queue)?;
    let located = dlq::locate(&q, &id).await?;
    let Located::Dead(d) = located else {
        return Err(ApiError::not_found(dlq::not_dead(&queue, &id, &located)));
    };
    let history = q.history(&d.id).await?;
    Ok(Json(DeadView {
        dead: shown::dead_letter(caller.is_viewer(), cfg, *d),
        history,
    }))
}

/// The body of an action: why (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoteBody {
    /// Why, kept in the job's history and the audit trail.
    #[serde(default)]
    note: String,
}

/// What an action did to one job.
#[derive(Debug, serde::Serialize)]
pub(super) struct ActView {
    /// The job id.
    id: String,
    /// `requeued` or `discarded`.
    done: &'static str,
    /// For a requeue: the new entry in `ward:{Q}:jobs`.
    entry: Option<String>,
    /// The audit entry it left.
    audit_id: String,
}

/// `POST /v1/queues/{queue}/dead/{id}/requeue`: back as a fresh job
/// (attempt 1, budget reset, original payload).
pub(super) async fn requeue(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActView>, ApiError> {
    act(&api, &caller, &queue, id, Op::Requeue, &body).await
}

/// `POST /v1/queues/{queue}/dead/{id}/discard`: marked "won't retry" and
/// removed from the dead-letter stream.
pub(super) async fn discard(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActView>, ApiError> {
    act(&api, &caller, &queue, id, Op::Discard, &body).await
}

async fn act(
    api: &Api,
    caller: &Caller,
    queue: &str,
    id: String,
    op: Op,
    body: &Bytes,
) -> Result<Json<ActView>, ApiError> {
    let note = super::body::<NoteBody>(body, r#"{"note": "why"}"#)?.note;
    let (_, q) = api.queue(queue)?;
    let located = dlq::locate(&q, &id).await?;
    let Located::Dead(d) = located else {
        return Err(ApiError::not_found(dlq::not_dead(queue, &id, &located)));
    };
    let mut outcome = None;
    dlq::act(
        &q,
        vec![(id.clone(), Some(*d))],
        op,
        &caller.name,
        &note,
        |a| {
            outcome = Some(a.clone());
        },
    )
    .await?;
    let done = outcome.as_ref().is_some_and(dlq::Acted::is_done);
    let action = Action {
        action: op.verb(),
        queue,
        target: id.clone(),
        count: u64::from(done),
        note: &note,
        detail: None,
    };
    let audit_id = control::audit::record(api.store(), &caller.actor(), action).await?;
    match outcome {
        Some(dlq::Acted::Done { id, entry }) => Ok(Json(ActView {
            id,
            done: op.done(),
            entry,
            audit_id,
        })),
        Some(other) => Err(ApiError::conflict(other.line(op, queue))),
        None => Err(ApiError::conflict(format!(
            "job `{id}` was not {}",
            op.done()
        ))),
    }
}
