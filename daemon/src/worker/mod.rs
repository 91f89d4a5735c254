//! The daemon proper: per queue, a reader that leases batches sized to free
//! slots, one task per attempt, and a completer that applies finished
//! attempts to Redis in batches; beside them, the background services.
//!
//! ```text
//! reader ──lease_batch(free slots)──► task per delivery ──Completion──► completer ──apply(batch)──► Redis
//!    ▲                                      │ (holds one slot)
//!    └──────────── slot freed ◄─────────────┘
//! ```
//!
//! Nothing is acknowledged before its attempt has ended and its outcome is
//! recorded, so a daemon that dies at any point leaves its deliveries
//! pending in the consumer group rather than lost.
//!
//! # Layout
//!
//! - this file: [`run`] and [`check`], and the wiring of one queue's tasks.
//! - `plugins`: the job types of a config, compiled.
//! - `reader`: one queue's consumer, the lease loop and its attempts' tasks.
//! - `triage`: what each leased delivery needs (an attempt, or an outcome
//!   known without running), and the builders of those completions.
//! - `attempt`: one attempt, from the plugin to its completion.
//! - `progress`: what running 0.2.0 plugins report of their progress,
//!   written to Redis at most four times a second per job.
//! - `cancels`: the cancel requests a daemon knows of and the attempts
//!   they interrupt.
//! - `completer`: finished attempts applied to Redis in batches.
//! - `batch_alerts`: after a job batch's member died, its failure ratio
//!   checked against `[alerts] batch_failure_ratio`.
//! - `services`: the background loops, one per file, all of one shape.
//! - `shutdown`: the one shutdown signal every loop watches.
//! - `reload`: live reload on SIGHUP: the new config checked whole, then
//!   each queue's job types swapped; the pid file `ward reload` reads.
//! - `systemd`: `Type=notify`: ready, stopping, status, the watchdog fed
//!   by the readers' loops.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::backoff::Backoff;
use crate::config::{Config, QueueConfig};
use crate::obs::Obs;
use crate::store::{self, Keys, Queue};

use self::plugins::{SharedJobs, load_plugins, runtime_for};
use self::reader::{BLOCK, Consumer};
pub use self::reload::{ReloadHandle, ReloadOutcome, ReloadRequests, reload_channel};
use self::services::Service;
use self::services::batch_retention::BatchRetention;
use self::services::breakers::BreakerRefresh;
use self::services::consumers::ConsumerSweep;
use self::services::control::Control;
use self::services::functions::FunctionCheck;
use self::services::pause::PauseWatch;
use self::services::promote::Promote;
use self::services::retention::Retention;
use self::services::upstreams::UpstreamRefresh;
use self::shutdown::Shutdown;

mod admit;
mod attempt;
mod batch_alerts;
mod cancels;
mod completer;
mod groups;
mod held;
mod plugins;
mod progress;
mod reader;
mod reload;
mod services;
mod shutdown;
mod systemd;
mod triage;

/// After Redis unreachable, or a group not created: how long to wait before trying again.
const CONNECT_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// The deliveries this daemon holds for one queue: leased and not yet
/// recorded. The heartbeat renews exactly these.
type InFlight = Arc<held::Held>;

/// Compiles every plugin of `config` and reports problems, without Redis.
///
/// # Errors
/// The plugins that failed to load, each with its file and reason.
pub fn check(config: &Config) -> anyhow::Result<Vec<(String, String, PathBuf, String)>> {
    let runtime = runtime_for(config, 1)?;
    let loaded = load_plugins(&runtime, config)?;
    let mut out = Vec::new();
    for q in &config.queues {
        for j in q.jobs.values() {
            if let Some(t) = loaded.get(&q.name).and_then(|m| m.get(&j.name)) {
                out.push((
                    q.name.clone(),
                    j.name.clone(),
                    j.plugin.clone(),
                    t.plugin.digest().to_string(),
                ));
            }
        }
    }
    Ok(out)
}

