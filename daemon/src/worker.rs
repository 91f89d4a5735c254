//! The daemon proper: per queue, a reader that leases batches sized to free
//! slots, one task per attempt, and a completer that applies finished
//! attempts to Redis in batches.
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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::config::{Config, DeadLetterConfig, QueueConfig};
use crate::job::{DeadReason, FailureClass, Outcome};
use crate::obs::logging::AttemptIdent;
use crate::policy::{self, Decision, Progress, RetryPolicy};
use crate::queue::{self, Action, Completion, Delivery, KeyCheck, Keys, Queue};
use crate::redact::{self, FieldPath};
use crate::runtime::{JobInput, Plugin, Runtime, Sandbox};

/// How long one `XREADGROUP` waits for work; also the longest a shutdown
/// waits for a reader to notice it.
const BLOCK: Duration = Duration::from_secs(2);
/// Most deliveries leased in one read.
const MAX_LEASE: usize = 512;
/// How many times a reader lets finishing attempts run before it reads
/// with fewer than half its slots free.
const GATHER_YIELDS: usize = 4;
/// Attempts typically shorter than this let the reader lease up to a slot's
/// worth of deliveries ahead of free slots.
const LEASE_AHEAD_BELOW: Duration = Duration::from_millis(2);
/// How many deliveries per slot may be leased ahead (see [`LEASE_AHEAD_BELOW`]).
const LEASE_AHEAD_SLOTS: u32 = 1;
/// Most completions applied in one script call.
const MAX_APPLY: usize = 256;
/// Most delayed jobs promoted in one script call.
const MAX_PROMOTE: usize = 512;
/// The longest the promoter sleeps without looking at the delayed set: a
/// safety net for a lost wake-up message, not the normal path.
const PROMOTE_IDLE: Duration = Duration::from_secs(1);
/// How long a shutdown keeps trying to record finished attempts while Redis
/// is unreachable before it gives up (the deliveries stay pending in Redis).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How often a daemon looks for consumers of stopped daemons to remove.
const CONSUMER_SWEEP: Duration = Duration::from_secs(300);
/// A consumer with nothing pending that has not read for this long belongs
/// to a daemon that is gone (each daemon reads every few seconds).
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);
/// How often each queue checks that Redis still has Ward's functions.
const FUNCTIONS_CHECK: Duration = Duration::from_secs(5);
/// Most dead letters one retention call removes per limit; a larger
/// backlog is worked off by further calls straight away.
const MAX_TRIM: usize = 1000;
/// After new dead letters are written, retention runs this much later (or
/// at its interval, if sooner): soon, but at most about once a second
/// however fast jobs die.
const TRIM_AFTER_DEAD: Duration = Duration::from_secs(1);

/// A job type, ready to run.
struct JobType {
    plugin: Arc<Plugin>,
    sandbox: Sandbox,
    policy: RetryPolicy,
    idempotency_ttl: Duration,
    /// Payload fields never shown in this type's dead letters.
    redact: Vec<FieldPath>,
    /// Upstreams whose circuit breakers hold this type's jobs back.
    upstreams: Vec<String>,
}

/// Loads every plugin named in `config`, compiling each file once.
///
/// # Errors
/// One message listing every plugin that failed to load.
fn load_plugins(
    runtime: &Runtime,
    config: &Config,
) -> anyhow::Result<HashMap<String, HashMap<String, Arc<JobType>>>> {
    let mut compiled: HashMap<(PathBuf, bool), Arc<Plugin>> = HashMap::new();
    let mut errors = Vec::new();
    let mut out = HashMap::new();
    for q in &config.queues {
        let mut jobs = HashMap::new();
        for j in q.jobs.values() {
            let key = (j.plugin.clone(), j.fuel.is_some());
            let plugin = match compiled.get(&key) {
                Some(p) => p.clone(),
                None => match runtime.load(&j.plugin, j.fuel.is_some()) {
                    Ok(p) => {
                        let p = Arc::new(p);
                        tracing::info!(plugin = %j.plugin.display(), digest = %p.digest(), "plugin compiled");
                        compiled.insert(key, p.clone());
                        p
                    }
                    Err(e) => {
                        errors.push(format!("job `{}` in queue `{}`: {e}", j.name, q.name));
                        continue;
                    }
                },
            };
            let mut secrets = BTreeMap::new();
            for name in &j.secrets {
                match crate::runtime::read_secret(name) {
                    Some(value) => {
                        secrets.insert(name.clone(), value);
                    }
                    None => errors.push(format!(
                        "job `{}` in queue `{}`: secret `{name}` is granted but not set: give the daemon an environment variable {name} or a file $CREDENTIALS_DIRECTORY/{name} (systemd LoadCredential=)",
                        j.name, q.name
                    )),
                }
            }
            jobs.insert(
                j.name.clone(),
                Arc::new(JobType {
                    plugin,
                    sandbox: Sandbox {
                        timeout: j.timeout,
                        memory: j.memory_limit,
                        fuel: j.fuel,
                        output_limit: j.output_limit,
                        http: Arc::new(j.http.clone()),
                        secrets: Arc::new(secrets),
                    },
                    policy: j.retry,
                    idempotency_ttl: j.idempotency_ttl,
                    redact: j.redact.clone(),
                    upstreams: j.upstreams.clone(),
                }),
            );
        }
        out.insert(q.name.clone(), jobs);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        anyhow::bail!(
            "{}: cannot load plugins:\n  {}",
            config.path.display(),
            errors.join("\n  ")
        )
    }
}

