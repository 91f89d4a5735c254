//! `GET /v1/audit`: the audit trail, oldest first, as `ward audit` reads it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::{Api, ApiError, Caller};
use crate::store::AuditRecord;

/// The most entries one read returns.
const MAX_LIMIT: usize = 10_000;

/// The query of `GET /v1/audit`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// Only since: a duration back from now (`30m`) or an RFC 3339 time.
    since: Option<String>,
    /// At most the newest this many (default 100).
    limit: Option<usize>,
}

/// `GET /v1/audit`
pub(super) async fn list(
    _: Caller,
    State(api): State<Api>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let since = query
        .since
        .as_deref()
        .map(crate::dlq::parse_since)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let limit = query.limit.unwrap_or(100).min(MAX_LIMIT);
    Ok(Json(
        api.store().read_audit(since.unwrap_or(0), limit).await?,
    ))
}
