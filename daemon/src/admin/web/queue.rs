//! A queue's page: its throughput and failure rate over the last hour per
//! job type (charts of the per-minute series), its jobs by state
//! (`ward job list`'s [`find::list`]), its pauses, and for operators pause and resume with a
//! required note ([`pause::pause`], [`pause::resume`], as
//! `POST /v1/queues/{queue}/pause|resume` call them).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};

use super::chart::{self, Chart};
use super::guard::{Action, Viewer};
use super::{Page, WebError, age, done, html, seg, ts};
use crate::admin::queues::{self, QueueView};
use crate::admin::series;
use crate::admin::{Api, ApiError};
use crate::control::find::{self, JobFilter, ListedJob};
use crate::control::pause;
use crate::store::Waiting;

/// How many jobs the page lists.
const LIST: usize = 100;

/// One job type's charts.
struct TypeCharts {
    job: String,
    throughput: Chart,
    failures: Chart,
}

/// The charts of each job type of `q`'s config, and of any other type the
/// series counted in the last hour (one no longer configured, or
/// [`crate::series::OTHER`]).
async fn type_charts(
    q: &crate::store::Queue,
    types: &[String],
) -> Result<Vec<TypeCharts>, WebError> {
    let minutes = series::last(q, series::HOUR).await?;
    let mut names: std::collections::BTreeSet<String> = types.iter().cloned().collect();
    for m in &minutes {
        names.extend(m.jobs.keys().cloned());
    }
    Ok(names
        .into_iter()
        .map(|job| {
            let points: Vec<_> = minutes.iter().map(|m| (m.minute, m.of(&job))).collect();
            TypeCharts {
                throughput: chart::throughput(&points),
                failures: chart::failures(&points),
                job,
            }
        })
        .collect())
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    page: Page,
    /// Each job type's throughput and failure rate over the last hour.
    charts: Vec<TypeCharts>,
    view: QueueView,
    link: String,
    oldest: String,
    /// The state listed (`""`: the three waiting ones).
    state: String,
    /// The job type listed (`""`: every one).
    job: String,
    /// The correlation field searched, `NAME=VALUE` (`""`: none).
    field: String,
    jobs: Vec<ListedJob>,
    more: bool,
}

impl QueuePage {
    fn enqueued(&self, j: &ListedJob) -> String {
        ts(&j.enqueued_at_ms)
    }
    /// `running`, `paused` (the whole queue) or `paused: a, b` (job types).
    fn state(&self) -> String {
        let paused = &self.view.paused;
        if paused.is_empty() {
            "running".to_string()
        } else if paused.iter().any(|p| p.target == "*") {
            "paused".to_string()
        } else {
            let types: Vec<&str> = paused.iter().map(|p| p.target.as_str()).collect();
            format!("paused: {}", types.join(", "))
        }
    }
    fn states(&self) -> [&'static str; 4] {
        ["queued", "delayed", "paused", "running"]
    }
    fn is_state(&self, s: &str) -> bool {
        self.state == s
    }
    fn is_job(&self, j: &str) -> bool {
        self.job == j
    }
    fn at(&self, ms: &u64) -> String {
        ts(&Some(*ms))
    }
    fn seg(&self, s: &str) -> String {
        seg(s)
    }
    fn until(&self, ms: &Option<u64>) -> String {
        ms.map_or_else(|| "a resume".to_string(), |m| ts(&Some(m)))
    }
    fn fields(&self, j: &ListedJob) -> String {
        j.fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `GET /ui/queues/{queue}?state=queued|delayed|paused|running&job=TYPE&field=NAME=VALUE`,
/// or `?id=ID` to open that job's page, or `?key=KEY` to open the page of
/// the job that owns idempotency key `KEY` ([`find::by_idempotency_key`]).
pub(super) async fn page(
    v: Viewer,
    State(api): State<Api>,
    Path(queue): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Result<Response, WebError> {
    let text = |k: &str| {
        query
            .get(k)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let id = text("id");
    if !id.is_empty() {
        let to = format!("/ui/queues/{}/jobs/{}", seg(&queue), seg(&id));
        return Ok(Redirect::to(&to).into_response());
    }
    let (cfg, q) = api.queue(&queue)?;
    let key = text("key");
    if !key.is_empty() {
        let owner = find::by_idempotency_key(&q, &key)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                WebError::new(
                    axum::http::StatusCode::NOT_FOUND,
                    format!("no job of queue {queue} owns idempotency key `{key}`: none was enqueued with it, or its record expired (it is kept for the job type's idempotency_ttl)"),
                )
            })?;
        let to = format!("/ui/queues/{}/jobs/{}", seg(&queue), seg(&owner.job_id));
        return Ok(Redirect::to(&to).into_response());
    }
    let view = queues::view(cfg, &q).await?;
    let state = text("state");
    let job = text("job");
    let field = text("field");
    let mut filter = JobFilter::default();
    if !job.is_empty() {
        filter.job = Some(job.clone());
    }
    if !field.is_empty() {
        let Some((name, value)) = field.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(WebError::bad_request(format!(
                "field `{field}` is not NAME=VALUE (e.g. order_id=o-17)"
            )));
        };
        filter.fields.push((name.to_string(), value.to_string()));
    }
    if !state.is_empty() {
        let s: Waiting =
            serde_json::from_value(serde_json::Value::String(state.clone())).map_err(|_| {
                WebError::bad_request(format!(
                    "state `{state}` is not one of queued, delayed, paused, running"
                ))
            })?;
        filter.states.push(s);
    }
    let listing = find::list(&q, &filter, LIST)
        .await
        .map_err(ApiError::from)?;
    let charts = type_charts(&q, &view.job_types).await?;
    Ok(html(&QueuePage {
        page: Page::new(&v, format!("Queue {queue}")),
        charts,
        link: seg(&queue),
        oldest: age(&view.oldest_ready_ms),
        view,
        state,
        job,
        field,
        jobs: listing.jobs,
        more: listing.more,
    }))
}

/// The pause form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct PauseForm {
    /// A job type, or empty for the whole queue.
    #[serde(default)]
    job: String,
    #[serde(default)]
    note: String,
    /// Empty, a duration (`30m`) or an RFC 3339 time.
    #[serde(default)]
    until: String,
}

