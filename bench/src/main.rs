//! `ward-bench`: Ward end to end, measured from the outside.
//!
//! Starts a private `redis-server` on a free loopback port in a temp dir
//! (or uses `--redis`), runs the real `ward` binary as a child, and drives it
//! with plain `XADD`s, the way any client enqueues. Every figure comes from
//! what Redis recorded (stream entry ids = enqueue times, job records'
//! `first_at`/`last_at` = first attempt start / last attempt end, all in ms)
//! and from `/proc` (daemon CPU and peak RSS) and `INFO cpu` (Redis CPU), so
//! the harness itself adds nothing to the daemon's work.
//!
//! Scenarios:
//! - `throughput`: N no-op jobs pre-filled, then the daemon drains them;
//! - `latency`: the daemon idles, jobs arrive at a fixed offered rate;
//! - `failures`: like throughput, 10% of jobs fail once (transient) and are
//!   retried through the delayed set;
//! - `keys`: like throughput, every job carries an idempotency key (with
//!   `--enqueue fcall` added by `ward_enqueue`, which sets the key as it
//!   adds the job, so the daemon does not claim it);
//! - `upstream`: throughput of no-op jobs whose job type names an upstream
//!   with a generous `[[upstream]]` limit, against the same jobs naming
//!   none, and their ratio (see `upstream.rs`);
//! - `startup`: time to ready with the Python and JS plugins, with an empty
//!   compile cache, then a filled one (see `startup.rs`);
//! - `python`, `js`: the example plugins, fresh instances against reused
//!   ones (see `lang.rs`);
//! - `inflight`: 10,000 webhook attempts waiting on a slow receiver at
//!   once, peak in flight and RSS (see `inflight.rs`);
//! - `scaling`: 1, 2 and 4 daemons against one Redis and against a Redis
//!   Cluster with the queues spread over its masters (see `scaling.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
mod http;
mod inflight;
mod lang;
mod receiver;
mod scaling;
mod startup;
mod steady;
mod upstream;

use ward_testkit::{
    Config, METRICS_ANY_PORT, Redis, Ward, connect, job_table, proc_status_kib, xadd_pipe,
};

