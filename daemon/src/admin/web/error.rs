//! The screen's errors: a status and a small HTML page saying what went
//! wrong (escaped like every other page).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::admin::ApiError;

/// An error page: its status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong.
    pub message: String,
}

impl WebError {
    /// An error with `status`.
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError {
            status,
            message: message.into(),
        }
    }

    /// 403: refused (role, origin, CSRF token).
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> WebError {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 400: a form the screen did not send.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> WebError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> WebError {
        WebError::new(e.status, e.message)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            status: self.status.as_u16(),
            reason: self.status.canonical_reason().unwrap_or("error"),
            message: &self.message,
        };
        let mut r = super::html(&page);
        *r.status_mut() = self.status;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_page_escapes_its_message_and_forbids_scripts() {
        let r = WebError::forbidden("<script>alert(1)</script> & \"more\"").into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let csp = r.headers()[axum::http::header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        let page = ErrorPage {
            status: 403,
            reason: "Forbidden",
            message: "<script>alert(1)</script> & \"more\"",
        }
        .render()
        .unwrap();
        assert!(!page.contains("<script>"), "{page}");
        assert!(
            page.contains("&#60;script&#62;") || page.contains("&lt;script&gt;"),
            "{page}"
        );
    }
}
