//! The daemons: every daemon consuming any queue of the config, one line
//! each (host, version, jobs in flight, last seen, the queues it serves),
//! read as `GET /v1/daemons` reads them ([`daemons::of`] per queue).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::guard::Viewer;
use super::{Page, WebError, age, html, seg, ts};
use crate::admin::Api;
use crate::admin::daemons::{self, DaemonView};

/// One daemon run, over every queue it consumes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Row {
    /// Its consumer name (`<host>-<pid>-<random>`).
    pub name: String,
    /// The host and process id its name carries.
    pub host: String,
    /// See `host`.
    pub pid: String,
    /// The version its heartbeat last gave (`-` when it stopped beating).
    pub version: String,
    /// Deliveries it holds, over every queue.
    pub in_flight: u64,
    /// How long ago it last beat (`-` when it stopped beating).
    pub seen: String,
    /// When it started.
    pub started: String,
    /// Whether its heartbeat is live on some queue.
    pub alive: bool,
    /// The queues it consumes, each with its name as a path segment.
    pub queues: Vec<(String, String)>,
}

/// The host and process id of a consumer name `<host>-<pid>-<random>`
/// (the host may hold dashes); the whole name and `-` for another shape.
#[must_use]
pub fn host_and_pid(name: &str) -> (String, String) {
    let mut parts = name.rsplitn(3, '-');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(pid), Some(host))
            if !host.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (host.to_string(), pid.to_string())
        }
        _ => (name.to_string(), "-".to_string()),
    }
}

/// The per-queue views of the daemons folded into one row per daemon,
/// sorted by name; `now_ms` to say how long ago each was seen.
#[must_use]
pub(super) fn rows(views: Vec<DaemonView>, now_ms: u64) -> Vec<Row> {
    let mut by_name: BTreeMap<String, Row> = BTreeMap::new();
    for v in views {
        let row = by_name.entry(v.consumer.name.clone()).or_insert_with(|| {
            let (host, pid) = host_and_pid(&v.consumer.name);
            Row {
                name: v.consumer.name.clone(),
                host,
                pid,
                version: "-".into(),
                seen: "-".into(),
                started: "-".into(),
                ..Row::default()
            }
        });
        row.in_flight += v.consumer.pending;
        if let Some(b) = &v.beat {
            row.alive = true;
            row.version.clone_from(&b.version);
            row.seen = format!("{} ago", age(&Some(now_ms.saturating_sub(b.last_seen_ms))));
            row.started = ts(&Some(b.started_ms));
        }
        row.queues.push((seg(&v.queue), v.queue));
    }
    by_name.into_values().collect()
}

#[derive(Template)]
#[template(path = "daemons.html")]
struct DaemonsPage {
    page: Page,
    daemons: Vec<Row>,
}

/// `GET /ui/daemons`
pub(super) async fn page(v: Viewer, State(api): State<Api>) -> Result<Response, WebError> {
    let mut views = Vec::new();
    for cfg in &api.config().queues {
        views.extend(daemons::of(api.store().queue(&cfg.name)).await?);
    }
    Ok(html(&DaemonsPage {
        page: Page::new(&v, "Daemons"),
        daemons: rows(views, crate::clock::now_ms()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ConsumerInfo, DaemonBeat};

    #[test]
    fn a_consumer_name_gives_its_host_and_pid() {
        let hp = |n: &str| host_and_pid(n);
        assert_eq!(hp("vm-17-a-4242-0f3c"), ("vm-17-a".into(), "4242".into()));
        assert_eq!(hp("test-consumer"), ("test-consumer".into(), "-".into()));
        assert_eq!(hp("h-x1-ab"), ("h-x1-ab".into(), "-".into()));
    }

    fn view(queue: &str, name: &str, pending: u64, beat: Option<u64>) -> DaemonView {
        DaemonView {
            queue: queue.into(),
            consumer: ConsumerInfo {
                name: name.into(),
                pending,
                idle_ms: 0,
                inactive_ms: None,
            },
            alive: beat.is_some(),
            beat: beat.map(|seen| DaemonBeat {
                version: "1.2.3".into(),
                last_seen_ms: seen,
                started_ms: 0,
            }),
        }
    }

    #[test]
    fn one_row_per_daemon_over_every_queue_it_serves() {
        let rows = rows(
            vec![
                view("mail", "b-2-0001", 1, Some(9_000)),
                view("q", "a-1-0001", 2, None),
                view("q", "b-2-0001", 3, Some(9_000)),
            ],
            10_000,
        );
        assert_eq!(rows.len(), 2);
        let (a, b) = (&rows[0], &rows[1]);
        assert_eq!(
            (a.name.as_str(), a.alive, a.version.as_str()),
            ("a-1-0001", false, "-")
        );
        assert_eq!(
            (b.host.as_str(), b.pid.as_str(), b.in_flight),
            ("b", "2", 4)
        );
        assert_eq!(b.seen, "1s ago");
        let served: Vec<&str> = b.queues.iter().map(|(_, q)| q.as_str()).collect();
        assert_eq!(served, ["mail", "q"]);
    }
}
