//! The web admin screen: server-rendered HTML on the admin server's
//! address, under `/ui/`, for the same tokens and roles as the API.
//!
//! One logs in by pasting a token ([`login`]); the browser then holds a
//! session cookie only ([`session`]). Pages read through the same
//! functions as the API's endpoints (which call [`crate::control`],
//! [`crate::dlq`] and the store), and actions are the API's actions with a
//! form in front ([`guard::Action`]: operator role, same origin, CSRF
//! token). Templates are askama's, under `templates/`, compiled into the
//! binary and escaping every value by default; the one stylesheet is
//! embedded too (no CDN, no script). `docs/web.md` describes each screen
//! and the safety model.
//!
//! # Layout
//!
//! - this file: the routes, the [`Page`] every screen shares, [`html`].
//! - `session.rs`, `guard.rs`, `error.rs`: sessions, the checks, errors.
//! - one file per screen: `login.rs`, `overview.rs`, `queue.rs` (with
//!   pause and resume), `job.rs` (with single requeue, edit-and-requeue
//!   and discard),
//!   `dead.rs` (the list and bulk actions), `breakers.rs`, `daemons.rs`,
//!   `audit.rs`; `chart.rs` draws the charts (inline SVG);
//!   `assets.rs` serves the stylesheet.

use askama::Template;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::Api;

mod assets;
mod audit;
mod breakers;
mod chart;
mod daemons;
mod dead;
mod error;
mod guard;
mod job;
mod login;
mod overview;
mod queue;
mod schedules;
pub mod session;

pub use error::WebError;
use guard::Viewer;
use session::Flash;

/// The routes of the screen, for [`super::router`] to merge.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview::page))
        .route("/ui/login", get(login::page).post(login::login))
        .route("/ui/logout", post(login::logout))
        .route("/ui/assets/ward.css", get(assets::css))
        .route("/ui/queues/{queue}", get(queue::page))
        .route("/ui/queues/{queue}/pause", post(queue::pause))
        .route("/ui/queues/{queue}/resume", post(queue::resume))
        .route("/ui/queues/{queue}/jobs/{id}", get(job::page))
        .route("/ui/queues/{queue}/jobs/{id}/cancel", post(job::cancel))
        .route("/ui/queues/{queue}/dead", get(dead::page))
        .route("/ui/queues/{queue}/dead/bulk", post(dead::bulk))
        .route("/ui/queues/{queue}/dead/{id}/requeue", post(job::requeue))
        .route("/ui/queues/{queue}/dead/{id}/edit", post(job::edit))
        .route("/ui/queues/{queue}/dead/{id}/discard", post(job::discard))
        .route("/ui/breakers", get(breakers::page))
        .route(
            "/ui/queues/{queue}/breakers/{upstream}/open",
            post(breakers::open),
        )
        .route(
            "/ui/queues/{queue}/breakers/{upstream}/close",
            post(breakers::close),
        )
        .route("/ui/audit", get(audit::page))
        .route("/ui/daemons", get(daemons::page))
        .route("/ui/schedules", get(schedules::page))
        .route("/ui/schedules/{name}/pause", post(schedules::pause))
        .route("/ui/schedules/{name}/resume", post(schedules::resume))
        .route("/ui/schedules/{name}/fire", post(schedules::fire))
}

/// What every page shows around its content: who is logged in, the
/// session's CSRF token for its forms, the last action's message.
#[derive(Debug, Clone)]
pub struct Page {
    /// The page's title.
    pub title: String,
    /// The token's name.
    pub user: String,
    /// Its role's name.
    pub role: &'static str,
    /// Whether action forms are shown (the server checks again on POST).
    pub operator: bool,
    /// The session's CSRF token.
    pub csrf: String,
    /// The last action's message.
    pub flash: Option<Flash>,
}

impl Page {
    /// The frame of a page titled `title` for `v`.
    #[must_use]
    pub fn new(v: &Viewer, title: impl Into<String>) -> Page {
        Page {
            title: title.into(),
            user: v.session.caller.name.clone(),
            role: v.session.caller.role.as_str(),
            operator: !v.session.caller.is_viewer(),
            csrf: v.session.csrf.clone(),
            flash: v.flash.clone(),
        }
    }
}

/// The headers every page carries. No script runs on any page (the
/// policy allows none), so even a value that escaped escaping would stay
/// text; no page may be framed (clickjacking), none is cached (a shared
/// machine's back button shows nothing after log out), and no referrer
/// leaves the screen.
const HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

/// `t` rendered as an HTML answer with [`HEADERS`].
pub fn html<T: Template>(t: &T) -> Response {
    let mut r = match t.render() {
        Ok(body) => axum::response::Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "web screen: a template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "a page failed to render").into_response()
        }
    };
    for (name, value) in HEADERS {
        r.headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    r
}

/// After an action: back to `to`, with `flash` shown there once.
pub fn done(api: &Api, session: &str, to: &str, flash: Result<String, WebError>) -> Response {
    let flash = match flash {
        Ok(text) => Flash { error: false, text },
        Err(e) => Flash {
            error: true,
            text: e.message,
        },
    };
    api.sessions().flash(session, flash);
    Redirect::to(to).into_response()
}

/// `ms` as an RFC 3339 time, `-` for none.
pub fn ts(ms: &Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), crate::text::format_ms)
}

/// A duration in ms as people read it (`3s`, `2m 5s`), `-` for none.
pub fn age(ms: &Option<u64>) -> String {
    ms.map_or_else(
        || "-".to_string(),
        |ms| {
            let secs = ms / 1000;
            if secs == 0 {
                format!("{ms}ms")
            } else {
                humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
            }
        },
    )
}

/// `s` made safe as one segment of a URL path (every byte but unreserved
/// ones percent-encoded), for links built from queue names and ids.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_keeps_only_unreserved_bytes() {
        assert_eq!(seg("1795332098269-0"), "1795332098269-0");
        assert_eq!(seg("a/b?c#d"), "a%2Fb%3Fc%23d");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(&None), "-");
        assert_eq!(age(&Some(250)), "250ms");
        assert_eq!(age(&Some(125_000)), "2m 5s");
    }
}
