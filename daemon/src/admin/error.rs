//! The API's errors: a status and `{"error": "..."}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::{self, QueueError};

/// An error answer: its status and the message of its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong and, where it helps, what would be right.
    pub message: String,
    /// For 429: how long until the caller may try again (`Retry-After`).
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// 400: the request is not one the endpoint takes.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no token, or one the API does not know.
    #[must_use]
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: the token's role may not do this.
    #[must_use]
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404: no such thing.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the thing is not in a state the action applies to.
    #[must_use]
    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// 429: the caller's address failed to authenticate too often; it may
    /// try again after `wait`.
    #[must_use]
    pub fn too_many_requests(message: impl Into<String>, wait: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(wait),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// An error with `status`.
    #[must_use]
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> ApiError {
        // Redis away is the service being unavailable, not a bad request.
        let status = if store::is_connection_error(&e) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        match e.downcast::<QueueError>() {
            Ok(q) => q.into(),
            Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message }));
        let mut r = (self.status, body).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"ward\""),
            );
        }
        if let Some(wait) = self.retry_after {
            let secs = super::throttle::Refused::retry_after_secs(wait);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

/// The answer to a path no route takes: JSON for the API, a page for a
/// browser on the web screen's paths.
pub(super) async fn not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/ui/") {
        return super::web::WebError::new(StatusCode::NOT_FOUND, "no such page of the web screen")
            .into_response();
    }
    ApiError::not_found("no such endpoint; see docs/admin-api.md (every path starts with /v1/)")
        .into_response()
}

/// The answer to a method a route does not take.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method: reads are GET, actions POST",
    )
}
