//! Observability: Prometheus metrics, `/healthz` and `/readyz`, structured
//! logs with per-attempt spans, and grouped alerts to webhooks.
//!
//! # Layout
//!
//! - [`config`]: `[metrics]`, `[log]`, `[alerts]` (raw → validated).
//! - [`metrics`]: every metric name ([`METRICS`]), buckets, the recorder.
//! - [`events`]: one struct per internal event; `emit()` counts and logs.
//! - [`logging`]: the log filter, the flat JSON format, the attempt span.
//! - [`health`]: readiness, the Redis PING loop, the queue sampler.
//! - [`server`]: the HTTP listener for `/metrics`, `/healthz`, `/readyz`.
//! - [`alerts`]: grouping and webhook delivery.
//! - [`secrets`]: `secret:NAME` values and redaction.
//! - [`traces`]: OpenTelemetry, a span per attempt (off unless configured).
//!
//! # How the daemon uses it
//!
//! [`start`] runs first in [`crate::worker::run`] (so `/healthz` answers
//! while plugins compile and Redis is awaited). The worker then calls, one
//! line per event: [`Obs::plugins_loaded`], [`Obs::sampler`] per queue,
//! the attempt span ([`logging::AttemptIdent`]) around each attempt, [`events::InFlight`] and
//! [`events::AttemptFinished`] in the attempt, [`recorded`] after each
//! applied batch, [`Obs::stopping`] on shutdown and [`Obs::finish`] last.

pub mod alerts;
pub use crate::config::observability as config;
pub mod events;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod secrets;
pub mod server;
pub mod traces;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;

pub use self::metrics::METRICS;
use crate::config::Config;
use crate::store::Queue;
use crate::transition::{Completion, Transition};

/// The running observability pieces of one daemon.
#[derive(Debug)]
pub struct Obs {
    readiness: Arc<health::Readiness>,
    sample_interval: std::time::Duration,
    /// Where the endpoint actually listens (port 0 resolved).
    pub listening: Option<std::net::SocketAddr>,
    server: Option<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    pinger: tokio::task::JoinHandle<()>,
    alerts: alerts::AlertTask,
    /// Each queue's `max_wait` and `stall_after`, judged per sample.
    watch: HashMap<String, alerts::WatchRule>,
}

/// Starts the metrics recorder, the HTTP endpoint, the Redis PING loop and
/// the alert task. Must run inside the tokio runtime.
///
/// # Errors
/// The listen address is taken or not allowed; a webhook's secret is missing.
pub fn start(config: &Config) -> anyhow::Result<Obs> {
    let obs = &config.obs;
    let known: HashMap<String, HashSet<String>> = config
        .queues
        .iter()
        .map(|q| (q.name.clone(), q.jobs.keys().cloned().collect()))
        .collect();
    self::metrics::set_known_jobs(known.clone());
    let readiness = Arc::new(health::Readiness::new(
        config.queues.iter().map(|q| q.name.as_str()),
    ));

    let alerts = alerts::start(&obs.alerts)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.path.display()))?;
    traces::start(obs.tracing.as_ref())
        .map_err(|e| anyhow::anyhow!("{}: [tracing]: {e}", config.path.display()))?;

    let (server, listening) = match obs.metrics.listen {
        None => {
            tracing::info!("metrics endpoint turned off ([metrics] enabled = false)");
            (None, None)
        }
        Some(addr) => {
            let listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .with_context(|| {
                    format!(
                        "cannot listen on {addr} for metrics and health ([metrics] listen in {}); is another ward running? pick another port or set enabled = false",
                        config.path.display()
                    )
                })?;
            let local = listener.local_addr().unwrap_or(addr);
            let handle = match self::metrics::install() {
                Ok(h) => h,
                Err(e) => anyhow::bail!("cannot install the metrics recorder: {e}"),
            };
            self::metrics::preregister(&known);
            for q in &config.queues {
                ::metrics::gauge!(self::metrics::CAPACITY, "queue" => q.name.clone())
                    .set(f64::from(q.concurrency));
            }
            tracing::info!(listen = %local, "metrics, /healthz and /readyz listening on http://{local}");
            (
                Some(tokio::spawn(server::serve(
                    listener,
                    handle.clone(),
                    readiness.clone(),
                ))),
                Some(local),
            )
        }
    };
    let (stop, stop_rx) = watch::channel(false);
    let pinger = tokio::spawn(health::ping_loop(
        config.redis_url.clone(),
        readiness.clone(),
        stop_rx,
    ));
    Ok(Obs {
        readiness,
        sample_interval: obs.metrics.sample_interval,
        listening,
        server,
        stop,
        pinger,
        alerts,
        watch: config
            .queues
            .iter()
            .map(|q| {
                let rule = alerts::WatchRule {
                    max_wait: q.max_wait,
                    stall_after: q.stall_after,
                };
                (q.name.clone(), rule)
            })
            .collect(),
    })
}