/// Runs the daemon until `shutdown` resolves, then stops reading, lets the
/// attempts in flight finish and records their outcomes.
///
/// # Errors
/// Plugins that do not load; Redis refusing to create a consumer group.
/// Redis being unreachable is not an error: the daemon says so and retries.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    run_with(config, shutdown, ReloadRequests::none()).await
}

/// [`run`], reloading also on each request of `reloads` (the admin API's
/// `POST /v1/reload`), answered with what the reload did.
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut reloads: ReloadRequests,
) -> anyhow::Result<()> {
    let mut hangups = reload::Hangups::listen();
    let _pid_file = reload::PidFile::write(config.pid_file.as_deref())?;
    if let Some(ca) = &config.redis_ca {
        let pem = std::fs::read(ca)
            .with_context(|| format!("[redis] ca_file {}: cannot read it", ca.display()))?;
        store::trust_ca(pem);
    }
    let obs = crate::obs::start(&config)?;
    let runtime = runtime_for(&config, plugins::slots(&config))?;
    let mut job_types = load_plugins(&runtime, &config)?;
    obs.plugins_loaded();

    let (stop_tx, stop) = Shutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let url = store::redacted_url(&config.redis_url);
    let con = tokio::select! {
        con = connect_with_backoff(&config.redis_url, &url) => con,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(redis = %url, "connected to Redis");

    let consumer = consumer_name();
    if let Some(q) = config.queues.first() {
        let q = Queue::new(Keys::new(&q.name), con.clone());
        if let Ok(m) = q.memory().await {
            for w in m.warnings() {
                tracing::warn!("{w}");
            }
        }
        tokio::select! {
            loaded = functions_loaded(&q) => loaded?,
            () = &mut shutdown => return Ok(()),
        }
    }
    let systemd = systemd::Systemd::from_env();
    let daemon = Daemon {
        config: &config,
        url: &url,
        consumer: &consumer,
        obs: &obs,
        stop: &stop,
        systemd: &systemd,
    };
    let mut queues = JoinSet::new();
    let mut shared = HashMap::new();
    for q in &config.queues {
        let queue = Queue::new(Keys::new(&q.name), con.clone()).with_succeeded_ttl(q.succeeded_ttl);
        ensure_group(&queue, &mut shutdown).await?;
        let jobs: SharedJobs = Arc::new(arc_swap::ArcSwap::from_pointee(
            job_types.remove(&q.name).unwrap_or_default(),
        ));
        shared.insert(q.name.clone(), jobs.clone());
        daemon.start_queue(&mut queues, q, queue, jobs).await;
    }
    let schedules = reload::Schedules::start(con.clone(), &config.schedules);
    let mut reloader = reload::Reloader::new(
        config.clone(),
        shared,
        schedules,
        systemd.clone(),
        con.clone(),
    );
    tracing::info!(threads = config.worker_threads(), "ward is running");
    systemd.ready();
    queues.spawn(systemd.clone().watch(stop.clone()));

    loop {
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!("shutting down: no new leases; waiting for attempts in flight");
                systemd.stopping();
                obs.stopping();
                stop_tx.pull();
                reloader.finish().await;
                break;
            }
            Some(res) = queues.join_next() => {
                // A queue's loop only ends on shutdown; ending early is a bug worth failing loudly for.
                res.context("a queue worker panicked")?;
                anyhow::bail!("a queue worker stopped unexpectedly");
            }
            () = hangups.recv() => {
                reloader.reload(&runtime, "SIGHUP").await;
            }
            asked = reloads.recv() => {
                let outcome = reloader.reload(&runtime, "admin API").await;
                // The asker may have given up waiting; the reload stands.
                let _ = asked.send(outcome);
            }
        }
    }
    while let Some(res) = queues.join_next().await {
        res.context("a queue worker panicked")?;
    }
    drop(runtime);
    obs.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// What every queue's tasks share, set up once by [`run`].