/// Ward end-to-end benchmark.
#[derive(Debug, Parser)]
#[command(name = "ward-bench")]
struct Args {
    /// Use this Redis instead of starting a private one (it is FLUSHed!).
    #[arg(long)]
    redis: Option<String>,
    /// The `ward` binary (default: target/release/ward next to this one).
    #[arg(long)]
    ward: Option<PathBuf>,
    /// Folder holding noop.wasm and flaky.wasm (default: target/plugins).
    #[arg(long)]
    plugins: Option<PathBuf>,
    /// Jobs per throughput-style run.
    #[arg(long, default_value_t = 200_000)]
    jobs: usize,
    /// The queue's concurrency.
    #[arg(long, default_value_t = 256)]
    concurrency: u32,
    /// Offered rates (jobs/s) for the latency scenario.
    #[arg(long, value_delimiter = ',', default_values_t = [2_000, 20_000])]
    rates: Vec<u64>,
    /// How long each latency run offers load.
    #[arg(long, default_value_t = 5)]
    latency_seconds: u64,
    /// How many daemon processes share the queue in throughput-style runs
    /// (CPU is summed over them, RSS is the largest).
    #[arg(long, default_value_t = 1)]
    daemons: usize,
    /// The daemon's `[daemon] threads` (default: its own default, one less
    /// than the CPU count).
    #[arg(long)]
    threads: Option<usize>,
    /// Which scenarios to run: throughput, latency, failures, keys,
    /// norecord (a queue with `succeeded_ttl = "0s"`), inflight (10,000
    /// webhook jobs waiting on a slow receiver at once: peak in flight and
    /// RSS), raw, upstream (no-op jobs naming a generously limited upstream
    /// vs. naming none), startup (compile cache), http (webhook jobs to a
    /// local receiver with a delay: throughput against the ideal,
    /// connections opened), python and js (the example plugins, fresh
    /// instances vs. `reuse_instance`), scaling (1, 2, 4 daemons against one
    /// Redis and against a Redis Cluster with the queues spread over its
    /// masters).
    #[arg(long, value_delimiter = ',', default_values_t = ["throughput".to_string(), "latency".to_string(), "failures".to_string(), "keys".to_string()])]
    scenarios: Vec<String>,
    /// The `http` scenario's receiver answers after this many ms.
    #[arg(long, default_value_t = 100)]
    http_delay_ms: u64,
    /// Webhook jobs in the `http` scenario.
    #[arg(long, default_value_t = 20_000)]
    http_jobs: usize,
    /// `reuse_instance` of the webhook job type in the `http` scenario
    /// (0 or 1: a fresh instance per attempt, the default).
    #[arg(long, default_value_t = 0)]
    http_reuse: u32,
    /// The plain HTTP receiver of the `http` and `inflight` scenarios:
    /// `tokio` (every connection on one async thread, as cheap as a real
    /// server's event loop) or `threads` (the test kit's thread per
    /// connection, the receiver of the figures before 2026-12-03; it takes
    /// CPU from the daemon on a small machine, and 10,000 threads at
    /// `--inflight 10000`).
    #[arg(long, value_enum, default_value_t = receiver::Kind::Tokio)]
    http_receiver: receiver::Kind,
    /// Jobs per run in the `python` and `js` scenarios.
    #[arg(long, default_value_t = 20_000)]
    lang_jobs: usize,
    /// `reuse_instance` of the reusing run in the `python` and `js` scenarios.
    #[arg(long, default_value_t = 1000)]
    reuse: u32,
    /// Webhook jobs (and the queue's concurrency) in the `inflight` scenario.
    #[arg(long, default_value_t = 10_000)]
    inflight: usize,
    /// How long the `inflight` scenario's receiver holds each request, ms.
    #[arg(long, default_value_t = 10_000)]
    inflight_hold_ms: u64,
    /// How long the `inflight` scenario leaves the daemon idle after the
    /// last job before it reads the daemon's RSS and PSS again (what a
    /// burst leaves behind), s.
    #[arg(long, default_value_t = 5)]
    inflight_idle_s: u64,
    /// Runs the `inflight` scenario against an HTTPS receiver of a private
    /// CA (`http.ca_file`) that speaks HTTP/2, with `http.http2 = true`,
    /// instead of the plain HTTP/1.1 one.
    #[arg(long)]
    inflight_h2: bool,
    /// With `--inflight-h2`: the HTTP/2 streams the receiver lets one
    /// connection carry at once (0: no practical limit; nginx allows 128).
    #[arg(long, default_value_t = 0)]
    inflight_h2_streams: u32,
    /// Runs per scenario (the median is reported with min and max).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// After each throughput-style run, print where Redis spent its time:
    /// `INFO commandstats` (reset as the daemons start), as µs per job by
    /// command and script.
    #[arg(long)]
    commandstats: bool,
    /// How the throughput-style scenarios (throughput, failures, keys,
    /// norecord, upstream) enqueue: plain pipelined `XADD`s, or pipelined
    /// `FCALL ward_enqueue`s, which set a keyed job's key as they add it
    /// (so the daemon does not claim it again).
    #[arg(long, value_enum, default_value_t = Via::Xadd)]
    enqueue: Via,
    /// The `scaling` scenario's daemon counts.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4])]
    daemon_counts: Vec<usize>,
    /// The `scaling` scenario's Redis Cluster, by seed node URLs (it is
    /// FLUSHed!); default: a local one of three masters with one replica
    /// each, started on free loopback ports.
    #[arg(long, value_delimiter = ',')]
    cluster_seeds: Vec<String>,
}

/// The Redis a run drives: a private one from the kit, or `--redis`.
struct Server {
    _own: Option<Redis>,
    url: String,
}

impl Server {
    fn start(existing: Option<String>) -> anyhow::Result<Server> {
        if let Some(url) = existing {
            return Ok(Server { _own: None, url });
        }
        let own = Redis::try_start().context("redis-server must be installed (scripts/setup)")?;
        Ok(Server {
            url: own.url(),
            _own: Some(own),
        })
    }

    fn con(&self) -> anyhow::Result<redis::Connection> {
        Ok(connect(&self.url)?)
    }
}

