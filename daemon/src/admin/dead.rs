//! Dead letters: `GET /v1/queues/{queue}/dead` (the filters of
//! `ward dlq list`), `GET .../dead/groups` (counted by job type and code),
//! `GET .../dead/{id}`, and the operator's `POST .../dead/{id}/requeue`,
//! `POST .../dead/{id}/edit` (requeue with a new payload) and
//! `POST .../dead/{id}/discard`.
//!
//! The actions call what `ward dlq requeue|discard` calls
//! ([`control::dead::by_ids`], and [`control::dead::bulk`] for
//! `POST .../dead/requeue|discard` by filter), one audit entry each.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

use super::{Api, ApiError, Caller, Operator, shown};
use crate::control::dead::{self, BulkOptions, Report};
use crate::dlq::{self, Acted, DEFAULT_LIST_LIMIT, DeadLetter, Filter, Groups, Located, Op};

/// The most dead letters one list returns.
const MAX_LIST: usize = 1000;

/// The query of `GET /v1/queues/{queue}/dead`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only this job type.
    pub(super) job: Option<String>,
    /// Only reasons containing this text, ignoring case.
    pub(super) reason: Option<String>,
    /// Only this last failure code (exact), as the bulk actions filter.
    pub(super) code: Option<String>,
    /// Only since: a duration back from now (`30m`) or an RFC 3339 time.
    pub(super) since: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub(super) limit: Option<usize>,
}

/// `GET /v1/queues/{queue}/dead`: the newest dead letters matching.
pub(super) async fn list(
    caller: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(letters(&api, &caller, &queue, query).await?))
}

/// The newest dead letters of `queue` that `query` matches, as `caller`
/// may see them: the API's list and the web screen's.
///
/// # Errors
/// [`ApiError`] 400 for a bad time, 404 for a queue it does not know.
pub(super) async fn letters(
    api: &Api,
    caller: &Caller,
    queue: &str,
    query: ListQuery,
) -> Result<Vec<DeadLetter>, ApiError> {
    let (cfg, q) = api.queue(queue)?;
    let filter = filter_of(&query)?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT).min(MAX_LIST);
    let letters = dlq::list(&q, &filter, limit).await?;
    let viewer = caller.is_viewer();
    Ok(letters
        .into_iter()
        .map(|d| shown::dead_letter(viewer, cfg, d))
        .collect())
}

/// The filter `query` names.
fn filter_of(query: &ListQuery) -> Result<Filter, ApiError> {
    let since_ms = query
        .since
        .as_deref()
        .map(dlq::parse_since)
        .transpose()
        .map_err(ApiError::bad_request)?;
    Ok(Filter {
        job: query.job.clone(),
        reason: query.reason.clone(),
        code: query.code.clone(),
        since_ms,
        ..Filter::default()
    })
}

/// The most dead letters one grouping counts (the newest).
pub(super) const MAX_GROUPED: u64 = 10_000;

/// The dead letters of `queue` that `query` matches (its `limit` aside),
/// counted by job type and code: the newest [`MAX_GROUPED`] of them.
///
/// # Errors
/// [`ApiError`] 400 for a bad time, 404 for a queue it does not know.
pub(super) async fn grouped(api: &Api, queue: &str, query: &ListQuery) -> Result<Groups, ApiError> {
    let (_, q) = api.queue(queue)?;
    Ok(dlq::groups(&q, &filter_of(query)?, MAX_GROUPED).await?)
}

/// `GET /v1/queues/{queue}/dead/groups`: the dead letters matching the
/// filters of the list, counted by job type and last failure code.
pub(super) async fn groups(
    _: Caller,
    State(api): State<Api>,
    Path(queue): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Groups>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(grouped(&api, &queue, &query).await?))
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

/// `POST /v1/queues/{queue}/dead/{id}/requeue`: back as a fresh job
/// (attempt 1, budget reset, original payload).
pub(super) async fn requeue(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    act(&api, &caller, &queue, id, Op::Requeue, &body).await
}

/// `POST /v1/queues/{queue}/dead/{id}/discard`: marked "won't retry" and
/// removed from the dead-letter stream.
pub(super) async fn discard(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    act(&api, &caller, &queue, id, Op::Discard, &body).await
}

async fn act(
    api: &Api,
    caller: &Caller,
    queue: &str,
    id: String,
    op: Op,
    body: &Bytes,
) -> Result<Json<Report>, ApiError> {
    let note = super::body::<NoteBody>(body, r#"{"note": "why"}"#)?.note;
    Ok(Json(act_on(api, caller, queue, id, op, &note).await?))
}

/// Requeues or discards dead letter `id` ([`dead::by_ids`]), for the API
/// and the web screen alike.
///
/// # Errors
/// [`ApiError`] 404 when `id` has no dead letter, 409 when it was not
/// acted on; Redis errors.
pub(super) async fn act_on(
    api: &Api,
    caller: &Caller,
    queue: &str,
    id: String,
    op: Op,
    note: &str,
) -> Result<Report, ApiError> {
    let (_, q) = api.queue(queue)?;
    // Looked up first so that an id with no dead letter is a 404 that
    // leaves nothing on the audit trail.
    let located = dlq::locate(&q, &id).await?;
    if !matches!(located, Located::Dead(_)) {
        return Err(ApiError::not_found(dlq::not_dead(queue, &id, &located)));
    }
    let report = dead::by_ids(&q, &caller.actor(), op, &[id], note, |_| {}).await?;
    if report.acted == 0 {
        let why = report.problems.first().map_or_else(
            || format!("not {}", op.done()),
            |p: &Acted| p.line(op, queue),
        );
        return Err(ApiError::conflict(why));
    }
    Ok(report)
}

/// The body of `POST .../dead/{id}/edit`: the new payload, and why.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    /// The payload to run the job with, as text.
    payload: String,
    /// Why (required).
    #[serde(default)]
    note: String,
}

