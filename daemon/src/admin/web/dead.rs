//! A queue's dead letters: those matching the filters of `ward dlq list`
//! counted by job type and code ([`dead::grouped`], each group linked to
//! its list), the newest ones (the API's [`dead::letters`]), and for
//! operators bulk
//! requeue or discard by filter in two steps: a dry run shows how many
//! match (and a sample), then a confirmation with a required note acts on
//! them ([`dead::bulk_with`], as `POST /v1/queues/{queue}/dead/requeue|discard`
//! call it). Single dead letters are acted on from their job's page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};

use super::guard::{Action, Viewer};
use super::{Page, WebError, done, html, seg, ts};
use crate::admin::dead::{self, BulkBody, ListQuery};
use crate::admin::{Api, Caller};
use crate::control::dead::Report;
use crate::dlq::{DeadLetter, Group, Groups, Op};

/// The filters of the page and of a bulk action, as the forms send them
/// (empty: not filtered).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filters {
    #[serde(default)]
    job: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    since: String,
}

fn some(s: &str) -> Option<String> {
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

impl Filters {
    fn is_empty(&self) -> bool {
        [&self.job, &self.reason, &self.code, &self.since]
            .iter()
            .all(|s| s.trim().is_empty())
    }

    fn body(&self, dry_run: bool, note: &str) -> BulkBody {
        BulkBody {
            job: some(&self.job),
            reason: some(&self.reason),
            code: some(&self.code),
            since: some(&self.since),
            dry_run,
            note: note.to_string(),
            ..BulkBody::default()
        }
    }
}

#[derive(Template)]
#[template(path = "dead.html")]
struct DeadPage {
    page: Page,
    queue: String,
    link: String,
    filters: Filters,
    /// The dead letters matching, counted by job type and code.
    groups: Groups,
    letters: Vec<DeadLetter>,
}

/// The dead-letter list of `queue` filtered to group `g`, keeping the
/// reason and age filters of `f` (a group with no code lists its job
/// type's every code: no filter takes "no code").
#[must_use]
pub fn group_link(queue: &str, f: &Filters, g: &Group) -> String {
    let mut to = format!("/ui/queues/{}/dead?job={}", seg(queue), seg(&g.job));
    let pairs = [
        ("code", g.code.as_deref().unwrap_or("")),
        ("reason", f.reason.trim()),
        ("since", f.since.trim()),
    ];
    for (k, v) in pairs {
        if !v.is_empty() {
            to.push_str(&format!("&{k}={}", seg(v)));
        }
    }
    to
}

impl DeadPage {
    fn group_link(&self, g: &Group) -> String {
        group_link(&self.queue, &self.filters, g)
    }
    fn at(&self, ms: &u64) -> String {
        ts(&Some(*ms))
    }
    fn seg(&self, s: &str) -> String {
        seg(s)
    }
    fn payload(&self, d: &DeadLetter) -> String {
        let mut p = d
            .payload
            .clone()
            .or_else(|| d.payload_hex.as_ref().map(|h| format!("hex {h}")))
            .unwrap_or_default();
        crate::cut::truncate(&mut p, 120);
        p
    }
}

/// `GET /ui/queues/{queue}/dead?job=&reason=&code=&since=`
pub(super) async fn page(
    v: Viewer,
    State(api): State<Api>,
    Path(queue): Path<String>,
    Query(filters): Query<Filters>,
) -> Result<Response, WebError> {
    let query = ListQuery {
        job: some(&filters.job),
        reason: some(&filters.reason),
        code: some(&filters.code),
        since: some(&filters.since),
        limit: Some(200),
    };
    let groups = dead::grouped(&api, &queue, &query).await?;
    let letters = dead::letters(&api, &v.session.caller, &queue, query).await?;
    Ok(html(&DeadPage {
        page: Page::new(&v, format!("Dead letters of {queue}")),
        link: seg(&queue),
        queue,
        filters,
        groups,
        letters,
    }))
}

/// The bulk form: the filters, what to do, and on the second step the
/// note and the confirmation.
#[derive(Debug, serde::Deserialize)]
pub(super) struct BulkForm {
    #[serde(flatten)]
    filters: Filters,
    /// `requeue` or `discard`.
    #[serde(default)]
    op: String,
    #[serde(default)]
    note: String,
    /// `yes` on the confirmation's submit; absent on the first step.
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    page: Page,
    queue: String,
    link: String,
    filters: Filters,
    op: &'static str,
    verb: &'static str,
    dry: Report,
}

/// `POST /ui/queues/{queue}/dead/bulk`: without `confirm`, a dry run and
/// the confirmation page; with `confirm=yes` and a note, the action.
pub(super) async fn bulk(
    State(api): State<Api>,
    Path(queue): Path<String>,
    a: Action<BulkForm>,
) -> Response {
    let back = format!("/ui/queues/{}/dead", seg(&queue));
    let op = match a.form.op.as_str() {
        "requeue" => Op::Requeue,
        "discard" => Op::Discard,
        other => {
            return WebError::bad_request(format!("`{other}` is neither requeue nor discard"))
                .into_response();
        }
    };
    if a.form.filters.is_empty() {
        return done(
            &api,
            &a.id,
            &back,
            Err(WebError::bad_request(
                "name at least one filter (job type, reason, code, since) for a bulk action",
            )),
        );
    }
    if a.form.confirm != "yes" {
        return confirm(&api, &a, &queue, op).await;
    }
    let note = a.form.note.trim();
    if note.is_empty() {
        return done(
            &api,
            &a.id,
            &back,
            Err(WebError::bad_request(format!(
                "a note is required: say why they are {}",
                op.done()
            ))),
        );
    }
    let outcome = dead::bulk_with(
        &api,
        &a.caller,
        &queue,
        op,
        a.form.filters.body(false, note),
    )
    .await
    .map(|r| {
        format!(
            "{} {} of {} matching dead letter(s){}.",
            capitalised(op.done()),
            r.acted,
            r.matched,
            if r.interrupted {
                " (interrupted: run it again to go on)"
            } else {
                ""
            }
        )
    })
    .map_err(WebError::from);
    done(&api, &a.id, &back, outcome)
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

async fn confirm(api: &Api, a: &Action<BulkForm>, queue: &str, op: Op) -> Response {
    let caller: &Caller = &a.caller;
    match dead::bulk_with(api, caller, queue, op, a.form.filters.body(true, "")).await {
        Ok(dry) => {
            let page = Page {
                title: format!("Confirm: {} dead letters of {queue}", op.verb()),
                user: caller.name.clone(),
                role: caller.role.as_str(),
                operator: true,
                csrf: a.csrf.clone(),
                flash: None,
            };
            html(&ConfirmPage {
                page,
                link: seg(queue),
                queue: queue.to_string(),
                filters: a.form.filters.clone(),
                op: op.verb(),
                verb: op.verb(),
                dry,
            })
        }
        Err(e) => WebError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_links_to_its_list_keeping_the_reason_and_age() {
        let g = |code: Option<&str>| Group {
            job: "send mail".into(),
            code: code.map(str::to_string),
            count: 2,
            newest_ms: 0,
        };
        let f = Filters {
            reason: "budget".into(),
            since: "1h".into(),
            code: "other".into(),
            ..Filters::default()
        };
        assert_eq!(
            group_link("q/1", &f, &g(Some("http-503"))),
            "/ui/queues/q%2F1/dead?job=send%20mail&code=http-503&reason=budget&since=1h"
        );
        assert_eq!(
            group_link("q", &Filters::default(), &g(None)),
            "/ui/queues/q/dead?job=send%20mail"
        );
    }
}