impl Obs {
    /// Every plugin is compiled (a readiness check).
    pub fn plugins_loaded(&self) {
        self.readiness.set_plugins_loaded();
    }

    /// The loop sampling `queue`'s depth and lag (and judging its
    /// `queue_wait` and `stalled` alerts), to spawn next to the queue's
    /// other loops; it ends when `stop` turns true. From now on the
    /// queue's fleet-wide alerts are claimed through `queue`'s connection.
    pub fn sampler(
        &self,
        queue: Queue,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + use<> {
        alerts::register_queue(queue.clone());
        let rule = self
            .watch
            .get(&queue.keys.queue)
            .copied()
            .unwrap_or_default();
        health::sample_loop(
            queue,
            self.sample_interval,
            rule,
            self.readiness.clone(),
            stop,
        )
    }

    /// The daemon is shutting down: `/readyz` answers 503 from now on.
    pub fn stopping(&self) {
        self.readiness.set_stopping();
    }

    /// Sends alerts still gathering, then stops the endpoint and the loops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        self.alerts.finish().await;
        traces::finish().await;
        let _ = self.pinger.await;
        if let Some(server) = self.server {
            server.abort();
        }
    }
}

/// A batch of completions is durable: count those that took effect (`took`,
/// per completion; another daemon recorded the others) and raise an alert
/// for each dead letter among them.
pub fn recorded(queue: &str, batch: &[Completion], took: &[bool]) {
    events::CompletionsApplied { queue, batch, took }.emit();
    for (i, c) in batch.iter().enumerate() {
        if !took.get(i).copied().unwrap_or(true) {
            continue;
        }
        match *c.transition() {
            Transition::DeadLetter(reason) => {
                let job = metrics::job_label(queue, c.job());
                alerts::raise(alerts::AlertEvent::dead_letter(queue, &job, c, reason));
            }
            Transition::Retry { .. } => {
                let job = metrics::job_label(queue, c.job());
                alerts::raise(alerts::AlertEvent::retry(queue, &job, c));
            }
            _ => {}
        }
    }
}

/// The completions of `batch` at the positions in `unrecordable` were
/// dead-lettered as `unrecordable` by the APPLY script, each with Redis'
/// words, instead of recorded as they asked: counted and alerted as the
/// dead letters they are, so a job Redis could not record never ends
/// unseen.
pub fn unrecordable(queue: &str, batch: &[Completion], unrecordable: &[(usize, String)]) {
    for (i, why) in unrecordable {
        let Some(c) = batch.get(*i) else { continue };
        events::Unrecordable {
            queue,
            completion: c,
        }
        .emit();
        let job = metrics::job_label(queue, c.job());
        alerts::raise(alerts::AlertEvent::unrecordable(queue, &job, c, why));
    }
}

/// `n` deliveries a failed read left leased to this daemon were taken back
/// to run at once (see `worker/reader/orphans.rs`).
pub fn deliveries_taken_back(queue: &str, n: usize) {
    ::metrics::counter!(metrics::DELIVERIES_TAKEN_BACK_TOTAL, "queue" => queue.to_string())
        .increment(u64::try_from(n).unwrap_or(u64::MAX));
}