struct Daemon<'a> {
    /// The whole config (the Redis URL, the breaker policy).
    config: &'a Config,
    /// The Redis URL as logs may show it.
    url: &'a str,
    /// This daemon's consumer name in every group.
    consumer: &'a str,
    /// The metrics and health endpoints.
    obs: &'a Obs,
    /// The daemon's shutdown signal.
    stop: &'a Shutdown,
    /// systemd's notifications; each queue's reader beats for its watchdog.
    systemd: &'a Arc<systemd::Systemd>,
}

impl Daemon<'_> {
    /// Starts queue `q`'s consumer and background services on `tasks`.
    async fn start_queue(
        &self,
        tasks: &mut JoinSet<()>,
        q: &QueueConfig,
        queue: Queue,
        jobs: SharedJobs,
    ) {
        let types = jobs.load_full();
        tracing::info!(
            queue = %q.name,
            concurrency = q.concurrency,
            jobs = ?types.keys().collect::<Vec<_>>(),
            consumer = %self.consumer,
            "consuming"
        );
        let stop = || self.stop.clone();
        let promote = Promote {
            queue: queue.clone(),
            url: self.config.redis_url.clone(),
        };
        promote.start_in(tasks, stop());
        let functions = FunctionCheck {
            queue: queue.clone(),
        };
        functions.start_in(tasks, stop());
        let dead_written = Arc::new(Notify::new());
        if q.dead.has_retention() {
            let retention = Retention {
                queue: queue.clone(),
                dead: q.dead.clone(),
                dead_written: dead_written.clone(),
            };
            retention.start_in(tasks, stop());
        }
        if let Some(keep) = q.batch_retention {
            let retention = BatchRetention {
                queue: queue.clone(),
                keep,
            };
            retention.start_in(tasks, stop());
        }
        tasks.spawn(self.obs.sampler(queue.clone(), self.stop.watch()));
        let reader_con = connect_with_backoff(&self.config.redis_url, self.url).await;
        let breakers = types.values().any(|jt| !jt.upstreams.is_empty()).then(|| {
            for jt in types.values() {
                for u in &jt.upstreams {
                    crate::obs::events::breaker_state(&q.name, u, false);
                }
            }
            crate::breaker::Breakers::with_tables(
                queue.clone(),
                self.config.breaker,
                &self.config.upstreams,
            )
        });
        if let Some(b) = &breakers {
            let refresh = BreakerRefresh {
                breakers: b.clone(),
                queue: q.name.clone(),
            };
            refresh.start_in(tasks, stop());
        }
        let upstreams = self.upstreams(tasks, q, &queue, &types).await;
        groups::publish(&queue, &types).await;
        let sweep = ConsumerSweep {
            queue: queue.clone(),
            consumer: self.consumer.to_string(),
        };
        sweep.start_in(tasks, stop());
        let cancels = Arc::new(cancels::Cancels::default());
        let control = Control {
            queue: queue.clone(),
            url: self.config.redis_url.clone(),
            cancels: cancels.clone(),
        };
        control.start_in(tasks, stop());
        let (view, pauses) = tokio::sync::watch::channel(initial_pauses(&queue, self.stop).await);
        let watch = PauseWatch {
            queue: queue.clone(),
            view,
            consumer: self.consumer.to_string(),
        };
        watch.start_in(tasks, stop());
        let consumer = Consumer {
            reader: queue.with_connection(reader_con),
            queue,
            cfg: q.clone(),
            jobs,
            consumer: self.consumer.to_string(),
            dead_written,
            breakers,
            cancels,
            pauses,
            upstreams,
            beat: self.systemd.beat_for(&q.name),
        };
        consumer.start_in(tasks, stop());
    }

    /// The flow control of queue `q`'s upstreams, when its job types list
    /// any (with their refresh started on `tasks`); publishes the queue's
    /// `max_backlog` for `ward_enqueue` on the way.
    async fn upstreams(
        &self,
        tasks: &mut JoinSet<()>,
        q: &QueueConfig,
        queue: &Queue,
        jobs: &plugins::JobTypes,
    ) -> Option<Arc<crate::upstream::Upstreams>> {
        if let Err(e) = queue.publish_max_backlog(q.max_backlog).await {
            tracing::error!(queue = %q.name, error = %e, "cannot tell Redis the queue's max_backlog; ward_enqueue keeps the last one it was told");
        }
        let names: Vec<String> = jobs.values().flat_map(|jt| jt.upstreams.clone()).collect();
        if names.is_empty() {
            return None;
        }
        // Every series from the start, so rates and alerts work at once.
        for u in &names {
            crate::obs::events::upstream_state(&q.name, u, None, 0, 0);
            for reason in [
                crate::transition::RATE_LIMITED_CODE,
                crate::transition::UPSTREAM_BUSY_CODE,
            ] {
                crate::obs::events::upstream_deferred(&q.name, u, reason, 0);
            }
        }
        let u =
            crate::upstream::Upstreams::new(queue.clone(), q.lease, &self.config.upstreams, names);
        let refresh = UpstreamRefresh {
            upstreams: u.clone(),
            queue: q.name.clone(),
        };
        refresh.start_in(tasks, self.stop.clone());
        Some(u)
    }
}

