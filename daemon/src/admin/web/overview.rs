//! The overview: every queue of the config with its jobs by state, its
//! pauses (who and why), the age of its oldest ready job, its throughput
//! and failure rate over the last hour (charts of the per-minute series,
//! as `GET /v1/queues/{queue}/series` reads it) and the daemons serving
//! it, read as `GET /v1/queues` and `GET /v1/daemons` read them.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::chart::{self, Chart};
use super::guard::Viewer;
use super::{Page, WebError, age, html, seg};
use crate::admin::Api;
use crate::admin::queues::{self, QueueView};
use crate::admin::{daemons, series};

/// One queue's line.
struct Row {
    view: QueueView,
    /// Its name as a path segment.
    link: String,
    /// The age of its oldest ready job.
    oldest: String,
    /// The daemons consuming it: name, in flight, version, whether alive.
    daemons: Vec<String>,
    /// Finished attempts per minute over the last hour.
    throughput: Chart,
    /// The failure rate per minute over the last hour.
    failures: Chart,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    page: Page,
    queues: Vec<Row>,
}

/// `GET /ui/`
pub(super) async fn page(v: Viewer, State(api): State<Api>) -> Result<Response, WebError> {
    let mut rows = Vec::new();
    for cfg in &api.config().queues {
        let q = api.store().queue(&cfg.name);
        let view = queues::view(cfg, &q).await?;
        let daemons = daemons::of(q.clone())
            .await?
            .into_iter()
            .map(|d| {
                let seen = match &d.beat {
                    Some(b) => format!(
                        "v{}, seen {} ago",
                        b.version,
                        age(&Some(crate::clock::now_ms().saturating_sub(b.last_seen_ms)))
                    ),
                    None => "no heartbeat: stopped".to_string(),
                };
                format!(
                    "{} ({} in flight, {seen})",
                    d.consumer.name, d.consumer.pending
                )
            })
            .collect();
        let minutes: Vec<_> = series::last(&q, series::HOUR)
            .await?
            .iter()
            .map(|m| (m.minute, m.total()))
            .collect();
        rows.push(Row {
            throughput: chart::throughput(&minutes),
            failures: chart::failures(&minutes),
            link: seg(&view.queue),
            oldest: age(&view.oldest_ready_ms),
            view,
            daemons,
        });
    }
    Ok(html(&Overview {
        page: Page::new(&v, "Overview"),
        queues: rows,
    }))
}
