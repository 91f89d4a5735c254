//! The `ward` command line: the daemon (`ward run`) and the tools around it.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{self, Config};
use crate::queue::{self, Keys, Queue};

/// Ward runs background jobs from Redis streams in sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "ward", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format: `auto` is JSON when stdout is not a terminal (systemd, pipes).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Auto,
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Add a job to a queue and print its id.
    Enqueue {
        #[command(flatten)]
        target: RedisTarget,
        /// The queue.
        queue: String,
        /// The job type.
        job: String,
        /// The payload; `-` reads it from standard input, byte for byte.
        payload: String,
        /// Start the job after this long, e.g. `30s`, `5m`.
        #[arg(long, conflicts_with = "at", value_parser = parse_delay)]
        delay: Option<std::time::Duration>,
        /// Start the job at this time (RFC 3339, e.g. `2026-11-22T03:00:00Z`).
        #[arg(long, value_parser = parse_at)]
        at: Option<u64>,
        /// Create the job only once per key: a second enqueue with the same
        /// key (within its TTL) prints the first job's id and says so.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// How long the key is remembered (default: the job type's
        /// `idempotency_ttl` from `--config`, else 24h).
        #[arg(long, value_parser = parse_delay)]
        idempotency_ttl: Option<std::time::Duration>,
    },
    /// Look at jobs.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// How many jobs each queue holds, by state: ready, leased (running or
    /// about to), delayed (retries and scheduled), dead.
    Stats {
        #[command(flatten)]
        target: RedisTarget,
        /// The queues (default: every [[queue]] of `--config`).
        queues: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Each queue's circuit breakers: which upstreams hold jobs back, until when.
    Breakers {
        #[command(flatten)]
        target: RedisTarget,
        /// The queues (default: every [[queue]] of `--config`).
        queues: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect, requeue and discard dead letters (`ward:{Q}:dead`).
    Dlq {
        #[command(subcommand)]
        command: crate::dlq::DlqCommand,
    },
    /// Check a config file and compile its plugins, without touching Redis.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Validate a component against the `job-plugin` world; print its
    /// digest, imports and exports. Fails if Ward could not run it.
    Check {
        /// The component file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Show a job's state, attempts and last error.
    Show {
        #[command(flatten)]
        target: RedisTarget,
        /// The queue.
        queue: String,
        /// The job id (for a plain XADD, its stream entry id).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the file and compile every plugin it names.
    Check {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// Which Redis a tool command talks to.
#[derive(Debug, Args)]
pub(crate) struct RedisTarget {
    /// Redis URL (default: the config's, else redis://127.0.0.1:6379).
    #[arg(long, env = "WARD_REDIS_URL")]
    redis: Option<String>,
    /// Take the Redis URL from this config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl RedisTarget {
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.redis {
            return Ok(url.clone());
        }
        match &self.config {
            Some(path) => {
                let cfg = Config::load(path)?;
                if let Some(ca) = &cfg.redis_ca {
                    let pem = std::fs::read(ca).with_context(|| {
                        format!("[redis] ca_file {}: cannot read it", ca.display())
                    })?;
                    queue::trust_ca(pem);
                }
                Ok(cfg.redis_url)
            }
            None => Ok(config::DEFAULT_REDIS_URL.to_string()),
        }
    }

    /// The job type's `idempotency_ttl` from `--config`, else the default.
    fn idempotency_ttl(&self, queue: &str, job: &str) -> anyhow::Result<std::time::Duration> {
        let Some(path) = &self.config else {
            return Ok(config::DEFAULT_IDEMPOTENCY_TTL);
        };
        let cfg = Config::load(path)?;
        Ok(cfg
            .queues
            .iter()
            .find(|q| q.name == queue)
            .and_then(|q| q.jobs.get(job))
            .map_or(config::DEFAULT_IDEMPOTENCY_TTL, |j| j.idempotency_ttl))
    }

    pub(crate) async fn queue(&self, name: &str) -> anyhow::Result<Queue> {
        if let Some(why) = config::check_name(name) {
            anyhow::bail!("queue name `{name}` {why}");
        }
        let url = self.url()?;
        let con = queue::connect(&url, std::time::Duration::from_secs(1))
            .await
            .with_context(|| format!("cannot reach Redis at {}", queue::redacted_url(&url)))?;
        Ok(Queue::new(Keys::new(name), con))
    }
}

/// Parses the command line, runs it, and turns errors into a message and
/// a non-zero exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon's log level comes from its config ([log] level) unless
    // RUST_LOG is set; a config that does not load is reported by `run` itself.
    let loaded = match &cli.command {
        Command::Run { config } => Config::load(config).ok(),
        _ => None,
    };
    let level = loaded.as_ref().and_then(|c| c.obs.log_level.clone());
    init_logging(
        cli.log_format,
        matches!(cli.command, Command::Run { .. }),
        level.as_deref(),
    );
    // Tools need no more than one thread; the daemon as many as its config says.
    let threads = loaded.as_ref().map_or(1, Config::worker_threads);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ward: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ward: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat, daemon: bool, level: Option<&str>) {
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    crate::obs::logging::init(json, daemon, level);
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            crate::worker::run(config, shutdown_signal()).await
        }
        Command::Enqueue {
            target,
            queue,
            job,
            payload,
            delay,
            at,
            idempotency_key,
            idempotency_ttl,
        } => {
            let payload = if payload == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("cannot read the payload from standard input")?;
                buf
            } else {
                payload.into_bytes()
            };
            if job.is_empty() {
                anyhow::bail!("the job type is empty; name one of the config's [[job]] entries");
            }
            let q = target.queue(&queue).await?;
            if delay.is_none() && at.is_none() && idempotency_key.is_none() {
                // The plain path: one XADD, exactly what any client can do.
                println!("{}", q.enqueue(&job, &payload).await?);
                return Ok(());
            }
            let ttl = match idempotency_ttl {
                Some(ttl) => ttl,
                None => target.idempotency_ttl(&queue, &job)?,
            };
            let done = q
                .enqueue_with(&job, &payload, idempotency_key.as_deref(), delay, at, ttl)
                .await?;
            println!("{}", done.id);
            if done.duplicate {
                eprintln!(
                    "duplicate: idempotency key `{}` already belongs to job {}; nothing was added",
                    idempotency_key.as_deref().unwrap_or(""),
                    done.id
                );
            } else if let Some(due) = done.due_ms {
                eprintln!("due at {}", format_ms(due));
            }
            Ok(())
        }
        Command::Job {
            command:
                JobCommand::Show {
                    target,
                    queue,
                    id,
                    json,
                },
        } => {
            let q = target.queue(&queue).await?;
            let Some(status) = q.job_status(&id).await? else {
                anyhow::bail!(
                    "no job `{id}` in queue `{queue}` (records of succeeded jobs are kept for the queue's succeeded_ttl, {} h unless set)",
                    queue::SUCCEEDED_TTL.as_secs() / 3600
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            Ok(())
        }
        Command::Plugin {
            command: PluginCommand::Check { file, json },
        } => {
            let runtime =
                crate::runtime::Runtime::new(1, crate::runtime::DEFAULT_MEMORY_LIMIT, false)?;
            let info = runtime.inspect(&file)?;
            if json {
                let v = serde_json::json!({
                    "file": file.display().to_string(),
                    "sha256": info.digest,
                    "size": info.size,
                    "imports": info.imports,
                    "exports": info.exports,
                    "ok": info.fits.is_ok(),
                    "error": info.fits.as_ref().err(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", file.display());
                println!("  sha256   {}", info.digest);
                println!("  size     {} bytes", info.size);
                println!("  exports  {}", info.exports.join(", "));
                println!("  imports");
                for import in &info.imports {
                    println!("    {import}");
                }
            }
            match info.fits {
                Ok(()) => {
                    if !json {
                        println!("  ok: fits the ward:plugin/job-plugin world");
                    }
                    Ok(())
                }
                Err(why) => anyhow::bail!(
                    "{} cannot run under Ward: {why}\nWard provides ward:plugin/host, wasi:cli, wasi:io, wasi:clocks, wasi:random, wasi:filesystem, wasi:sockets (all denied) and wasi:http (allow-listed); the plugin must export `handle`",
                    file.display()
                ),
            }
        }
        Command::Dlq { command } => crate::dlq::run(command).await,
        Command::Stats {
            target,
            queues,
            json,
        } => stats(&target, queues, json).await,
        Command::Breakers {
            target,
            queues,
            json,
        } => breakers(&target, queues, json).await,
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            let cfg = Config::load(&config)?;
            let plugins = crate::worker::check(&cfg)?;
            println!("{}: ok", cfg.path.display());
            for (queue, job, path, digest) in plugins {
                println!(
                    "  {queue}/{job}: {} (sha256 {})",
                    path.display(),
                    &digest[..16.min(digest.len())]
                );
            }
            for sc in &cfg.schedules {
                let next = crate::schedule::next_fire(&sc.schedule, chrono::Utc::now())
                    .map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
                println!(
                    "  schedule {}: `{}` -> {}/{} (next fire {next})",
                    sc.name, sc.cron, sc.queue, sc.job
                );
            }
            Ok(())
        }
    }
}

/// One queue's line of `ward stats`.
#[derive(Debug, serde::Serialize)]
struct QueueStats {
    queue: String,
    /// Whether a daemon has ever consumed it (the group `ward` exists).
    consumed: bool,
    ready: u64,
    leased: u64,
    delayed: u64,
    dead: u64,
    /// Age of the oldest entry not yet delivered, ms.
    oldest_ready_ms: Option<u64>,
}

/// The queues a tool looks at: those named, else every [[queue]] of `--config`.
fn queue_names(
    target: &RedisTarget,
    names: Vec<String>,
    tool: &str,
) -> anyhow::Result<Vec<String>> {
    if !names.is_empty() {
        return Ok(names);
    }
    let Some(path) = &target.config else {
        anyhow::bail!(
            "name the queues (`ward {tool} emails reports`) or give --config to take every [[queue]] of it"
        );
    };
    Ok(Config::load(path)?
        .queues
        .into_iter()
        .map(|q| q.name)
        .collect())
}

/// One breaker's line of `ward breakers`.
#[derive(Debug, serde::Serialize)]
struct BreakerLine {
    queue: String,
    upstream: String,
    /// `open` or `closed`.
    state: &'static str,
    /// Failures counted in the current window.
    failures: u32,
    /// For an open breaker: how long it stays open, ms.
    open_for_ms: Option<u64>,
    /// Times it opened (within the life of its Redis hash).
    openings: u32,
}

async fn breakers(target: &RedisTarget, names: Vec<String>, json: bool) -> anyhow::Result<()> {
    let names = queue_names(target, names, "breakers")?;
    let mut lines = Vec::new();
    for name in &names {
        let q = target.queue(name).await?;
        let (now, states) = q
            .breakers()
            .await
            .with_context(|| format!("cannot read the breakers of queue `{name}`"))?;
        for b in states {
            let open = b.open_until_ms > now;
            lines.push(BreakerLine {
                queue: name.clone(),
                upstream: b.upstream,
                state: if open { "open" } else { "closed" },
                failures: b.failures,
                open_for_ms: open.then(|| b.open_until_ms - now),
                openings: b.openings,
            });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if lines.is_empty() {
        println!(
            "no breaker has counted a failure (queues: {})",
            names.join(", ")
        );
        return Ok(());
    }
    println!(
        "{:<16} {:<20} {:<7} {:>8} {:>8}  open for",
        "queue", "upstream", "state", "failures", "openings"
    );
    for l in &lines {
        let left = l.open_for_ms.map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        println!(
            "{:<16} {:<20} {:<7} {:>8} {:>8}  {left}",
            l.queue, l.upstream, l.state, l.failures, l.openings
        );
    }
    Ok(())
}

async fn stats(target: &RedisTarget, names: Vec<String>, json: bool) -> anyhow::Result<()> {
    let names = queue_names(target, names, "stats")?;
    let mut rows = Vec::with_capacity(names.len());
    for name in &names {
        let q = target.queue(name).await?;
        let s = q
            .sample()
            .await
            .with_context(|| format!("cannot read queue `{name}`"))?;
        rows.push(QueueStats {
            queue: name.clone(),
            consumed: s.group_exists,
            ready: s.ready,
            leased: s.pending,
            delayed: s.delayed,
            dead: s.dead,
            oldest_ready_ms: s.oldest_ready_ms.map(|t| s.now_ms.saturating_sub(t)),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let width = rows.iter().map(|r| r.queue.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  oldest ready",
        "queue", "ready", "leased", "delayed", "dead"
    );
    for r in &rows {
        let age = match (r.consumed, r.oldest_ready_ms) {
            (false, _) => "(no daemon has consumed it yet)".to_string(),
            (true, Some(ms)) => format!("{:.1} s", ms as f64 / 1000.0),
            (true, None) => "-".to_string(),
        };
        println!(
            "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  {age}",
            r.queue, r.ready, r.leased, r.delayed, r.dead
        );
    }
    Ok(())
}

fn parse_delay(s: &str) -> Result<std::time::Duration, String> {
    config::parse_duration(s)
}

fn parse_at(s: &str) -> Result<u64, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("`{s}` is not an RFC 3339 time ({e}); write it like 2026-11-22T03:00:00Z")
    })?;
    u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{s}` is before 1970"))
}

/// Unix ms as an RFC 3339 time (UTC, ms precision).
pub(crate) fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

fn print_status(s: &queue::JobStatus) {
    let ts = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), format_ms);
    println!("job       {}", s.id);
    println!("queue     {}", s.queue);
    println!("type      {}", s.job.as_deref().unwrap_or("-"));
    println!("state     {}", s.state);
    println!("attempts  {}", s.attempts);
    println!("first     {}", ts(s.first_attempt_at_ms));
    println!("last      {}", ts(s.last_attempt_at_ms));
    if let Some(reason) = &s.dead_reason {
        println!("reason    {reason}");
    }
    if let Some(e) = &s.last_error {
        let code = e
            .code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        println!("error     {}{code}: {}", e.class, e.message);
    }
    if let Some(due) = s.due_at_ms {
        println!("due       {}", format_ms(due));
    }
    if let Some(d) = &s.plugin_digest {
        println!("plugin    sha256:{d}");
    }
    print_history(&s.history);
}

/// A job's history lines (attempts and operator events), one per line.
pub(crate) fn print_history(history: &[serde_json::Value]) {
    let ts = |ms: Option<u64>| ms.map_or_else(|| "-".to_string(), format_ms);
    if !history.is_empty() {
        println!("history");
        for h in history {
            let field = |k: &str| {
                h.get(k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            };
            if let Some(event) = field("event") {
                // An operator's or retention's event: requeued, discarded, trimmed.
                let at = h.get("at").and_then(serde_json::Value::as_u64);
                let mut line = format!("  {} {event}", ts(at));
                if let Some(by) = field("by") {
                    line.push_str(&format!(" by {by}"));
                }
                if let Some(why) = field("why") {
                    line.push_str(&format!(" ({why})"));
                }
                if let Some(note) = field("note") {
                    line.push_str(&format!(": {note}"));
                }
                println!("{line}");
                continue;
            }
            let started = h.get("started_at").and_then(serde_json::Value::as_u64);
            let finished = h.get("finished_at").and_then(serde_json::Value::as_u64);
            let took = match (started, finished) {
                (Some(a), Some(b)) => format!(" in {} ms", b.saturating_sub(a)),
                _ => String::new(),
            };
            let mut line = format!(
                "  #{} {} {}{took}",
                field("attempt").unwrap_or_default(),
                ts(started.or(finished)),
                field("class").unwrap_or_default(),
            );
            if let Some(code) = field("code") {
                line.push_str(&format!(" [{code}]"));
            }
            if let Some(m) = field("message") {
                line.push_str(&format!(": {m}"));
            }
            match field("then").as_deref() {
                Some("retry") => line.push_str(&format!(
                    " → retry in {} ms",
                    field("delay_ms").unwrap_or_default()
                )),
                Some("dead") => line.push_str(&format!(
                    " → dead ({})",
                    field("reason").unwrap_or_default()
                )),
                _ => {}
            }
            println!("{line}");
        }
    }
}

/// Resolves on SIGINT or SIGTERM (systemd's stop). SIGHUP, which would
/// otherwise end the process on the spot, is logged and ignored: Ward does
/// not reload its config in place; restart it to apply a new one.
async fn shutdown_signal() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::warn!(
                    "SIGHUP ignored: Ward does not reload its config in place; restart it (systemctl restart ward) to apply a new one"
                );
            }
        });
    }
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