/// The engine sizes a config needs: pooled slots, largest memory, fuel or not.
fn runtime_for(config: &Config, slots: u32) -> anyhow::Result<Runtime> {
    let jobs = config.queues.iter().flat_map(|q| q.jobs.values());
    let max_memory = jobs
        .clone()
        .map(|j| j.memory_limit)
        .max()
        .unwrap_or(crate::runtime::DEFAULT_MEMORY_LIMIT);
    let fuel = jobs.clone().any(|j| j.fuel.is_some());
    Ok(Runtime::new(slots, max_memory, fuel)?)
}

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
    if let Some(ca) = &config.redis_ca {
        let pem = std::fs::read(ca)
            .with_context(|| format!("[redis] ca_file {}: cannot read it", ca.display()))?;
        queue::trust_ca(pem);
    }
    let obs = crate::obs::start(&config)?;
    let slots: u32 = config.queues.iter().map(|q| q.concurrency).sum();
    let runtime = runtime_for(&config, slots)?;
    let mut job_types = load_plugins(&runtime, &config)?;
    obs.plugins_loaded();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    let url = queue::redacted_url(&config.redis_url);
    let con = tokio::select! {
        con = connect_with_backoff(&config.redis_url, &url) => con,
        () = &mut shutdown => return Ok(()),
    };
    tracing::info!(redis = %url, "connected to Redis");

    let consumer = consumer_name();
    if let Some(q) = config.queues.first() {
        // Clients call `ward_enqueue`; a server without it (a fresh or
        // restarted Redis) gets it again whenever an enqueue misses it too.
        Queue::new(Keys::new(&q.name), con.clone())
            .load_functions()
            .await
            .context("cannot load Ward's Redis Functions (FUNCTION LOAD needs Redis 7 or newer)")?;
    }
    let mut queues = JoinSet::new();
    for q in &config.queues {
        let queue = Queue::new(Keys::new(&q.name), con.clone()).with_succeeded_ttl(q.succeeded_ttl);
        ensure_group(&queue, &mut shutdown).await?;
        let jobs = job_types.remove(&q.name).unwrap_or_default();
        tracing::info!(
            queue = %q.name,
            concurrency = q.concurrency,
            jobs = ?jobs.keys().collect::<Vec<_>>(),
            consumer = %consumer,
            "consuming"
        );
        queues.spawn(promote(
            queue.clone(),
            config.redis_url.clone(),
            stop_rx.clone(),
        ));
        let dead_written = Arc::new(Notify::new());
        if q.dead.has_retention() {
            queues.spawn(retain(
                queue.clone(),
                q.dead.clone(),
                dead_written.clone(),
                stop_rx.clone(),
            ));
        }
        queues.spawn(obs.sampler(queue.clone(), stop_rx.clone()));
        let reader = queue.with_connection(connect_with_backoff(&config.redis_url, &url).await);
        let breakers = jobs.values().any(|jt| !jt.upstreams.is_empty()).then(|| {
            for jt in jobs.values() {
                for u in &jt.upstreams {
                    crate::obs::events::breaker_state(&q.name, u, false);
                }
            }
            crate::breaker::Breakers::new(queue.clone(), config.breaker)
        });
        if let Some(b) = &breakers {
            queues.spawn(crate::breaker::keep_fresh(b.clone(), stop_rx.clone()));
        }
        queues.spawn(consume_queue(
            queue,
            reader,
            q.clone(),
            jobs,
            consumer.clone(),
            stop_rx.clone(),
            QueueShared {
                dead_written,
                breakers,
            },
        ));
    }
    for s in &config.schedules {
        let queue = Queue::new(Keys::new(&s.queue), con.clone());
        queues.spawn(crate::schedule::run(queue, s.clone(), stop_rx.clone()));
    }
    tracing::info!(threads = config.worker_threads(), "ward is running");

    tokio::select! {
        () = &mut shutdown => {
            tracing::info!("shutting down: no new leases; waiting for attempts in flight");
            obs.stopping();
            let _ = stop_tx.send(true);
        }
        Some(res) = queues.join_next() => {
            // A queue's loop only ends on shutdown; ending early is a bug worth failing loudly for.
            res.context("a queue worker panicked")?;
            anyhow::bail!("a queue worker stopped unexpectedly");
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

async fn connect_with_backoff(url: &str, shown: &str) -> redis::aio::ConnectionManager {
    let mut delay = Duration::from_millis(200);
    loop {
        match queue::connect(url, BLOCK).await {
            Ok(con) => return con,
            Err(e) => {
                tracing::error!(redis = %shown, error = %e, retry_in = ?delay, "cannot reach Redis; is it running and is [redis] url right?");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

async fn ensure_group(
    queue: &Queue,
    shutdown: &mut (impl Future<Output = ()> + Unpin),
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(200);
    loop {
        match queue.ensure_group().await {
            Ok(()) => return Ok(()),
            Err(e) if queue::is_connection_error(&e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?delay, "cannot create consumer group; retrying");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot create consumer group `{}` on {}",
                        queue::GROUP,
                        queue.keys.jobs
                    )
                });
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut *shutdown => anyhow::bail!("shut down before Redis was reachable"),
        }
        delay = (delay * 2).min(Duration::from_secs(10));
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

/// The deliveries this daemon holds for one queue: leased and not yet
/// recorded. The heartbeat renews exactly these.
type InFlight = Arc<std::sync::Mutex<std::collections::HashSet<String>>>;

/// What a queue's consumer shares with the queue's other tasks.
struct QueueShared {
    /// Told when dead letters were written (retention runs soon after).
    dead_written: Arc<Notify>,
    /// The queue's circuit breakers, when a job type lists upstreams.
    breakers: Option<Arc<crate::breaker::Breakers>>,
}

/// What a leased delivery holds while it waits or runs.
enum Slot {
    /// A free slot: the attempt starts at once.
    Run(tokio::sync::OwnedSemaphorePermit),
    /// Leased ahead: the attempt waits for a slot.
    Ahead(tokio::sync::OwnedSemaphorePermit),
}

/// What to do with one leased delivery.
enum Work {
    /// Run the plugin.
    Run(queue::JobEntry, Arc<JobType>),
    /// Nothing to run: the outcome is already known (malformed, no plugin,
    /// duplicate, lost attempt).
    Record(Completion),
}

async fn consume_queue(
    queue: Queue,
    reader: Queue,
    cfg: QueueConfig,
    jobs: HashMap<String, Arc<JobType>>,
    consumer: String,
    stop: watch::Receiver<bool>,
    shared: QueueShared,
) {
    let QueueShared {
        dead_written,
        breakers,
    } = shared;
    let jobs = Arc::new(jobs);
    let queue_name: Arc<str> = cfg.name.as_str().into();
    let in_flight: InFlight = Arc::default();
    let slots = Arc::new(Semaphore::new(cfg.concurrency as usize));
    let (done_tx, done_rx) = mpsc::channel::<Completion>(MAX_APPLY * 4);
    let shaping = DeadShaping {
        jobs: jobs.clone(),
        payload_max: cfg.dead.payload_max,
    };
    let completer = tokio::spawn(complete(
        queue.clone(),
        done_rx,
        in_flight.clone(),
        dead_written,
        shaping,
        stop.clone(),
        breakers.clone(),
    ));
    let (beat_stop, beat_rx) = watch::channel(false);
    let heartbeat = tokio::spawn(heartbeat(
        queue.clone(),
        consumer.clone(),
        cfg.lease,
        in_flight.clone(),
        beat_rx,
    ));
    let reclaimer = tokio::spawn(reclaim(
        queue.clone(),
        consumer.clone(),
        cfg.lease,
        jobs.clone(),
        done_tx.clone(),
        in_flight.clone(),
        stop.clone(),
    ));
    let mut delay = Duration::from_millis(100);
    // Deliveries leased ahead of a free slot, when attempts are short.
    let ahead_max = cfg.concurrency.saturating_mul(LEASE_AHEAD_SLOTS);
    let ahead = Arc::new(Semaphore::new(ahead_max as usize));
    // Starts out as "long", until a few attempts have shown otherwise.
    let typical_us = Arc::new(AtomicU64::new(
        u64::try_from(LEASE_AHEAD_BELOW.as_micros()).unwrap_or(u64::MAX) * 4,
    ));

    while !*stop.borrow() {
        // Short attempts free their slots within microseconds, and a read
        // per handful of them costs more than the attempts: the reader may
        // lease up to a slot's worth more, to start as slots free up, and
        // reads as soon as there is room for those, so the next batch is
        // in hand before the slots run dry. Long attempts never lease
        // ahead, so a daemon cannot sit on work another one could start.
        let short = u128::from(typical_us.load(Ordering::Relaxed)) < LEASE_AHEAD_BELOW.as_micros();
        // Wait for room for at least one delivery, then take all there is.
        let mut stop_wait = stop.clone();
        let first = tokio::select! {
            biased;
            p = slots.clone().acquire_owned() => match p { Ok(p) => Slot::Run(p), Err(_) => break },
            p = ahead.clone().acquire_owned(), if short => match p { Ok(p) => Slot::Ahead(p), Err(_) => break },
            _ = stop_wait.changed() => break,
        };
        let mut permits = vec![first];
        let take_all = |permits: &mut Vec<Slot>| {
            while permits.len() < MAX_LEASE {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(Slot::Run(p)),
                    Err(_) => break,
                }
            }
            while short && permits.len() < MAX_LEASE {
                match ahead.clone().try_acquire_owned() {
                    Ok(p) => permits.push(Slot::Ahead(p)),
                    Err(_) => break,
                }
            }
        };
        // Under load, room frees up one attempt at a time. Letting the
        // attempts that are ready to finish run first (a yield, a few
        // microseconds) turns many small reads into one larger one; an
        // idle queue has every slot free and does not wait at all.
        let mut yields = 0;
        loop {
            take_all(&mut permits);
            if permits.len() >= MAX_LEASE.min(cfg.concurrency as usize) / 2
                || yields == GATHER_YIELDS
            {
                break;
            }
            tokio::task::yield_now().await;
            yields += 1;
            if slots.available_permits() == 0 && (!short || ahead.available_permits() == 0) {
                // Nothing finished meanwhile: read what there is room for.
                break;
            }
        }
        // Deliveries leased ahead by earlier reads wait for slots (some
        // perhaps held by this read): it must not sit in a blocking read
        // of an empty stream while they wait.
        let own_ahead = permits
            .iter()
            .filter(|p| matches!(p, Slot::Ahead(_)))
            .count();
        let ahead_waiting = ahead.available_permits() + own_ahead < ahead_max as usize;
        let block = (!ahead_waiting).then_some(BLOCK);
        // The read is not cancelled on shutdown: entries it already took
        // must be run, not left leased to a consumer that is going away.
        let deliveries = match reader.lease_batch(&consumer, permits.len(), block).await {
            Ok(d) => {
                delay = Duration::from_millis(100);
                d
            }
            Err(e) => {
                if matches!(&e, queue::QueueError::Redis(r) if r.code() == Some("NOGROUP")) {
                    // Redis lost the group (restarted without persistence, or
                    // someone deleted the stream): make it again.
                    tracing::warn!(queue = %cfg.name, "consumer group missing; creating it again");
                    let _ = queue.ensure_group().await;
                }
                tracing::error!(queue = %cfg.name, error = %e, retry_in = ?delay, "cannot read from Redis; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if deliveries.is_empty() && ahead_waiting {
            // Nothing new: hand the slots to the deliveries leased ahead and
            // wait until each has one, then read (blocking) again.
            drop(permits);
            let _started = ahead.acquire_many(ahead_max).await;
            continue;
        }
        if let Ok(mut set) = in_flight.lock() {
            set.extend(deliveries.iter().map(|d| d.entry_id.clone()));
        }
        // Slots are handed out first, so deliveries leased ahead are the last.
        permits.reverse();
        for work in triage(&queue, &cfg.name, &jobs, deliveries, breakers.as_deref()).await {
            let slot = permits.pop();
            match work {
                Work::Record(c) => {
                    if done_tx.send(c).await.is_err() {
                        tracing::error!(queue = %cfg.name, "completer gone; the delivery stays pending");
                    }
                }
                Work::Run(entry, job_type) => {
                    let done = done_tx.clone();
                    let name = queue_name.clone();
                    let slots = slots.clone();
                    let typical_us = typical_us.clone();
                    // Each attempt holds its slot until its completion is
                    // queued, so holding every slot means none is running.
                    tokio::spawn(async move {
                        let _permit = match slot {
                            Some(Slot::Run(p)) => Some(p),
                            Some(Slot::Ahead(ahead)) => {
                                let p = slots.acquire_owned().await.ok();
                                drop(ahead);
                                p
                            }
                            None => None,
                        };
                        // Boxed: the attempt future is kilobytes, and the task
                        // would otherwise be copied whole as it is spawned.
                        let (c, elapsed) = Box::pin(run_attempt(entry, &name, &job_type)).await;
                        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
                        // A rough moving average; racing updates only blur it.
                        let old = typical_us.load(Ordering::Relaxed);
                        typical_us.store(old - old / 8 + us / 8, Ordering::Relaxed);
                        // The completer only stops once every sender is gone.
                        if done.send(c).await.is_err() {
                            tracing::error!(queue = %name, "completer gone; the delivery stays pending");
                        }
                    });
                }
            }
        }
    }
    // Deliveries leased ahead all have a slot once every ahead permit is
    // back; then holding every slot means no attempt is running.
    let _all_started = ahead.acquire_many(ahead_max).await;
    let _all_done = slots.acquire_many(cfg.concurrency).await;
    let _ = reclaimer.await;
    drop(done_tx);
    if completer.await.is_err() {
        tracing::error!(queue = %cfg.name, "completer panicked; pending deliveries stay in the group");
    }
    let _ = beat_stop.send(true);
    let _ = heartbeat.await;
}

/// Sorts leased deliveries into attempts to run and outcomes already known,
/// checking idempotency keys for the whole batch in one round trip.
async fn triage(
    queue: &Queue,
    queue_name: &str,
    jobs: &HashMap<String, Arc<JobType>>,
    deliveries: Vec<Delivery>,
    breakers: Option<&crate::breaker::Breakers>,
) -> Vec<Work> {
    let mut out = Vec::with_capacity(deliveries.len());
    let mut keyed: Vec<(queue::JobEntry, Arc<JobType>)> = Vec::new();
    for d in deliveries {
        match d.parse() {
            Err(m) => out.push(Work::Record(malformed(queue_name, m))),
            Ok(entry) => match jobs.get(&entry.job) {
                None => out.push(Work::Record(no_plugin(queue_name, jobs, entry))),
                Some(jt) => match held_back(breakers, jt) {
                    Some((upstream, wait)) => {
                        out.push(Work::Record(deferred(
                            queue_name, entry, jt, &upstream, wait,
                        )));
                    }
                    None if entry.idempotency_key.is_some() => keyed.push((entry, jt.clone())),
                    None => out.push(Work::Run(entry, jt.clone())),
                },
            },
        }
    }
    if keyed.is_empty() {
        return out;
    }
    let items: Vec<(&str, &str, Duration)> = keyed
        .iter()
        .map(|(e, jt)| {
            (
                e.id.as_str(),
                e.idempotency_key.as_deref().unwrap_or(""),
                jt.idempotency_ttl,
            )
        })
        .collect();
    let mut backoff = Duration::from_millis(50);
    let checks = loop {
        match queue.check_keys(&items).await {
            Ok(c) => break c,
            Err(e) => {
                // Running without the check could run a completed job twice;
                // the deliveries stay leased (and renewed) while Redis is away.
                tracing::error!(queue = %queue_name, error = %e, retry_in = ?backoff, "cannot check idempotency keys; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    };
    for ((entry, jt), check) in keyed.into_iter().zip(checks) {
        match check {
            KeyCheck::Run => out.push(Work::Run(entry, jt)),
            KeyCheck::DuplicateOf(owner) => {
                tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, duplicate_of = %owner, "duplicate enqueue of an idempotency key; acknowledged without running");
                out.push(Work::Record(duplicate(entry, &jt, Some(owner))));
            }
            KeyCheck::Completed => {
                tracing::info!(queue = %queue_name, job_id = %entry.id, job = %entry.job, "redelivery of a job that already succeeded; acknowledged without running");
                out.push(Work::Record(duplicate(entry, &jt, None)));
            }
        }
    }
    out
}

/// The open breaker that holds `jt`'s jobs back, and for how long.
fn held_back(
    breakers: Option<&crate::breaker::Breakers>,
    jt: &JobType,
) -> Option<(String, Duration)> {
    if jt.upstreams.is_empty() {
        return None;
    }
    let b = breakers?;
    let (upstream, until) = b.open_among(&jt.upstreams)?;
    Some((upstream, b.wait_until(until)))
}

/// A job not run because its upstream's breaker is open: back to the
/// delayed set until the breaker's time is up (plus a little jitter, so the
/// held-back jobs do not all arrive at once), without using an attempt.
fn deferred(
    queue_name: &str,
    entry: queue::JobEntry,
    jt: &JobType,
    upstream: &str,
    wait: Duration,
) -> Completion {
    tracing::debug!(queue = %queue_name, job_id = %entry.id, job = %entry.job, upstream, wait = ?wait, "circuit breaker open; job held back");
    let message = format!(
        "not run: the circuit breaker of upstream `{upstream}` is open for another {}",
        humantime::format_duration(Duration::from_millis(
            u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
        ))
    );
    let outcome = Outcome::failure(FailureClass::Transient, message)
        .with_code(crate::breaker::CODE)
        .with_upstream(upstream);
    let attempt = entry.attempt.saturating_sub(1);
    let mut c = completion(entry, Some(jt), outcome, Action::Retry);
    c.attempt = attempt;
    let jitter = rand::random::<u64>() % 250;
    c.delay_ms = u64::try_from(wait.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(jitter)
        .max(1);
    c
}

/// A completion for `entry` with nothing decided yet; callers set the rest.
fn completion(
    entry: queue::JobEntry,
    job_type: Option<&JobType>,
    outcome: Outcome,
    action: Action,
) -> Completion {
    let now = queue::now_ms();
    Completion {
        entry_id: entry.entry_id,
        job_id: entry.id,
        job: entry.job,
        attempt: entry.attempt,
        started_ms: 0,
        first_at_ms: entry.first_at.unwrap_or(0),
        delay_ms: 0,
        finished_ms: now,
        payload: entry.payload,
        outcome,
        action,
        plugin_digest: job_type.map_or_else(|| "".into(), |jt| jt.plugin.digest().clone()),
        checkpoint: entry.checkpoint,
        extra: entry.extra,
        idempotency_key: entry.idempotency_key,
        idempotency_ttl: job_type.map_or(crate::config::DEFAULT_IDEMPOTENCY_TTL, |jt| {
            jt.idempotency_ttl
        }),
        lease_expiries: entry.lease_expiries,
        duplicate_of: None,
        dead_payload: None,
    }
}

fn malformed(queue_name: &str, m: queue::Malformed) -> Completion {
    tracing::warn!(queue = %queue_name, entry = %m.entry_id, why = %m.why, "malformed entry; dead-lettering it");
    let entry = queue::JobEntry {
        id: m.entry_id.clone(),
        entry_id: m.entry_id,
        job: String::new(),
        payload: m.payload,
        attempt: 1,
        idempotency_key: None,
        checkpoint: None,
        first_at: None,
        last_delay_ms: None,
        lease_expiries: 0,
        extra: m.extra,
    };
    let outcome = Outcome::failure(FailureClass::Permanent, m.why).with_code("malformed-entry");
    let mut c = completion(entry, None, outcome, Action::Dead(DeadReason::Malformed));
    c.attempt = 0;
    c
}

fn no_plugin(
    queue_name: &str,
    jobs: &HashMap<String, Arc<JobType>>,
    entry: queue::JobEntry,
) -> Completion {
    let mut known: Vec<&str> = jobs.keys().map(String::as_str).collect();
    known.sort_unstable();
    let why = format!(
        "no [[job]] named `{}` in queue `{queue_name}` (configured: {})",
        entry.job,
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    );
    tracing::warn!(queue = %queue_name, job_id = %entry.id, job = %entry.job, "{why}; dead-lettering it");
    let outcome = Outcome::failure(FailureClass::Permanent, why).with_code("no-plugin");
    let attempt = entry.attempt.saturating_sub(1);
    let mut c = completion(entry, None, outcome, Action::Dead(DeadReason::NoPlugin));
    c.attempt = attempt;
    c
}

fn duplicate(entry: queue::JobEntry, job_type: &JobType, owner: Option<String>) -> Completion {
    let mut c = completion(
        entry,
        Some(job_type),
        Outcome::Success(Vec::new()),
        Action::Duplicate,
    );
    c.duplicate_of = owner;
    c.attempt = c.attempt.saturating_sub(1);
    c
}

/// Runs one attempt; returns its completion and how long the plugin took.
async fn run_attempt(
    mut entry: queue::JobEntry,
    queue_name: &Arc<str>,
    job_type: &JobType,
) -> (Completion, Duration) {
    let _in_flight = crate::obs::events::InFlight::start(queue_name);
    let started_ms = queue::now_ms();
    let clock = std::time::Instant::now();
    let input = JobInput {
        ident: AttemptIdent::of(queue_name, &entry),
        // The plugin hands the payload back; a retry or dead letter needs it.
        payload: std::mem::take(&mut entry.payload),
        // Plugins always get a key to forward upstream: the job id when the
        // enqueuer gave none, which is stable across retries.
        idempotency_key: Some(
            entry
                .idempotency_key
                .clone()
                .unwrap_or_else(|| entry.id.clone()),
        ),
        checkpoint: entry.checkpoint.clone(),
    };
    let result = job_type.plugin.run(input, &job_type.sandbox).await;
    entry.payload = result.payload;
    let elapsed = clock.elapsed();
    crate::obs::events::AttemptFinished {
        queue: queue_name,
        job: &entry.job,
        elapsed,
        instantiate: result.instantiate,
    }
    .emit();
    let finished_ms = queue::now_ms();
    let first_at_ms = entry.first_at.unwrap_or(started_ms);
    let progress = Progress {
        attempt: entry.attempt,
        first_attempt_ms: first_at_ms,
        now_ms: finished_ms,
        previous_delay: entry.last_delay_ms.map(Duration::from_millis),
    };
    let decision = policy::decide(
        &result.outcome,
        &progress,
        &job_type.policy,
        &mut rand::rng(),
    );
    log_attempt(queue_name, &entry, &result.outcome, decision, elapsed);
    // A new checkpoint replaces the old one; without one, the old one stays.
    let checkpoint = result.checkpoint.or_else(|| entry.checkpoint.clone());
    let mut c = completion(entry, Some(job_type), result.outcome, Action::Ack);
    apply_decision(&mut c, decision);
    c.started_ms = started_ms;
    c.first_at_ms = first_at_ms;
    c.finished_ms = finished_ms;
    c.checkpoint = checkpoint;
    (c, elapsed)
}

fn apply_decision(c: &mut Completion, decision: Decision) {
    match decision {
        Decision::Ack => c.action = Action::Ack,
        Decision::Retry { delay, .. } => {
            c.action = Action::Retry;
            c.delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        }
        Decision::DeadLetter(reason) => c.action = Action::Dead(reason),
    }
}

/// Renews the leases of this daemon's deliveries every third of the lease,
/// in one script for all of them, until told to stop (after the last
/// attempt in flight has been recorded).
async fn heartbeat(
    queue: Queue,
    consumer: String,
    lease: Duration,
    in_flight: InFlight,
    mut stop: watch::Receiver<bool>,
) {
    let every = lease / 3;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let ids: Vec<String> = match in_flight.lock() {
            Ok(set) => set.iter().cloned().collect(),
            Err(_) => continue,
        };
        match queue.renew(&consumer, &ids).await {
            Ok(lost) => {
                for entry in lost {
                    tracing::warn!(queue = %queue.keys.queue, entry = %entry, "a delivery this daemon is running was reclaimed by another (its lease expired); its outcome will be ignored if the other daemon records first");
                }
            }
            Err(e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, "cannot renew leases; retrying")
            }
        }
    }
}

/// Takes over deliveries whose worker died (their lease expired without a
/// heartbeat) and records each as a lost attempt: it counts, carries the
/// code `lease-expired`, and is retried like a transient failure, unless the
/// job has lost too many leases (a poison pill) and is dead-lettered.
async fn reclaim(
    queue: Queue,
    consumer: String,
    lease: Duration,
    jobs: Arc<HashMap<String, Arc<JobType>>>,
    done: mpsc::Sender<Completion>,
    in_flight: InFlight,
    mut stop: watch::Receiver<bool>,
) {
    let every = (lease / 2).max(Duration::from_millis(100));
    let lease_text = humantime::format_duration(lease).to_string();
    let mut forgotten_at = std::time::Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if forgotten_at.elapsed() >= CONSUMER_SWEEP {
            forgotten_at = std::time::Instant::now();
            match queue.forget_idle_consumers(&consumer, CONSUMER_IDLE).await {
                Ok(gone) if !gone.is_empty() => {
                    tracing::info!(queue = %queue.keys.queue, consumers = ?gone, "removed idle consumers of stopped daemons (no pending deliveries)");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(queue = %queue.keys.queue, error = %e, "cannot list the group's consumers")
                }
            }
        }
        let deliveries = match queue.reclaim(&consumer, lease, MAX_APPLY).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, "cannot reclaim expired leases; retrying");
                continue;
            }
        };
        for d in deliveries {
            // After a Redis outage longer than the lease, this daemon's own
            // running attempts look expired too; they are alive, leave them.
            if in_flight.lock().is_ok_and(|set| set.contains(&d.entry_id)) {
                continue;
            }
            let c = match d.parse() {
                Err(m) => malformed(&queue.keys.queue, m),
                Ok(entry) => {
                    let job_type = jobs.get(&entry.job).cloned();
                    let policy = job_type
                        .as_ref()
                        .map_or_else(RetryPolicy::default, |jt| jt.policy);
                    let now = queue::now_ms();
                    let expiries = entry.lease_expiries + 1;
                    let progress = Progress {
                        attempt: entry.attempt,
                        // A lost first attempt never recorded its start; it
                        // began after the enqueue (the entry id's time).
                        first_attempt_ms: entry.first_at.unwrap_or_else(|| {
                            crate::obs::events::enqueued_ms(&entry.entry_id).unwrap_or(now)
                        }),
                        now_ms: now,
                        previous_delay: entry.last_delay_ms.map(Duration::from_millis),
                    };
                    let decision =
                        policy::decide_lost(&progress, expiries, &policy, &mut rand::rng());
                    let message = format!(
                        "lease expired: no heartbeat for {lease_text} while attempt {} ran (its worker stopped); lost attempt {expiries} of at most {}",
                        entry.attempt, policy.max_lease_expiries
                    );
                    let outcome = Outcome::failure(FailureClass::Transient, message)
                        .with_code("lease-expired");
                    log_attempt(
                        &queue.keys.queue,
                        &entry,
                        &outcome,
                        decision,
                        Duration::ZERO,
                    );
                    let first_at_ms = progress.first_attempt_ms;
                    let mut c = completion(entry, job_type.as_deref(), outcome, Action::Ack);
                    apply_decision(&mut c, decision);
                    c.first_at_ms = first_at_ms;
                    c.lease_expiries = expiries;
                    c
                }
            };
            if done.send(c).await.is_err() {
                return;
            }
        }
    }
}

/// One line per attempt. Successes log at debug so a busy queue does not
/// drown the log; every failure logs at info or above.
fn log_attempt(
    queue: &str,
    entry: &queue::JobEntry,
    outcome: &Outcome,
    decision: Decision,
    elapsed: Duration,
) {
    let quiet = matches!(outcome, Outcome::Success(_)) && !tracing::enabled!(tracing::Level::DEBUG);
    if quiet {
        return;
    }
    let span = AttemptIdent::of(&Arc::from(queue), entry).span();
    let _entered = span.enter();
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Outcome::Success(_) => tracing::debug!(
            job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
            class = "success", elapsed_ms, "attempt succeeded"
        ),
        Outcome::Failure(f) => {
            let code = f.code.as_deref().unwrap_or("");
            let upstream = f.upstream.as_deref().unwrap_or("");
            match decision {
                Decision::Retry {
                    next_attempt,
                    delay,
                } => tracing::info!(
                    job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
                    class = %f.class, code, upstream,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    next_attempt, elapsed_ms, error = %f.message, "attempt failed; retrying"
                ),
                Decision::DeadLetter(reason) => tracing::warn!(
                    job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
                    class = %f.class, code, upstream, reason = %reason, elapsed_ms,
                    error = %f.message, "attempt failed; dead-lettering the job"
                ),
                Decision::Ack => {}
            }
        }
    }
}

/// Applies finished attempts in batches. A batch that fails is re-sent until
/// it lands: [`Queue::apply`] is idempotent per delivery, and dropping it
/// would leave jobs pending with their outcome forgotten. The one exception
/// is a shutdown while Redis stays unreachable: after [`SHUTDOWN_GRACE`] the
/// daemon gives up and exits, and those deliveries, still pending in Redis,
/// are reclaimed after their lease and run again (at-least-once).
async fn complete(
    queue: Queue,
    mut rx: mpsc::Receiver<Completion>,
    in_flight: InFlight,
    dead_written: Arc<Notify>,
    shaping: DeadShaping,
    stop: watch::Receiver<bool>,
    breakers: Option<Arc<crate::breaker::Breakers>>,
) {
    let mut batch = Vec::with_capacity(MAX_APPLY);
    let mut stopping_since: Option<std::time::Instant> = None;
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_APPLY {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut any_dead = false;
        for c in batch
            .iter_mut()
            .filter(|c| matches!(c.action, Action::Dead(_)))
        {
            any_dead = true;
            let redact = shaping
                .jobs
                .get(&c.job)
                .map_or(&[][..], |jt| jt.redact.as_slice());
            shape_dead_payload(c, &queue.keys.queue, redact, shaping.payload_max);
        }
        let mut delay = Duration::from_millis(50);
        let mut resent = false;
        let recorded = loop {
            match queue.apply(&batch).await {
                Ok(took) => {
                    if any_dead {
                        dead_written.notify_one();
                    }
                    // After a failed send, a completion reported as not
                    // taking effect may have taken effect in that send: count
                    // the whole batch once rather than none of it.
                    break Some(if resent {
                        vec![true; batch.len()]
                    } else {
                        took
                    });
                }
                Err(e) => {
                    resent = true;
                    if *stop.borrow() {
                        let since = *stopping_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= SHUTDOWN_GRACE {
                            tracing::error!(
                                queue = %queue.keys.queue, error = %e, jobs = batch.len(),
                                "shutting down with Redis unreachable: these finished attempts are not recorded; their deliveries stay pending and are run again after their lease expires"
                            );
                            break None;
                        }
                    }
                    let first_job = batch.first().map(|c| c.job_id.as_str()).unwrap_or("");
                    tracing::error!(
                        queue = %queue.keys.queue, error = %e, jobs = batch.len(), first_job,
                        retry_in = ?delay, "cannot record finished attempts; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if let Some(took) = recorded {
            crate::obs::recorded(&queue.keys.queue, &batch, &took);
            if let Some(b) = &breakers {
                b.report(&batch, &took, |job| {
                    shaping
                        .jobs
                        .get(job)
                        .map(|jt| jt.upstreams.as_slice())
                        .filter(|u| !u.is_empty())
                })
                .await;
            }
        }
        if let Ok(mut set) = in_flight.lock() {
            for c in &batch {
                set.remove(&c.entry_id);
            }
        }
        batch.clear();
    }
}

/// Moves due jobs from `ward:{Q}:delayed` back to the stream.
///
/// It sleeps until the earliest due time (measured in the Redis server's
/// clock, so host clock skew cannot make a job early), and is woken sooner
/// through pub/sub on `ward:{Q}:wake` whenever any daemon or client schedules
/// a job. Promotion is one script, so several daemons can run this at once.
async fn promote(queue: Queue, url: String, mut stop: watch::Receiver<bool>) {
    let mut wake: Option<redis::aio::PubSub> = None;
    let mut backoff = Duration::from_millis(100);
    let mut functions_checked = std::time::Instant::now();
    while !*stop.borrow() {
        // Clients enqueue through `ward_enqueue`: put it back if Redis lost it.
        if functions_checked.elapsed() >= FUNCTIONS_CHECK {
            functions_checked = std::time::Instant::now();
            match queue.ensure_functions().await {
                Ok(true) => {
                    tracing::warn!(queue = %queue.keys.queue, "Redis had lost Ward's functions (restart without persistence?); loaded them again")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(queue = %queue.keys.queue, error = %e, "cannot check Ward's Redis Functions")
                }
            }
        }
        if wake.is_none() {
            wake = subscribe(&url, &queue.keys.wake).await;
        }
        let sleep_for = match queue.promote_due(MAX_PROMOTE).await {
            Ok(p) => {
                backoff = Duration::from_millis(100);
                for id in &p.missing {
                    tracing::error!(queue = %queue.keys.queue, job_id = %id, "delayed job has no record; it cannot be run (was its key deleted by hand?)");
                }
                if p.moved > 0 {
                    tracing::debug!(queue = %queue.keys.queue, moved = p.moved, "promoted due jobs");
                }
                if p.moved >= MAX_PROMOTE {
                    continue;
                }
                p.next_due_ms
                    .map_or(PROMOTE_IDLE, |due| {
                        Duration::from_millis(due.saturating_sub(p.now_ms))
                    })
                    .min(PROMOTE_IDLE)
            }
            Err(e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?backoff, "cannot promote delayed jobs; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        if sleep_for.is_zero() {
            continue;
        }
        let lost_wake = {
            let message = async {
                match wake.as_mut() {
                    Some(ps) => ps.on_message().next().await.is_none(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(sleep_for) => false,
                lost = message => lost,
                _ = stop.changed() => false,
            }
        };
        if lost_wake {
            wake = None;
        }
    }
}

async fn subscribe(url: &str, channel: &str) -> Option<redis::aio::PubSub> {
    let attempt = async {
        let mut ps = queue::client(url)?.get_async_pubsub().await?;
        ps.subscribe(channel).await?;
        Ok::<_, redis::RedisError>(ps)
    };
    match attempt.await {
        Ok(ps) => Some(ps),
        Err(e) => {
            tracing::warn!(channel, error = %e, "cannot subscribe to wake-ups; delayed jobs may start up to 1s late");
            None
        }
    }
}
/// What the completer needs to shape dead letters' payloads.
struct DeadShaping {
    /// The queue's job types (for their `redact` lists).
    jobs: Arc<HashMap<String, Arc<JobType>>>,
    /// Largest payload copied into a dead letter.
    payload_max: usize,
}

/// Sets what a dead letter shows of its payload: the configured secret
/// fields redacted, a marker instead of a payload over `max` bytes. Done
/// here, before anything reaches Redis or a log line; the job record keeps
/// the original for a requeue.
fn shape_dead_payload(c: &mut Completion, queue_name: &str, redact: &[FieldPath], max: usize) {
    let record = Keys::new(queue_name).record(&c.job_id);
    if let std::borrow::Cow::Owned(shown) = redact::dead_payload(&c.payload, redact, max, &record) {
        c.dead_payload = Some(shown);
    }
}

/// Applies a queue's dead-letter retention (`dead_max_len`, `dead_max_age`)
/// every `trim_interval`, and soon after new dead letters are written.
/// Retention is one script per call, so several daemons may run it at once.
async fn retain(
    queue: Queue,
    dead: DeadLetterConfig,
    dead_written: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(
        queue = %queue.keys.queue,
        max_len = ?dead.max_len,
        max_age = ?dead.max_age.map(humantime::format_duration),
        every = %humantime::format_duration(dead.trim_interval),
        "dead-letter retention on"
    );
    while !*stop.borrow() {
        trim_dead_letters(&queue, &dead).await;
        let after_dead = async {
            dead_written.notified().await;
            tokio::time::sleep(TRIM_AFTER_DEAD.min(dead.trim_interval)).await;
        };
        tokio::select! {
            () = tokio::time::sleep(dead.trim_interval) => {}
            () = after_dead => {}
            _ = stop.changed() => {}
        }
    }
}

/// One retention pass, calling the script until no limit is hit.
async fn trim_dead_letters(queue: &Queue, dead: &DeadLetterConfig) {
    let mut total = queue::Trimmed::default();
    loop {
        match queue.trim_dead(dead.max_len, dead.max_age, MAX_TRIM).await {
            Ok(t) => {
                total.by_age += t.by_age;
                total.by_len += t.by_len;
                if !t.more {
                    break;
                }
            }
            Err(e) => {
                tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?dead.trim_interval, "cannot apply dead-letter retention; retrying");
                break;
            }
        }
    }
    DeadLettersTrimmed {
        queue: &queue.keys.queue,
        count: total.by_age,
        by: "age",
    }
    .emit();
    DeadLettersTrimmed {
        queue: &queue.keys.queue,
        count: total.by_len,
        by: "len",
    }
    .emit();
}

/// Dead letters removed by retention. Never silent: one info line per
/// pass and limit that removed any. (The place to count them, too, once
/// Ward has metrics: `ward_dead_letters_trimmed_total{queue, by}`.)
struct DeadLettersTrimmed<'a> {
    /// The queue.
    queue: &'a str,
    /// Entries removed.
    count: usize,
    /// Which limit removed them: `len` (`dead_max_len`) or `age` (`dead_max_age`).
    by: &'static str,
}

impl DeadLettersTrimmed<'_> {
    fn emit(&self) {
        if self.count > 0 {
            tracing::info!(
                queue = %self.queue,
                count = self.count,
                by = self.by,
                record_ttl_s = queue::RETIRED_TTL.as_secs(),
                "trimmed dead letters"
            );
        }
    }
}
