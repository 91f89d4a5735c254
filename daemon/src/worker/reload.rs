//! Live reload: on SIGHUP (sent by `ward reload`, or systemd's
//! `ExecReload=`) the daemon re-reads its config file and its plugins,
//! checks and compiles all of it before touching anything, then swaps each
//! queue's job types whole. New attempts run on the new job types; attempts
//! in flight hold their own `Arc<JobType>` and finish on the plugin they
//! started with (each attempt's history names the digest that ran).
//!
//! A config or plugin that does not load is refused with the reason (the
//! file and line, as [`Config::load`] reports them) and the running config
//! keeps serving. What the running daemon cannot change in place (the Redis
//! connection, the set of queues and their slots, the engines, the
//! listeners) is named in a `needs a restart` warning and left as it was;
//! the rest is applied. Schedules that changed are restarted.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;

use crate::config::{Config, JobConfig, ScheduleConfig};
use crate::runtime::Runtime;
use crate::store::{self, Keys, Queue};

use super::plugins::{JobTypes, SharedJobs, load_plugins};
use super::services::Service as _;
use super::services::schedules::Schedule;
use super::shutdown::{Shutdown, Trigger};
use super::systemd::Systemd;

/// What a reload did, as the admin API answers `POST /v1/reload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReloadOutcome {
    /// Whether the new config was applied (false: refused, nothing changed).
    pub applied: bool,
    /// What changed, one phrase each (empty when nothing did).
    pub changed: Vec<String>,
    /// What differs but needs a restart, one phrase each (not applied).
    pub needs_restart: Vec<String>,
    /// Why it was refused (the file and line, or the plugin).
    pub error: Option<String>,
}

/// A reload asked for in-process (by the admin API of `ward run`); the
/// answer goes back on the oneshot.
type Request = tokio::sync::oneshot::Sender<ReloadOutcome>;

/// Asks the daemon of [`run_with`](super::run_with) to reload, and waits
/// for what it did. Cloned into the admin API.
#[derive(Debug, Clone)]
pub struct ReloadHandle(tokio::sync::mpsc::Sender<Request>);

/// The daemon's end of [`ReloadHandle`].
#[derive(Debug)]
pub struct ReloadRequests(tokio::sync::mpsc::Receiver<Request>);

/// A connected pair: the handle for whoever asks, the requests for the daemon.
#[must_use]
pub fn reload_channel() -> (ReloadHandle, ReloadRequests) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    (ReloadHandle(tx), ReloadRequests(rx))
}

impl ReloadHandle {
    /// Asks for a reload and waits for its outcome; `None` when the daemon
    /// is gone (stopping).
    pub async fn reload(&self) -> Option<ReloadOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.0.send(tx).await.ok()?;
        rx.await.ok()
    }
}

impl ReloadRequests {
    /// Requests with nobody to send them: never resolves.
    #[must_use]
    pub fn none() -> ReloadRequests {
        reload_channel().1
    }