/// `POST /v1/queues/{queue}/dead/{id}/edit`: back as a fresh job with a
/// corrected payload (as `ward dlq requeue QUEUE ID --payload FILE`); the audit
/// entry's action is `edit`, with the digests and sizes of both payloads.
pub(super) async fn edit(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path((queue, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    let body = super::body::<EditBody>(&body, r#"{"payload": "{...}", "note": "why"}"#)?;
    Ok(Json(
        edit_on(
            &api,
            &caller,
            &queue,
            id,
            body.payload.as_bytes(),
            &body.note,
        )
        .await?,
    ))
}

/// Requeues dead letter `id` with `payload` in place of its own
/// ([`dead::requeue_edited`]), for the API and the web screen alike. The
/// note is required: an edited payload is a change someone must explain.
///
/// # Errors
/// [`ApiError`] 400 for an empty payload or note, 404 when `id` has no
/// dead letter, 409 when it was not requeued; Redis errors.
pub(super) async fn edit_on(
    api: &Api,
    caller: &Caller,
    queue: &str,
    id: String,
    payload: &[u8],
    note: &str,
) -> Result<Report, ApiError> {
    if note.trim().is_empty() {
        return Err(ApiError::bad_request(
            "a note is required: say why the payload changes",
        ));
    }
    if payload.is_empty() {
        return Err(ApiError::bad_request(
            "the new payload is empty: give the payload to run the job with (to drop the job, discard it)",
        ));
    }
    let (_, q) = api.queue(queue)?;
    let located = dlq::locate(&q, &id).await?;
    if !matches!(located, Located::Dead(_)) {
        return Err(ApiError::not_found(dlq::not_dead(queue, &id, &located)));
    }
    let report =
        dead::requeue_edited(&q, &caller.actor(), &id, payload, note.trim(), |_| {}).await?;
    if report.acted == 0 {
        let why = report.problems.first().map_or_else(
            || "not requeued".to_string(),
            |p: &Acted| p.line(Op::Requeue, queue),
        );
        return Err(ApiError::conflict(why));
    }
    Ok(report)
}

/// The body of `POST .../dead/requeue|discard`: which dead letters, and how.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BulkBody {
    /// Only this job type.
    pub(super) job: Option<String>,
    /// Only reasons containing this text, ignoring case.
    pub(super) reason: Option<String>,
    /// Only this last failure code.
    pub(super) code: Option<String>,
    /// Only dead-lettered since / before: a duration back from now or an
    /// RFC 3339 time.
    pub(super) since: Option<String>,
    pub(super) until: Option<String>,
    /// Correlation fields, each with exactly this value.
    #[serde(default)]
    pub(super) fields: std::collections::BTreeMap<String, String>,
    /// Count and sample; change nothing.
    #[serde(default)]
    pub(super) dry_run: bool,
    /// Act on at most this many (the newest first).
    pub(super) limit: Option<u64>,
    /// Why.
    #[serde(default)]
    pub(super) note: String,
}

/// `POST /v1/queues/{queue}/dead/requeue`: every dead letter matching.
pub(super) async fn bulk_requeue(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    bulk(&api, &caller, &queue, Op::Requeue, &body).await
}

/// `POST /v1/queues/{queue}/dead/discard`: every dead letter matching.
pub(super) async fn bulk_discard(
    Operator(caller): Operator,
    State(api): State<Api>,
    Path(queue): Path<String>,
    body: Bytes,
) -> Result<Json<Report>, ApiError> {
    bulk(&api, &caller, &queue, Op::Discard, &body).await
}

async fn bulk(
    api: &Api,
    caller: &Caller,
    queue: &str,
    op: Op,
    body: &Bytes,
) -> Result<Json<Report>, ApiError> {
    let b: BulkBody = super::body(
        body,
        r#"{"job": "send", "reason": "budget", "dry_run": true, "note": "why"}"#,
    )?;
    Ok(Json(bulk_with(api, caller, queue, op, b).await?))
}

/// Requeues or discards every dead letter `b` matches ([`dead::bulk`]),
/// or counts them in a dry run, for the API and the web screen alike.
///
/// # Errors
/// [`ApiError`] 400 for a bad time or no filter outside a dry run; Redis
/// errors.
pub(super) async fn bulk_with(
    api: &Api,
    caller: &Caller,
    queue: &str,
    op: Op,
    b: BulkBody,
) -> Result<Report, ApiError> {
    let time = |t: Option<&str>| {
        t.map(dlq::parse_since)
            .transpose()
            .map_err(ApiError::bad_request)
    };
    let filter = Filter {
        job: b.job,
        reason: b.reason,
        code: b.code,
        since_ms: time(b.since.as_deref())?,
        until_ms: time(b.until.as_deref())?,
        fields: b.fields.into_iter().collect(),
    };
    if filter.is_empty() && !b.dry_run {
        return Err(ApiError::bad_request(
            "no filter given: name at least one (job, reason, code, since, until, fields), or send \"dry_run\": true to count them all first",
        ));
    }
    let options = BulkOptions {
        note: b.note,
        dry_run: b.dry_run,
        limit: b.limit,
        ..BulkOptions::default()
    };
    let (_, q) = api.queue(queue)?;
    let report = dead::bulk(&q, &caller.actor(), op, &filter, &options, |_| {}).await?;
    Ok(report)
}