fn job_of(job: &str) -> Option<&str> {
    Some(job.trim()).filter(|j| !j.is_empty())
}

/// `POST /ui/queues/{queue}/pause`
pub(super) async fn pause(
    State(api): State<Api>,
    Path(queue): Path<String>,
    a: Action<PauseForm>,
) -> Response {
    let back = format!("/ui/queues/{}", seg(&queue));
    let outcome = async {
        let (_, q) = api.queue(&queue)?;
        let until = a.form.until.trim();
        let until_ms = (!until.is_empty())
            .then(|| pause::parse_until(until, crate::clock::now_ms()))
            .transpose()
            .map_err(WebError::bad_request)?;
        let job = job_of(&a.form.job);
        let done = pause::pause(&q, &a.caller.actor(), job, a.form.note.trim(), until_ms)
            .await
            .map_err(ApiError::from)?;
        Ok::<_, WebError>(format!(
            "Paused {}.",
            if done.target == "*" {
                format!("queue {queue}")
            } else {
                format!("job type {} of queue {queue}", done.target)
            }
        ))
    }
    .await;
    done(&api, &a.id, &back, outcome)
}

/// The resume form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct ResumeForm {
    /// The pause's target: `*` (or empty) for the whole queue, else a job
    /// type.
    #[serde(default)]
    job: String,
    #[serde(default)]
    note: String,
}

/// `POST /ui/queues/{queue}/resume`: the note is required here (the API
/// leaves it optional) so that every resume from the screen says why.
pub(super) async fn resume(
    State(api): State<Api>,
    Path(queue): Path<String>,
    a: Action<ResumeForm>,
) -> Response {
    let back = format!("/ui/queues/{}", seg(&queue));
    let outcome = async {
        let note = a.form.note.trim();
        if note.is_empty() {
            return Err(WebError::bad_request(
                "a note is required: say why you resume",
            ));
        }
        let (_, q) = api.queue(&queue)?;
        let job = job_of(&a.form.job).filter(|j| *j != "*");
        let done = pause::resume(&q, &a.caller.actor(), job, note)
            .await
            .map_err(ApiError::from)?;
        Ok(format!(
            "Resumed {}; {} held job(s) back in the stream.",
            if done.target == "*" {
                format!("queue {queue}")
            } else {
                format!("job type {}", done.target)
            },
            done.released
        ))
    }
    .await;
    done(&api, &a.id, &back, outcome)
}
