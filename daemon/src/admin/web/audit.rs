//! The audit trail: the newest operator actions first, as `ward audit`
//! and `GET /v1/audit` read them ([`crate::store::Store::read_audit`]).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::guard::Viewer;
use super::{Page, WebError, html, ts};
use crate::admin::{Api, ApiError};
use crate::store::AuditRecord;

/// How many entries the page shows.
const SHOWN: usize = 200;

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    page: Page,
    entries: Vec<AuditRecord>,
}

impl AuditPage {
    fn at(&self, ms: &u64) -> String {
        ts(&Some(*ms))
    }
}

/// `GET /ui/audit`
pub(super) async fn page(v: Viewer, State(api): State<Api>) -> Result<Response, WebError> {
    let mut entries = api
        .store()
        .read_audit(0, SHOWN)
        .await
        .map_err(ApiError::from)?;
    entries.reverse();
    Ok(html(&AuditPage {
        page: Page::new(&v, "Audit trail"),
        entries,
    }))
}