/// What every run shares: the options, the Redis, the binary and plugins.
struct Bench {
    args: Args,
    redis: Server,
    ward: PathBuf,
    plugins: PathBuf,
    /// What starting one daemon costs in CPU, measured once (see
    /// [`Bench::start_cost`]).
    start_cost: std::cell::OnceCell<f64>,
}

/// How long a daemon may take to compile its plugins and start.
const READY: Duration = Duration::from_secs(600);
/// How long a daemon may take to stop on SIGTERM once a run is measured.
const STOP: Duration = Duration::from_secs(60);

impl Bench {
    /// Starts one daemon on queue `bench` (job types `noop` and `flaky`)
    /// and waits until it is running. The `[[upstream]]` table goes in only
    /// for the scenario that uses it (`with_upstream`), so the scenarios
    /// that do not can still drive a `ward` from before it existed (A/B).
    fn daemon(&self, succeeded_ttl: &str, with_upstream: bool) -> anyhow::Result<Ward> {
        let args = &self.args;
        let threads = args
            .threads
            .map_or_else(String::new, |t| format!("[daemon]\nthreads = {t}\n\n"));
        let plugin = |name: &str| self.plugins.join(format!("{name}.wasm"));
        let mut jobs = job_table("noop", "bench", &plugin("noop"), "")
            + &job_table("flaky", "bench", &plugin("flaky"), "");
        if with_upstream {
            jobs += &upstream::job_type(&plugin("noop"));
        }
        let config = Config::new(&self.redis.url)
            .top(&format!("{threads}{METRICS_ANY_PORT}"))
            .retry("initial_delay = \"10ms\"\nmax_delay = \"100ms\"\njitter = \"none\"")
            .queue(
                "bench",
                &format!(
                    "concurrency = {}\nsucceeded_ttl = \"{succeeded_ttl}\"",
                    args.concurrency
                ),
            )
            .jobs(&jobs)
            .render();
        self.start(&config)
    }

    /// The CPU seconds one daemon of [`Bench::daemon`] uses to start: on an
    /// empty queue, from its launch until it has been ready for 100 ms.
    /// Measured once, before the first run. A drain's daemon CPU less this
    /// is what its jobs cost, so a version that compiles its plugin at
    /// every start (no compile cache) does not look slower per job than it
    /// is.
    fn start_cost(&self) -> anyhow::Result<f64> {
        if let Some(cost) = self.start_cost.get() {
            return Ok(*cost);
        }
        let mut con = self.redis.con()?;
        let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
        let ward = self.daemon("24h", false)?;
        std::thread::sleep(Duration::from_millis(100));
        let cost = cpu_seconds(ward.pid());
        stop(vec![ward]);
        Ok(*self.start_cost.get_or_init(|| cost))
    }

    /// Starts a daemon with `config` and waits until it is running. Its
    /// log shows warnings, and `ward::worker`'s info lines: readiness is
    /// read from one of them (`ward is running`), so a quieter filter
    /// would leave every scenario waiting for a start it cannot see.
    fn start(&self, config: &str) -> anyhow::Result<Ward> {
        let env = [("RUST_LOG", "warn,ward::worker=info")];
        Ok(Ward::try_start(&self.ward, config, &env)?.try_ready(READY)?)
    }
}

/// (user + system CPU seconds, peak RSS KiB) of a daemon, from /proc.
fn usage(daemon: &Ward) -> (f64, u64) {
    let pid = daemon.pid();
    (cpu_seconds(pid), proc_status_kib(pid, "VmHWM").unwrap_or(0))
}

/// The CPU time (user and system) process `pid` has used so far, in
/// seconds; 0 when it cannot be read.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after ')'.
    (ticks(11) + ticks(12)) / 100.0
}

/// Stops the daemons of a measured run with SIGTERM, as an operator would.
/// The figures are taken; one that does not stop in time is killed.
fn stop(daemons: Vec<Ward>) {
    for d in daemons {
        let _ = d.try_stop(STOP);
    }
}

