//! Who may see a page and who may act: the extractors of the screen's
//! handlers.
//!
//! A page needs a live session ([`Viewer`]; else the browser is sent to the
//! login page). An action ([`Action`]) needs, in this order, a live
//! session, a request from the screen's own origin (`Origin`, else
//! `Referer`, must name the `Host` it was sent to), the operator role, and
//! the session's CSRF token in the form; any failure answers before the
//! handler runs, so nothing changes. The cookie is `SameSite=Strict` as
//! well: each of the three would stop a cross-site request alone.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, HOST, ORIGIN, REFERER};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::WebError;
use super::session::{self, Flash, Session};
use crate::admin::{Api, Caller};
use crate::config::admin::Role;

/// A logged-in browser reading a page.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session's id.
    pub id: String,
    /// The session.
    pub session: Session,
    /// The message the last action left, shown once.
    pub flash: Option<Flash>,
}

/// The session the request's cookie names, if it is live.
fn session_of(headers: &HeaderMap, api: &Api) -> Option<(String, Session, Option<Flash>)> {
    let id = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .find_map(session::from_cookie_header)?
        .to_string();
    let (s, flash) = api.sessions().get(&id)?;
    Some((id, s, flash))
}

impl FromRequestParts<Api> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Viewer, Response> {
        match session_of(&parts.headers, api) {
            Some((id, session, flash)) => Ok(Viewer { id, session, flash }),
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

/// Whether the request comes from a page of the origin it is sent to:
/// its `Origin` (or, when a browser sends none, its `Referer`) names the
/// `Host` it was sent to. A request with neither is refused: every
/// browser this screen supports sends `Origin` with a form's POST.
///
/// # Errors
/// [`WebError`] 403 saying which header did not match.
pub fn same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let text = |h| headers.get(h).and_then(|v| v.to_str().ok());
    let Some(host) = text(HOST) else {
        return Err(WebError::forbidden("the request has no Host header"));
    };
    let ours = |origin: &str| {
        origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            == Some(host)
    };
    if let Some(origin) = text(ORIGIN) {
        return if ours(origin) {
            Ok(())
        } else {
            Err(WebError::forbidden(format!(
                "cross-origin request refused: Origin `{origin}` is not this screen's (`{host}`)"
            )))
        };
    }
    if let Some(referer) = text(REFERER) {
        let origin = referer.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        return if ours(&origin) {
            Ok(())
        } else {
            Err(WebError::forbidden(
                "cross-origin request refused: the Referer is not a page of this screen",
            ))
        };
    }
    Err(WebError::forbidden(
        "request refused: it names no Origin or Referer, so it cannot be told from a cross-site one",
    ))
}

/// Whether `a` and `b` are equal, comparing every byte whatever it finds.
fn same(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .bytes()
        .zip(b.bytes())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A form that carries the session's CSRF token beside its own fields.
#[derive(Debug, serde::Deserialize)]
struct WithCsrf<T> {
    #[serde(default)]
    csrf: String,
    #[serde(flatten)]
    form: T,
}

/// A checked POST from a logged-in browser: its session, who, the form.
async fn checked<T>(
    req: Request,
    api: &Api,
    role: Option<Role>,
) -> Result<(String, Session, T), Response>
where
    T: serde::de::DeserializeOwned + Send,
{
    let (parts, body) = req.into_parts();
    let Some((id, session, _)) = session_of(&parts.headers, api) else {
        return Err(WebError::new(
            StatusCode::UNAUTHORIZED,
            "not logged in (or the session ended): log in again at /ui/login",
        )
        .into_response());
    };
    same_origin(&parts.headers).map_err(IntoResponse::into_response)?;
    if let Some(role) = role
        && session.caller.role != role
    {
        return Err(WebError::forbidden(format!(
            "`{}` has the {} role, which only reads; this action needs an operator token",
            session.caller.name,
            session.caller.role.as_str()
        ))
        .into_response());
    }
    let Form(WithCsrf { csrf, form }) =
        Form::<WithCsrf<T>>::from_request(Request::from_parts(parts, body), api)
            .await
            .map_err(|e| WebError::bad_request(e.body_text()).into_response())?;
    if !same(&csrf, &session.csrf) {
        return Err(WebError::forbidden(
            "the form's CSRF token is not this session's: reload the page and try again",
        )
        .into_response());
    }
    Ok((id, session, form))
}

/// An operator's action: a POST that passed every check above.
#[derive(Debug)]
pub struct Action<T> {
    /// The session's id (for the flash message).
    pub id: String,
    /// Who acts (the audit trail's actor is the token's name).
    pub caller: Caller,
    /// The session's CSRF token, for the forms of a page the action
    /// answers with (a confirmation).
    pub csrf: String,
    /// The form's fields.
    pub form: T,
}

impl<T> FromRequest<Api> for Action<T>
where
    T: serde::de::DeserializeOwned + Send,
{
    type Rejection = Response;

    async fn from_request(req: Request, api: &Api) -> Result<Action<T>, Response> {
        let (id, session, form) = checked(req, api, Some(Role::Operator)).await?;
        Ok(Action {
            id,
            caller: session.caller,
            csrf: session.csrf,
            form,
        })
    }
}

/// A logged-in browser's POST that any role may send (log out): the same
/// checks as [`Action`] but the role.
#[derive(Debug)]
pub struct AnyRole {
    /// The session's id.
    pub id: String,
}

impl FromRequest<Api> for AnyRole {
    type Rejection = Response;

    async fn from_request(req: Request, api: &Api) -> Result<AnyRole, Response> {
        let (id, _, _) =
            checked::<std::collections::BTreeMap<String, String>>(req, api, None).await?;
        Ok(AnyRole { id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(axum::http::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_wants_origin_or_referer_to_name_the_host() {
        let host = (HOST, "127.0.0.1:9470");
        assert!(same_origin(&headers(&[host.clone(), (ORIGIN, "http://127.0.0.1:9470")])).is_ok());
        assert!(
            same_origin(&headers(&[
                host.clone(),
                (ORIGIN, "https://127.0.0.1:9470")
            ]))
            .is_ok()
        );
        assert!(same_origin(&headers(&[host.clone(), (ORIGIN, "http://evil.example")])).is_err());
        assert!(same_origin(&headers(&[host.clone(), (ORIGIN, "null")])).is_err());
        assert!(
            same_origin(&headers(&[
                host.clone(),
                (ORIGIN, "http://127.0.0.1:9470.evil.example")
            ]))
            .is_err()
        );
        assert!(
            same_origin(&headers(&[
                host.clone(),
                (REFERER, "http://127.0.0.1:9470/ui/queues/q")
            ]))
            .is_ok()
        );
        assert!(
            same_origin(&headers(&[
                host.clone(),
                (REFERER, "http://127.0.0.1:9470.evil/ui")
            ]))
            .is_err()
        );
        assert!(same_origin(&headers(&[host])).is_err());
        assert!(same_origin(&headers(&[(ORIGIN, "http://127.0.0.1:9470")])).is_err());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
        assert!(!same("", "a"));
    }
}
