//! `POST /v1/reload`: a live reload of the daemon serving this API (`ward
//! run` with `[admin] listen`), as SIGHUP does, but answered with what it
//! did: applied (and what changed, what needs a restart) or refused (and
//! why). `ward admin` alone has no daemon to reload: 409. One audit entry.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use super::{Api, ApiError, Operator};
use crate::control::audit::{self, Action};
use crate::worker::ReloadOutcome;

/// The body: why (optional, for the audit trail).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReloadBody {
    #[serde(default)]
    note: String,
}

/// `POST /v1/reload`: 200 with the outcome when applied, 422 with it when
/// refused (the running config keeps serving).
pub(super) async fn reload(
    Operator(caller): Operator,
    State(api): State<Api>,
    body: Bytes,
) -> Result<(StatusCode, Json<ReloadOutcome>), ApiError> {
    let b: ReloadBody = super::body(&body, r#"{"note": "new plugin for send"}"#)?;
    let Some(handle) = api.reload_handle() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "this API runs alone (ward admin): there is no daemon in its process to reload; reload each `ward run` (systemctl reload ward, or its own API)",
        ));
    };
    let Some(outcome) = handle.reload().await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon is stopping; nothing was reloaded",
        ));
    };
    audit::record(
        api.store(),
        &caller.actor(),
        Action {
            action: "reload",
            queue: "",
            target: api.config().path.display().to_string(),
            count: u64::from(outcome.applied),
            note: &b.note,
            detail: serde_json::to_value(&outcome).ok(),
        },
    )
    .await?;
    let status = if outcome.applied {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(outcome)))
}