fn redis_cpu(con: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(con).unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Prints `INFO commandstats` as µs of Redis time per job, largest first:
/// which commands (EVALSHA and FCALL are the scripts) a run's jobs cost.
#[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
fn print_commandstats(con: &mut redis::Connection, label: &str, jobs: usize) {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(con)
        .unwrap_or_default();
    // cmdstat_xack:calls=3,usec=12,usec_per_call=4.00,...
    let mut rows: Vec<(String, u64, u64)> = info
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |k: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((name.to_string(), field("calls")?, field("usec")?))
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.2));
    let total: u64 = rows.iter().map(|r| r.2).sum();
    let per_job = |us: u64| us as f64 / jobs.max(1) as f64;
    println!(
        "commandstats {label}: {:.2} µs of Redis command time per job",
        per_job(total)
    );
    for (name, calls, usec) in rows.iter().take(12) {
        println!(
            "  {name:<16} {calls:>9} calls  {:>7.2} µs/job  {:>6.1} µs/call",
            per_job(*usec),
            *usec as f64 / (*calls).max(1) as f64
        );
    }
}

const STREAM: &str = "ward:{bench}:jobs";

/// How jobs are enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    /// Plain `XADD`s, as any Redis client can.
    Xadd,
    /// `FCALL ward_enqueue` (the library a daemon loads as it starts).
    Fcall,
}

/// Enqueues `n` jobs (`payload(i)` gives each one's type and payload) in
/// pipelines of 1,000 plain `XADD`s; the keyed ones with key `k-<i>`.
fn fill(
    con: &mut redis::Connection,
    n: usize,
    payload: impl Fn(usize) -> (String, String),
    keyed: bool,
) -> anyhow::Result<(Vec<String>, f64)> {
    fill_via(con, n, payload, keyed, Via::Xadd)
}

/// [`fill`] through `via`.
fn fill_via(
    con: &mut redis::Connection,
    n: usize,
    payload: impl Fn(usize) -> (String, String),
    keyed: bool,
    via: Via,
) -> anyhow::Result<(Vec<String>, f64)> {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for &i in chunk {
            let (job, body) = payload(i);
            let key = if keyed {
                format!("k-{i}")
            } else {
                String::new()
            };
            match via {
                Via::Xadd => {
                    let fields = [
                        ("job", &*job),
                        ("payload", &*body),
                        ("idempotency_key", &*key),
                    ];
                    xadd_pipe(&mut pipe, STREAM, &fields[..if keyed { 3 } else { 2 }]);
                }
                Via::Fcall => {
                    pipe.cmd("FCALL")
                        .arg("ward_enqueue")
                        .arg(1)
                        .arg(STREAM)
                        .arg(&job)
                        .arg(&body)
                        .arg(&key);
                }
            }
        }
        match via {
            Via::Xadd => ids.extend(pipe.query::<Vec<String>>(con)?),
            Via::Fcall => {
                let replies: Vec<(String, String, u64)> = pipe.query(con)?;
                for (id, status, _) in replies {
                    if status != "created" {
                        bail!("ward_enqueue answered `{status}` for {id}");
                    }
                    ids.push(id);
                }
            }
        }
    }
    Ok((ids, start.elapsed().as_secs_f64()))
}

