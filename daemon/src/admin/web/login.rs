//! Logging in and out. The login form takes a token of `[[admin.token]]`
//! in a POST body (never a URL), and answers with a session cookie; the
//! token itself is neither kept nor logged.

use askama::Template;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::guard::{AnyRole, same_origin};
use super::session;
use super::{WebError, html};
use crate::admin::forwarded::Peer;
use crate::admin::throttle::Refused;
use crate::admin::{Api, Caller};

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    error: Option<&'a str>,
}

/// `GET /ui/login`
pub(super) async fn page() -> Response {
    html(&LoginPage { error: None })
}

/// The login form.
#[derive(Debug, serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /ui/login`: a session for a known token, else the form again
/// with 401.
pub(super) async fn login(
    State(api): State<Api>,
    headers: HeaderMap,
    Peer(peer): Peer,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(e) = same_origin(&headers) {
        return e.into_response();
    }
    let caller = match api.authenticate(form.token.trim(), peer, &headers) {
        Ok(caller) => caller,
        Err(Refused::Unknown) => {
            let mut r = html(&LoginPage {
                error: Some("That token is none of [[admin.token]]."),
            });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return r;
        }
        Err(Refused::Throttled(wait)) => {
            let secs = Refused::retry_after_secs(wait);
            let message =
                format!("Too many failed logins from your address: try again in {secs} s.");
            let mut r = html(&LoginPage {
                error: Some(&message),
            });
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return r;
        }
    };
    tracing::info!(token = %caller.name, role = caller.role.as_str(), "web screen: logged in");
    let id = api.sessions().start(Caller {
        web: true,
        ..caller
    });
    let mut r = Redirect::to("/ui/").into_response();
    let secure = api.behind_tls(peer, &headers);
    match HeaderValue::from_str(&session::set_cookie(&id, secure)) {
        Ok(v) => {
            r.headers_mut().insert(header::SET_COOKIE, v);
            r
        }
        // A hex id always makes a valid header value.
        Err(_) => {
            WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "no session cookie").into_response()
        }
    }
}

/// `POST /ui/logout`: the session ends, the cookie goes.
pub(super) async fn logout(
    State(api): State<Api>,
    headers: HeaderMap,
    Peer(peer): Peer,
    who: AnyRole,
) -> Response {
    api.sessions().end(&who.id);
    let mut r = Redirect::to("/ui/login").into_response();
    let secure = api.behind_tls(peer, &headers);
    if let Ok(v) = HeaderValue::from_str(&session::clear_cookie(secure)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