/// Makes sure Redis has Ward's function library (`ward_enqueue`, which
/// clients call): loaded only when missing or of another version, so a
/// Redis at its `maxmemory`, which refuses `FUNCTION LOAD`, still lets a
/// daemon start when the library is there. Otherwise it waits, saying what
/// Redis answered, until the load goes through.
///
/// # Errors
/// Redis has no `FUNCTION` command (older than 7).
async fn functions_loaded(q: &Queue) -> anyhow::Result<()> {
    let mut backoff = CONNECT_RETRY;
    loop {
        match q.ensure_functions().await {
            Ok(_) => return Ok(()),
            Err(e) if e.to_string().to_lowercase().contains("unknown command") => {
                anyhow::bail!("Redis has no FUNCTION command ({e}): Ward needs Redis 7 or newer");
            }
            Err(e) => {
                let delay = backoff.next();
                tracing::error!(error = %e, retry_in = ?delay, "cannot load Ward's Redis Functions (ward_enqueue); retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// The queue's pauses, read before its reader starts so that a paused
/// queue or job type is honoured from the first lease; retried while Redis
/// refuses (it answered moments ago), given up only on shutdown.
async fn initial_pauses(queue: &Queue, stop: &Shutdown) -> store::Pauses {
    let mut backoff = CONNECT_RETRY;
    loop {
        match queue.pauses().await {
            Ok(p) => return p,
            Err(_) if stop.is_shutdown() => return store::Pauses::default(),
            Err(e) => {
                let delay = backoff.next();
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?delay, "cannot read the queue's pauses; retrying before consuming");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn connect_with_backoff(url: &str, shown: &str) -> store::Connection {
    let mut backoff = CONNECT_RETRY;
    loop {
        match store::connect(url, BLOCK).await {
            Ok(con) => return con,
            Err(e) => {
                let delay = backoff.next();
                tracing::error!(redis = %shown, error = %e, retry_in = ?delay, "cannot reach Redis; is it running and is [redis] url right?");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn ensure_group(
    queue: &Queue,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    for level in crate::priority::Priority::ALL {
        ensure_group_on(queue, queue.keys.stream(level), shutdown).await?;
    }
    Ok(())
}

/// [`ensure_group`] on one of the queue's streams, named in the error.
async fn ensure_group_on(
    queue: &Queue,
    stream: &str,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let mut backoff = CONNECT_RETRY;
    loop {
        let delay = match queue.ensure_group_on(stream).await {
            Ok(()) => return Ok(()),
            // A Redis at its maxmemory (OOM) may have room again soon.
            Err(e) if store::is_connection_error(&e) || store::is_out_of_memory(&e) => {
                let delay = backoff.next();
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?delay, "cannot create consumer group; retrying");
                delay
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create consumer group `{}` on {stream}",
                        store::GROUP
                    )
                });
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut *shutdown => anyhow::bail!("shut down before Redis was reachable"),
        }
    }
}

fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}