fn wait_drained(con: &mut redis::Connection, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let (len, delayed): (usize, usize) = redis::pipe()
            .cmd("XLEN")
            .arg(STREAM)
            .cmd("ZCARD")
            .arg("ward:{bench}:delayed")
            .query(con)?;
        if len == 0 && delayed == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("not drained after {timeout:?}: {len} in the stream, {delayed} delayed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the bench reads back of one job.
struct Row {
    /// Enqueue time (the entry id's ms).
    enqueued: u64,
    /// First attempt start.
    first: u64,
    /// Last attempt end.
    last: u64,
    /// The job's state.
    state: String,
}

type RecordFields = (Option<u64>, Option<u64>, Option<String>);

/// Per job of queue `bench`: enqueue time, first attempt start, last
/// attempt end, state.
fn records(con: &mut redis::Connection, ids: &[String]) -> anyhow::Result<Vec<Row>> {
    records_in(con, "bench", ids)
}

/// [`records`] of queue `queue`.
fn records_in(
    con: &mut redis::Connection,
    queue: &str,
    ids: &[String],
) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(5000) {
        let mut pipe = redis::pipe();
        for id in chunk {
            pipe.cmd("HMGET")
                .arg(format!("ward:{{{queue}}}:job:{id}"))
                .arg("first_at")
                .arg("last_at")
                .arg("state");
        }
        let rows: Vec<RecordFields> = pipe.query(con)?;
        for (id, (first, last, state)) in chunk.iter().zip(rows) {
            let enqueued = id
                .split('-')
                .next()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0);
            out.push(Row {
                enqueued,
                first: first.unwrap_or(0),
                last: last.unwrap_or(0),
                state: state.unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Fails unless every job of a run (`what`) succeeded.
fn all_succeeded(rows: &[Row], what: &str) -> anyhow::Result<()> {
    let ok = rows.iter().filter(|r| r.state == "succeeded").count();
    if ok != rows.len() {
        bail!("{what}: only {ok} of {} jobs succeeded", rows.len());
    }
    Ok(())
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short slice"
    )]
    let i = ((p / 100.0) * sorted.len() as f64) as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Run {
    label: String,
    jobs: usize,
    enqueue_rate: f64,
    throughput: f64,
    start_lat: Vec<u64>,
    done_lat: Vec<u64>,
    daemon_cpu: f64,
    /// Of `daemon_cpu`, what starting the daemons cost (plugin loads, a
    /// compile without a cache), not jobs: [`Bench::start_cost`] each.
    daemon_start_cpu: f64,
    daemon_rss_kib: u64,
    redis_cpu: f64,
    wall: f64,
}

/// What a throughput run enqueues and how its queue is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    /// No-op jobs.
    Plain,
    /// 10% of the jobs fail once (transient).
    Failures,
    /// Every job has an idempotency key.
    Keyed,
    /// No-op jobs on a queue that keeps no records of succeeded jobs.
    NoRecord,
    /// No-op jobs whose job type names a generously limited upstream.
    Upstream,
}

#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
fn drain_run(bench: &Bench, label: &str, mix: Mix) -> anyhow::Result<Run> {
    let (args, redis) = (&bench.args, &bench.redis);
    let start_cost = bench.start_cost()?;
    let failures = mix == Mix::Failures;
    let keyed = mix == Mix::Keyed;
    let no_record = mix == Mix::NoRecord;
    let mut con = redis.con()?;
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let n = args.jobs;
    let payload = |i: usize| {
        if failures {
            let body = if i.is_multiple_of(10) {
                r#"{"fail":"transient","times":1}"#
            } else {
                r#"{"times":0}"#
            };
            ("flaky".to_string(), body.to_string())
        } else if mix == Mix::Upstream {
            (upstream::JOB.to_string(), "{}".to_string())
        } else {
            ("noop".to_string(), "{}".to_string())
        }
    };
    let (ids, enq_secs) = fill_via(&mut con, n, payload, keyed, args.enqueue)?;
    if args.commandstats {
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut con)?;
    }
    let redis_before = redis_cpu(&mut con);
    let wall = Instant::now();
    let ttl = if no_record { "0s" } else { "24h" };
    let daemons = (0..args.daemons.max(1))
        .map(|_| bench.daemon(ttl, mix == Mix::Upstream))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let span = if no_record {
        // No records to read the times from: watch the group instead.
        watch_drain(&mut con, n, Duration::from_secs(600))?
    } else {
        wait_drained(&mut con, Duration::from_secs(600))?;
        0.0
    };
    let wall = wall.elapsed().as_secs_f64();
    let usage: Vec<(f64, u64)> = daemons.iter().map(usage).collect();
    let cpu = usage.iter().map(|u| u.0).sum();
    let rss = usage.iter().map(|u| u.1).max().unwrap_or(0);
    let redis_used = redis_cpu(&mut con) - redis_before;
    if args.commandstats {
        print_commandstats(&mut con, label, n);
    }
    stop(daemons);
    let span = if no_record {
        span
    } else {
        let rows = records(&mut con, &ids)?;
        all_succeeded(&rows, label)?;
        let first = rows.iter().map(|r| r.first).min().unwrap_or(0);
        let last = rows.iter().map(|r| r.last).max().unwrap_or(0);
        (last.saturating_sub(first)).max(1) as f64 / 1000.0
    };
    Ok(Run {
        label: label.to_string(),
        jobs: n,
        enqueue_rate: n as f64 / enq_secs,
        throughput: n as f64 / span,
        start_lat: Vec::new(),
        done_lat: Vec::new(),
        daemon_cpu: cpu,
        daemon_start_cpu: start_cost * args.daemons.max(1) as f64,
        daemon_rss_kib: rss,
        redis_cpu: redis_used,
        wall,
    })
}

/// For a queue that keeps no records: polls the group every millisecond
/// and returns the seconds from the first delivery to the moment nothing is
/// left in the stream, pending or delayed. Fails unless every job ended
/// acknowledged with no dead letter (for no-op jobs: succeeded).
fn watch_drain(con: &mut redis::Connection, n: usize, timeout: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + timeout;
    let mut started: Option<Instant> = None;
    loop {
        let (len, pending, delayed): (
            usize,
            (usize, redis::Value, redis::Value, redis::Value),
            usize,
        ) = redis::pipe()
            .cmd("XLEN")
            .arg(STREAM)
            .cmd("XPENDING")
            .arg(STREAM)
            .arg("ward")
            .cmd("ZCARD")
            .arg("ward:{bench}:delayed")
            .query(con)?;
        let now = Instant::now();
        if started.is_none() && (pending.0 > 0 || len < n) {
            started = Some(now);
        }
        if let Some(t0) = started
            && len == 0
            && pending.0 == 0
            && delayed == 0
        {
            let dead: usize = redis::cmd("XLEN").arg("ward:{bench}:dead").query(con)?;
            if dead > 0 {
                bail!("{dead} of {n} jobs were dead-lettered");
            }
            return Ok(now.duration_since(t0).as_secs_f64().max(0.001));
        }
        if now > deadline {
            bail!(
                "not drained after {timeout:?}: {len} in the stream, {} pending",
                pending.0
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rates and counts far below 2^52"
)]
fn latency_run(bench: &Bench, rate: u64) -> anyhow::Result<Run> {
    let (args, redis) = (&bench.args, &bench.redis);
    let mut con = redis.con()?;
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let start_cost = bench.start_cost()?;
    let daemon = bench.daemon("24h", false)?;
    let redis_before = redis_cpu(&mut con);
    let total = (rate * args.latency_seconds) as usize;
    let mut ids = Vec::with_capacity(total);
    let start = Instant::now();
    // Pace on 1 ms ticks: at tick t, everything due by t is sent in one pipeline.
    while ids.len() < total {
        let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        if due > ids.len() {
            let mut pipe = redis::pipe();
            for _ in ids.len()..due {
                xadd_pipe(&mut pipe, STREAM, &[("job", "noop"), ("payload", "{}")]);
            }
            let got: Vec<String> = pipe.query(&mut con)?;
            ids.extend(got);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let offered_secs = start.elapsed().as_secs_f64();
    wait_drained(&mut con, Duration::from_secs(300))?;
    // The last completions are recorded just after the stream empties.
    std::thread::sleep(Duration::from_millis(200));
    let wall = start.elapsed().as_secs_f64();
    let (cpu, rss) = usage(&daemon);
    let redis_used = redis_cpu(&mut con) - redis_before;
    stop(vec![daemon]);
    let rows = records(&mut con, &ids)?;
    let mut start_lat: Vec<u64> = rows
        .iter()
        .map(|r| r.first.saturating_sub(r.enqueued))
        .collect();
    let mut done_lat: Vec<u64> = rows
        .iter()
        .map(|r| r.last.saturating_sub(r.enqueued))
        .collect();
    start_lat.sort_unstable();
    done_lat.sort_unstable();
    all_succeeded(&rows, &format!("latency at {rate}/s"))?;
    Ok(Run {
        label: format!("latency @ {rate} jobs/s offered"),
        jobs: ids.len(),
        enqueue_rate: ids.len() as f64 / offered_secs,
        throughput: 0.0,
        start_lat,
        done_lat,
        daemon_cpu: cpu,
        daemon_start_cpu: start_cost,
        daemon_rss_kib: rss,
        redis_cpu: redis_used,
        wall,
    })
}

/// The raw Redis ceiling for one XADD + XREADGROUP + XACK cycle per entry,
/// with no Ward at all: pipelined XADDs fill the stream, then one client
/// reads `COUNT 1000` with XREADGROUP and acknowledges each batch with one
/// XACK. Returns the XADD rate and the read + ack rate.
#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
fn raw_cycle(redis: &Server, n: usize) -> anyhow::Result<(f64, f64)> {
    let mut con = redis.con()?;
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let (_, enq_secs) = fill(&mut con, n, |_| ("noop".into(), "{}".into()), false)?;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg("g")
        .arg("0")
        .query(&mut con)?;
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        let reply: redis::Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query(&mut con)?;
        let ids = entry_ids(reply);
        if ids.is_empty() {
            break;
        }
        let (): () = redis::cmd("XACK")
            .arg(STREAM)
            .arg("g")
            .arg(&ids)
            .query(&mut con)?;
        done += ids.len();
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((n as f64 / enq_secs, done as f64 / secs))
}

fn entry_ids(reply: redis::Value) -> Vec<String> {
    let redis::Value::Array(streams) = reply else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for stream in streams {
        let redis::Value::Array(parts) = stream else {
            continue;
        };
        let Some(redis::Value::Array(entries)) = parts.into_iter().nth(1) else {
            continue;
        };
        for e in entries {
            if let redis::Value::Array(kv) = e
                && let Some(redis::Value::BulkString(id)) = kv.into_iter().next()
            {
                out.push(String::from_utf8_lossy(&id).into_owned());
            }
        }
    }
    out
}

/// The rate of a cycle made of two stages run one after the other.
fn cycle(first: f64, second: f64) -> f64 {
    1.0 / (1.0 / first + 1.0 / second)
}

fn print_run(r: &Run) {
    println!("## {}", r.label);
    println!("  jobs                  {}", r.jobs);
    println!("  enqueue rate          {:.0} jobs/s", r.enqueue_rate);
    if r.throughput > 0.0 {
        println!(
            "  throughput            {:.0} jobs/s (first attempt start to last completion)",
            r.throughput
        );
        println!(
            "  full cycle            {:.0} jobs/s (enqueue time + drain time)",
            cycle(r.enqueue_rate, r.throughput)
        );
    }
    if !r.start_lat.is_empty() {
        let line = |name: &str, v: &[u64]| {
            println!(
                "  {name:<21} p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
                pct(v, 50.0),
                pct(v, 90.0),
                pct(v, 99.0),
                v.last().copied().unwrap_or(0)
            );
        };
        line("enqueue -> start", &r.start_lat);
        line("enqueue -> completion", &r.done_lat);
    }
    println!(
        "  daemon                CPU {:.2} s over {:.2} s wall ({:.2} s of it starting, measured apart; {:.2} µs per job besides), peak RSS {} MiB",
        r.daemon_cpu,
        r.wall,
        r.daemon_start_cpu,
        (r.daemon_cpu - r.daemon_start_cpu) * 1e6 / r.jobs.max(1) as f64,
        r.daemon_rss_kib / 1024
    );
    println!("  redis-server          CPU {:.2} s", r.redis_cpu);
}

fn versions(redis: &Server, ward: &Path) -> String {
    let mut con = redis.con().ok();
    let rv = con
        .as_mut()
        .and_then(|c| redis::cmd("INFO").arg("server").query::<String>(c).ok())
        .and_then(|i| {
            i.lines()
                .find_map(|l| l.strip_prefix("redis_version:").map(str::to_string))
        })
        .unwrap_or_default();
    let wv = Command::new(ward)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{wv}; redis {rv}; {cores} cores ({cpu})")
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let exe = std::env::current_exe()?;
    let ward = args
        .ward
        .clone()
        .unwrap_or_else(|| exe.with_file_name("ward"));
    let plugins = args.plugins.clone().unwrap_or_else(|| {
        exe.parent()
            .and_then(Path::parent)
            .map_or_else(|| PathBuf::from("target/plugins"), |t| t.join("plugins"))
    });
    let redis = Server::start(args.redis.clone())?;
    let bench = Bench {
        args,
        redis,
        ward,
        plugins,
        start_cost: std::cell::OnceCell::new(),
    };
    let args = &bench.args;
    println!("# ward-bench");
    println!("versions: {}", versions(&bench.redis, &bench.ward));
    println!(
        "method: {} enqueues (pipelines of 1000) to one queue; {} `ward run` child(ren) with concurrency {}, \
         no-op Rust component (fresh instance per attempt); times from Redis (entry ids, job records, ms), \
         CPU/RSS from /proc (CPU summed over daemons), Redis CPU from INFO; median of {} run(s) where several",
        match args.enqueue {
            Via::Xadd => "plain XADD",
            Via::Fcall => "FCALL ward_enqueue",
        },
        args.daemons.max(1),
        args.concurrency,
        args.runs
    );
    // The median throughput of each drain scenario run, for the ratios
    // printed at the end.
    let mut medians: Vec<(String, f64)> = Vec::new();
    for scenario in &args.scenarios {
        match scenario.as_str() {
            "throughput" | "failures" | "keys" | "norecord" => {
                let label = match scenario.as_str() {
                    "throughput" => "throughput: no-op jobs, pre-filled",
                    "norecord" => {
                        "throughput: no-op jobs, pre-filled, queue keeps no records of succeeded jobs (succeeded_ttl = \"0s\")"
                    }
                    "failures" => {
                        "throughput: 10% fail once (transient), retried via the delayed set"
                    }
                    _ => "throughput: every job has an idempotency key",
                };
                let mut runs = Vec::new();
                for _ in 0..args.runs.max(1) {
                    runs.push(drain_run(
                        &bench,
                        label,
                        match scenario.as_str() {
                            "failures" => Mix::Failures,
                            "keys" => Mix::Keyed,
                            "norecord" => Mix::NoRecord,
                            _ => Mix::Plain,
                        },
                    )?);
                }
                runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
                let (min, max) = (runs[0].throughput, runs[runs.len() - 1].throughput);
                print_run(&runs[runs.len() / 2]);
                medians.push((scenario.clone(), runs[runs.len() / 2].throughput));
                if runs.len() > 1 {
                    println!(
                        "  throughput over {} runs: median {:.0}, min {min:.0}, max {max:.0} jobs/s",
                        runs.len(),
                        runs[runs.len() / 2].throughput
                    );
                }
            }
            "raw" => {
                let mut runs = Vec::new();
                for _ in 0..args.runs.max(1) {
                    runs.push(raw_cycle(&bench.redis, args.jobs)?);
                }
                let median = |mut v: Vec<f64>| {
                    v.sort_by(f64::total_cmp);
                    v[v.len() / 2]
                };
                let enq = median(runs.iter().map(|r| r.0).collect());
                let read_ack = median(runs.iter().map(|r| r.1).collect());
                let full = median(runs.iter().map(|r| cycle(r.0, r.1)).collect());
                println!(
                    "## raw Redis ceiling (no Ward): XADD pipelined, then XREADGROUP COUNT 1000 + XACK per batch, one client"
                );
                println!("  XADD rate             {enq:.0} entries/s");
                println!("  read + ack rate       {read_ack:.0} entries/s");
                println!("  full cycle            {full:.0} entries/s (XADD time + read/ack time)");
            }
            "upstream" => upstream::compare(&bench)?,
            "startup" => startup::run(&bench)?,
            "http" => http::run(&bench)?,
            "inflight" => inflight::run(&bench)?,
            "python" | "js" => lang::run(&bench, scenario)?,
            "scaling" => scaling::compare(&bench)?,
            "latency" => {
                for &rate in &args.rates {
                    print_run(&latency_run(&bench, rate)?);
                }
            }
            other => bail!(
                "unknown scenario `{other}` (throughput, latency, failures, keys, norecord, inflight, raw, upstream, startup, http, python, js, scaling)"
            ),
        }
    }
    let median_of = |name: &str| medians.iter().find(|(s, _)| s == name).map(|(_, t)| *t);
    if let (Some(plain), Some(keyed)) = (median_of("throughput"), median_of("keys")) {
        // Only comparable within one sitting: the two ran back to back here.
        println!(
            "## keyed / no-op (this invocation's medians): {:.0}% ({keyed:.0} / {plain:.0} jobs/s)",
            100.0 * keyed / plain
        );
    }
    Ok(())
}
