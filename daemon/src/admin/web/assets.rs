//! The one stylesheet, compiled into the binary (the screen works with no
//! internet and loads nothing from elsewhere).

use axum::http::header;
use axum::response::IntoResponse;

/// The stylesheet's text.
const CSS: &str = include_str!("assets/ward.css");

/// `GET /ui/assets/ward.css`
pub(super) async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        CSS,
    )
}