    /// The next request; pending forever once every handle is gone.
    pub(crate) async fn recv(&mut self) -> Request {
        match self.0.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

/// SIGHUP, as reload requests. Without it (no signal handler could be set
/// up) a hangup is never heard, and the daemon says so once.
pub(crate) struct Hangups {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangups {
    /// Starts listening. Called first thing in [`super::run`]: until then a
    /// SIGHUP would end the process, as it does any program without a handler.
    pub(crate) fn listen() -> Hangups {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let signal = signal(SignalKind::hangup())
                .inspect_err(
                    |e| tracing::warn!(error = %e, "cannot listen for SIGHUP; live reload is off"),
                )
                .ok();
            Hangups { signal }
        }
        #[cfg(not(unix))]
        Hangups {}
    }

    /// Resolves at the next SIGHUP (never, without a handler).
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// `[daemon] pid_file`, written at start so `ward reload` finds the
/// daemon, and removed at the end when it still holds this process's id.
pub(crate) struct PidFile(Option<PathBuf>);

impl PidFile {
    /// Writes this process's id to `path`, when one is configured.
    ///
    /// # Errors
    /// The file cannot be written (its folder missing, or not writable).
    pub(crate) fn write(path: Option<&Path>) -> anyhow::Result<PidFile> {
        if let Some(path) = path {
            std::fs::write(path, format!("{}\n", std::process::id())).with_context(|| {
                format!("[daemon] pid_file {}: cannot write it", path.display())
            })?;
        }
        Ok(PidFile(path.map(Path::to_path_buf)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else { return };
        // Another daemon may have started on the same file since: leave its id.
        let ours = std::fs::read_to_string(path)
            .is_ok_and(|text| text.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The `[[schedule]]` loops, started and stopped as one group, so that a
/// reload that changes any schedule restarts them all (each fire time's
/// idempotency key in Redis keeps a restart from firing a time twice).
pub(crate) struct Schedules {
    /// The shared connection the loops enqueue on.
    con: store::Connection,
    /// Stops the running loops.
    stop: Trigger,
    /// The running loops.
    tasks: JoinSet<()>,
}

impl Schedules {
    /// Starts one loop per schedule.
    pub(crate) fn start(con: store::Connection, schedules: &[ScheduleConfig]) -> Schedules {
        let (stop, rx) = Shutdown::new();
        let mut tasks = JoinSet::new();
        for s in schedules {
            let schedule = Schedule {
                queue: Queue::new(Keys::new(&s.queue), con.clone()),
                schedule: s.clone(),
            };
            schedule.start_in(&mut tasks, rx.clone());
        }
        Schedules { con, stop, tasks }
    }

    /// Stops every loop and waits until each has.
    pub(crate) async fn stop(mut self) {
        self.stop.pull();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Stops the loops and starts `schedules` in their place.
    async fn restart(self, schedules: &[ScheduleConfig]) -> Schedules {
        let con = self.con.clone();
        self.stop().await;
        Schedules::start(con, schedules)
    }
}

/// What a reload swaps, and the configs it compares the new one with.
pub(crate) struct Reloader {
    /// The config the daemon started with: what needs a restart is what
    /// differs from it.
    started: Config,
    /// The config last applied (job types, schedules).
    applied: Config,
    /// Each running queue's job types.
    queues: HashMap<String, SharedJobs>,
    /// The schedule loops (restarted when schedules change).
    schedules: Option<Schedules>,
    /// Told `RELOADING=1`, then `READY=1` again.
    systemd: Arc<Systemd>,
    /// The shared connection: a reload tells `ward_enqueue` the grouped
    /// job types again.
    con: store::Connection,
}

/// A new config, loaded and compiled whole, not yet applied.
struct Prepared {
    /// The new config, less what needs a restart to change.
    config: Config,
    /// Its job types, per queue.
    types: HashMap<String, JobTypes>,
    /// The changes that need a restart.
    restart: Vec<String>,
}

impl Reloader {
    /// A reloader for the daemon started with `config`, serving `queues`.
    pub(crate) fn new(
        config: Config,
        queues: HashMap<String, SharedJobs>,
        schedules: Schedules,
        systemd: Arc<Systemd>,
        con: store::Connection,
    ) -> Reloader {
        Reloader {
            applied: config.clone(),
            started: config,
            queues,
            schedules: Some(schedules),
            systemd,
            con,
        }
    }

    /// Re-reads the config file and the plugins and applies what can be
    /// applied; on any error, keeps the running config and says why.
    /// Compiling blocks this thread (the attempts run on the others).
    pub(crate) async fn reload(&mut self, runtime: &Runtime, by: &str) -> ReloadOutcome {
        tracing::info!(config = %self.started.path.display(), by, "reloading the config");
        self.systemd.reloading();
        let outcome = match tokio::task::block_in_place(|| self.prepare(runtime)) {
            Ok(next) => {
                let needs_restart = next.restart.clone();
                let changed = self.apply(next).await;
                crate::obs::events::config_reload(true);
                ReloadOutcome {
                    applied: true,
                    changed,
                    needs_restart,
                    error: None,
                }
            }
            Err(e) => {
                tracing::error!(
                    config = %self.started.path.display(),
                    "config reload refused; the running config keeps serving: {e:#}"
                );
                crate::obs::events::config_reload(false);
                ReloadOutcome {
                    applied: false,
                    changed: Vec::new(),
                    needs_restart: Vec::new(),
                    error: Some(format!("{e:#}")),
                }
            }
        };
        self.systemd.ready();
        outcome
    }

    /// Stops the schedule loops (at shutdown).
    pub(crate) async fn finish(&mut self) {
        if let Some(s) = self.schedules.take() {
            s.stop().await;
        }
    }

    /// Loads and compiles the new config, touching nothing that runs.
    fn prepare(&self, runtime: &Runtime) -> anyhow::Result<Prepared> {
        let mut config = Config::load(&self.started.path)?;
        let mut restart = needs_restart(&self.started, &config);
        keep_unfit(runtime, &self.applied, &mut config, &mut restart);
        let types = load_plugins(runtime, &config)?;
        Ok(Prepared {
            config,
            types,
            restart,
        })
    }

    /// Swaps each running queue's job types and restarts changed schedules;
    /// says what changed.
    async fn apply(&mut self, mut next: Prepared) -> Vec<String> {
        let mut changes = Vec::new();
        for (queue, shared) in &self.queues {
            // A queue no longer configured keeps serving (it needs a restart).
            let Some(types) = next.types.remove(queue) else {
                continue;
            };
            let old_jobs = self.applied.queues.iter().find(|q| &q.name == queue);
            let new_jobs = next.config.queues.iter().find(|q| &q.name == queue);
            job_changes(
                queue,
                &shared.load(),
                &types,
                old_jobs.map(|q| &q.jobs),
                new_jobs.map(|q| &q.jobs),
                &mut changes,
            );
            let queue = Queue::new(Keys::new(queue), self.con.clone());
            super::groups::publish(&queue, &types).await;
            shared.store(Arc::new(types));
        }
        if format!("{:?}", self.applied.schedules) != format!("{:?}", next.config.schedules) {
            if let Some(s) = self.schedules.take() {
                self.schedules = Some(s.restart(&next.config.schedules).await);
            }
            changes.push("schedules restarted".to_string());
        }
        if !next.restart.is_empty() {
            tracing::warn!(
                "needs a restart: {}; not applied (systemctl restart ward)",
                next.restart.join("; ")
            );
        }
        let changed = if changes.is_empty() {
            "nothing".to_string()
        } else {
            changes.join("; ")
        };
        tracing::info!(changed, "config reloaded");
        self.applied = next.config;
        changes
    }
}

/// What differs between the config the daemon started with and `new` that
/// only a restart can change, one phrase each.
fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |changed: bool, what: &str| {
        if changed {
            out.push(what.to_string());
        }
    };
    differs(
        old.redis_url != new.redis_url,
        "[redis] url, cluster, sentinels, master_name or password",
    );
    differs(old.redis_ca != new.redis_ca, "[redis] ca_file");
    differs(old.threads != new.threads, "[daemon] threads");
    differs(
        old.compile_cache != new.compile_cache,
        "[daemon] compile_cache",
    );
    differs(old.pid_file != new.pid_file, "[daemon] pid_file");
    differs(old.perf_map != new.perf_map, "[daemon] profiler");
    differs(old.slot_pages != new.slot_pages, "[daemon] slot_pages");
    let (om, nm) = (&old.obs.metrics, &new.obs.metrics);
    differs(om.listen != nm.listen, "[metrics] listen");
    differs(
        format!("{:?}", om.sample_interval) != format!("{:?}", nm.sample_interval),
        "[metrics] sample_interval",
    );
    differs(old.obs.log_level != new.obs.log_level, "[log] level");
    // A webhook's CA certificates show as their number in Debug: compared
    // by content too, so a renewed CA in the same file is not missed.
    let roots = |c: &Config| {
        let a = &c.obs.alerts;
        a.webhooks
            .iter()
            .chain(&a.escalation)
            .map(|h| h.extra_roots.clone())
            .collect::<Vec<_>>()
    };
    differs(
        format!("{:?}", old.obs.alerts) != format!("{:?}", new.obs.alerts)
            || roots(old) != roots(new),
        "[alerts]",
    );
    differs(old.obs.tracing != new.obs.tracing, "[tracing]");
    differs(old.breaker != new.breaker, "[defaults.breaker]");
    differs(old.upstreams != new.upstreams, "[[upstream]] tables");
    differs(
        format!("{:?}", old.admin) != format!("{:?}", new.admin),
        "[admin]",
    );
    let names = |c: &Config| {
        c.queues
            .iter()
            .map(|q| q.name.clone())
            .collect::<BTreeSet<_>>()
    };
    let (before, after) = (names(old), names(new));
    for q in after.difference(&before) {
        out.push(format!("queue `{q}` added"));
    }
    for q in before.difference(&after) {
        out.push(format!("queue `{q}` removed"));
    }
    for o in &old.queues {
        let Some(n) = new.queues.iter().find(|n| n.name == o.name) else {
            continue;
        };
        let mut fields = Vec::new();
        let mut field = |changed: bool, name: &'static str| {
            if changed {
                fields.push(name);
            }
        };
        field(o.concurrency != n.concurrency, "concurrency");
        field(o.lease != n.lease, "lease");
        field(o.succeeded_ttl != n.succeeded_ttl, "succeeded_ttl");
        field(o.dead != n.dead, "dead-letter settings");
        field(o.max_payload != n.max_payload, "max_payload");
        field(o.priority_weights != n.priority_weights, "priority_weights");
        field(o.max_backlog != n.max_backlog, "max_backlog");
        // The queue's sampler judges them, with the rule it started with.
        field(o.max_wait != n.max_wait, "max_wait");
        field(o.stall_after != n.stall_after, "stall_after");
        // Its retention service starts with the queue.
        field(o.batch_retention != n.batch_retention, "batch_retention");
        let upstreams = |q: &crate::config::QueueConfig| {
            q.jobs
                .values()
                .flat_map(|j| j.upstreams.iter().cloned())
                .collect::<BTreeSet<_>>()
        };
        // A queue's breakers and flow control start with the daemon, for the
        // upstreams its job types name then.
        field(
            upstreams(o) != upstreams(n),
            "the upstreams its job types name (breakers and flow control)",
        );
        if !fields.is_empty() {
            out.push(format!("queue `{}`: {}", o.name, fields.join(", ")));
        }
    }
    out
}

/// A job type asking for more memory than the engines were sized for, or
/// for fuel where no engine meters it, cannot run until a restart: it keeps
/// its last applied settings (a new one stays out) and is named.
fn keep_unfit(runtime: &Runtime, applied: &Config, new: &mut Config, restart: &mut Vec<String>) {
    for q in &mut new.queues {
        let applied_q = applied.queues.iter().find(|o| o.name == q.name);
        let reused = |name: &str| {
            applied_q
                .and_then(|o| o.jobs.get(name))
                .is_some_and(|o| o.reuse_instance > 1)
        };
        let unfit: Vec<(String, &str)> = q
            .jobs
            .values()
            .filter_map(|j| {
                if !runtime.fits(j.memory_limit, j.fuel.is_some()) {
                    Some((
                        j.name.clone(),
                        "memory_limit or fuel beyond what the engines were built with",
                    ))
                } else if j.reuse_instance > 1 && !reused(&j.name) {
                    // Kept instances need room in the pool, sized at start.
                    Some((
                        j.name.clone(),
                        "reuse_instance turned on (the instance pool is sized at start)",
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (name, why) in unfit {
            restart.push(format!("job `{name}` in queue `{}`: {why}", q.name));
            let old = applied_q.and_then(|o| o.jobs.get(&name));
            match old {
                Some(old) => {
                    q.jobs.insert(name, old.clone());
                }
                None => {
                    q.jobs.remove(&name);
                }
            }
        }
    }
}

/// Names what a reload changes in queue `queue`'s job types: added,
/// removed, a new plugin (by digest), other settings.
fn job_changes(
    queue: &str,
    old: &JobTypes,
    new: &JobTypes,
    old_cfg: Option<&std::collections::BTreeMap<String, JobConfig>>,
    new_cfg: Option<&std::collections::BTreeMap<String, JobConfig>>,
    out: &mut Vec<String>,
) {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        match (old.get(name), new.get(name)) {
            (None, Some(n)) => out.push(format!(
                "job `{name}` in queue `{queue}` added (plugin {})",
                n.plugin.digest()
            )),
            (Some(_), None) => out.push(format!("job `{name}` in queue `{queue}` removed")),
            (Some(o), Some(n)) if o.plugin.digest() != n.plugin.digest() => out.push(format!(
                "job `{name}` in queue `{queue}`: plugin {} -> {}",
                o.plugin.digest(),
                n.plugin.digest()
            )),
            _ => {
                let settings = |c: Option<&std::collections::BTreeMap<String, JobConfig>>| {
                    c.and_then(|m| m.get(name)).map(|j| format!("{j:?}"))
                };
                if settings(old_cfg) != settings(new_cfg) {
                    out.push(format!("job `{name}` in queue `{queue}`: settings changed"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    #[test]
    fn queue_slots_and_redis_need_a_restart_job_settings_do_not() {
        let old = load("[[queue]]\nname = \"q\"\nconcurrency = 2\n");
        let same = load("[[queue]]\nname = \"q\"\nconcurrency = 2\n");
        assert!(needs_restart(&old, &same).is_empty());
        let new = load(
            "[redis]\nurl = \"redis://10.0.0.1\"\n[[queue]]\nname = \"q\"\nconcurrency = 3\n[[queue]]\nname = \"r\"\n",
        );
        let restart = needs_restart(&old, &new);
        assert_eq!(
            restart,
            [
                "[redis] url, cluster, sentinels, master_name or password",
                "queue `r` added",
                "queue `q`: concurrency"
            ],
            "{restart:?}"
        );
    }

    #[test]
    fn metrics_listen_and_a_removed_queue_need_a_restart() {
        let old = load(
            "[metrics]\nlisten = \"127.0.0.1:9000\"\n[[queue]]\nname = \"q\"\n[[queue]]\nname = \"r\"\n",
        );
        let new = load("[metrics]\nlisten = \"127.0.0.1:9001\"\n[[queue]]\nname = \"q\"\n");
        assert_eq!(
            needs_restart(&old, &new),
            ["[metrics] listen", "queue `r` removed"]
        );
    }
}
