//! Breakers and upstreams: per queue, each upstream's limits, tokens,
//! attempts in flight, Retry-After hold and breaker (the API's
//! [`upstreams::of`], from [`crate::control::upstreams::list`]), each
//! breaker that counted anything ([`crate::control::breakers::list`]), and
//! for operators force open (for a while) and force close with a required
//! note (the API's [`breakers::force`]).

use std::time::Duration;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;

use super::guard::{Action, Viewer};
use super::{Page, WebError, age, done, html, seg};
use crate::admin::{Api, ApiError, breakers, upstreams};
use crate::control::breakers::{BreakerLine, Override};
use crate::control::upstreams::UpstreamLine;

#[derive(Template)]
#[template(path = "breakers.html")]
struct BreakersPage {
    page: Page,
    upstreams: Vec<UpstreamLine>,
    breakers: Vec<BreakerLine>,
}

impl BreakersPage {
    fn seg(&self, s: &str) -> String {
        seg(s)
    }
    fn age(&self, ms: &Option<u64>) -> String {
        age(ms)
    }
    fn rate(&self, u: &UpstreamLine) -> String {
        u.rate.as_ref().map_or_else(
            || "-".to_string(),
            |r| format!("{} per {} ms, burst {}", r.rate, r.per_ms, r.burst),
        )
    }
    fn opt<T: std::fmt::Display>(&self, v: &Option<T>) -> String {
        v.as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string)
    }
}

/// `GET /ui/breakers`
pub(super) async fn page(v: Viewer, State(api): State<Api>) -> Result<Response, WebError> {
    let mut lines = Vec::new();
    let mut open = Vec::new();
    for cfg in &api.config().queues {
        lines.extend(upstreams::of(&api, cfg).await?);
        let q = api.store().queue(&cfg.name);
        open.extend(
            crate::control::breakers::list(&q)
                .await
                .map_err(ApiError::from)?,
        );
    }
    Ok(html(&BreakersPage {
        page: Page::new(&v, "Breakers and upstreams"),
        upstreams: lines,
        breakers: open,
    }))
}

/// The form of a forced open.
#[derive(Debug, serde::Deserialize)]
pub(super) struct OpenForm {
    /// How long: `30s`, `10m`, `2h`.
    #[serde(default, rename = "for")]
    open_for: String,
    #[serde(default)]
    note: String,
}

/// `POST /ui/queues/{queue}/breakers/{upstream}/open`
pub(super) async fn open(
    State(api): State<Api>,
    Path((queue, upstream)): Path<(String, String)>,
    a: Action<OpenForm>,
) -> Response {
    let outcome = async {
        let open_for: Duration =
            humantime::parse_duration(a.form.open_for.trim()).map_err(|e| {
                WebError::bad_request(format!(
                    "`{}` is not a duration ({e}); write it like 30s, 10m or 2h",
                    a.form.open_for
                ))
            })?;
        force(&api, &a, &queue, &upstream, Override::Open(open_for)).await
    }
    .await;
    done(&api, &a.id, "/ui/breakers", outcome)
}

/// The form of a forced close.
#[derive(Debug, serde::Deserialize)]
pub(super) struct CloseForm {
    #[serde(default)]
    note: String,
}

/// `POST /ui/queues/{queue}/breakers/{upstream}/close`
pub(super) async fn close(
    State(api): State<Api>,
    Path((queue, upstream)): Path<(String, String)>,
    a: Action<CloseForm>,
) -> Response {
    let outcome = force(&api, &a, &queue, &upstream, Override::Close).await;
    done(&api, &a.id, "/ui/breakers", outcome)
}

/// A form with a note, whichever.
trait Noted {
    fn note(&self) -> &str;
}
impl Noted for OpenForm {
    fn note(&self) -> &str {
        &self.note
    }
}
impl Noted for CloseForm {
    fn note(&self) -> &str {
        &self.note
    }
}

async fn force<T: Noted>(
    api: &Api,
    a: &Action<T>,
    queue: &str,
    upstream: &str,
    how: Override,
) -> Result<String, WebError> {
    let note = a.form.note().trim();
    if note.is_empty() {
        return Err(WebError::bad_request(
            "a note is required: say why you force the breaker",
        ));
    }
    let forced = breakers::force(api, &a.caller, queue, upstream, how, note).await?;
    Ok(format!(
        "The breaker of {upstream} (queue {queue}) is {}.",
        forced.0.state
    ))
}
