//! The `http` scenario: real outbound work. Webhook jobs (the `webhook`
//! example plugin) POST to a local HTTP/1.1 receiver that answers each
//! request after a fixed delay and keeps connections alive, as real servers
//! do. With `concurrency` attempts in flight and a delay `d`, no sender can
//! beat `concurrency / d` jobs/s; the run reports its throughput against
//! that ideal, and how many TCP connections the receiver accepted (pooled
//! connections: about `concurrency`; a connection per request: one per
//! job). It also reports the run's middle alone (see [`crate::steady`]):
//! its rate, the attempts in flight and how long each took, which say
//! where the rest of the ideal went.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use ward_testkit::{Config, METRICS_ANY_PORT, job_table};

use crate::receiver::Receiver;
use crate::steady;

use super::{Bench, all_succeeded, cpu_seconds, fill, records, stop, usage, wait_drained};

/// Runs the scenario once and prints what it measured.
#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
pub(super) fn run(bench: &Bench) -> anyhow::Result<()> {
    let args = &bench.args;
    let delay = Duration::from_millis(args.http_delay_ms);
    let n = args.http_jobs;
    let stub = Receiver::keep_alive(args.http_receiver, delay);
    let plugin = bench.plugins.join("webhook.wasm");
    anyhow::ensure!(
        plugin.exists(),
        "{} is missing: build it with scripts/build-plugins",
        plugin.display()
    );
    let mut http = format!(
        "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"30s\" }}",
        stub.port()
    );
    if args.http_reuse > 1 {
        http.push_str(&format!("\nreuse_instance = {}", args.http_reuse));
    }
    let config = Config::new(&bench.redis.url)
        .top(METRICS_ANY_PORT)
        .queue(
            "bench",
            &format!(
                "concurrency = {}\nsucceeded_ttl = \"24h\"",
                args.concurrency
            ),
        )
        .jobs(&job_table("hook", "bench", &plugin, &http))
        .render();
    let (mut con, ids) = fill_webhooks(bench, n, "http", stub.port())?;
    let wall = Instant::now();
    let ward = bench.start(&config)?;
    // The receiver runs in this process, on the same cores as the daemon
    // and Redis: what it costs is printed, as it is not Ward's.
    let own_before = cpu_seconds(std::process::id());
    wait_drained(&mut con, Duration::from_secs(600)).context("webhook jobs did not drain")?;
    let own = cpu_seconds(std::process::id()) - own_before;
    let wall = wall.elapsed().as_secs_f64();
    let (cpu, rss) = usage(&ward);
    stop(vec![ward]);
    let rows = records(&mut con, &ids)?;
    all_succeeded(&rows, "http")?;
    let first = rows.iter().map(|r| r.first).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.last).max().unwrap_or(0);
    let span = last.saturating_sub(first).max(1) as f64 / 1000.0;
    let throughput = n as f64 / span;
    let ideal = f64::from(args.concurrency) / delay.as_secs_f64();
    let instances = if args.http_reuse > 1 {
        format!("reuse_instance = {}", args.http_reuse)
    } else {
        "a fresh instance per attempt".to_string()
    };
    println!(
        "## http: webhook jobs POSTing to a local keep-alive receiver ({}) answering after {} ms, concurrency {}, {instances}",
        stub.describe(),
        args.http_delay_ms,
        args.concurrency
    );
    println!("  jobs                  {n}");
    println!(
        "  throughput            {throughput:.0} jobs/s (first start to last end), ideal {ideal:.0} (concurrency / delay): {:.0}%",
        100.0 * throughput / ideal
    );
    let attempts: Vec<(u64, u64)> = rows.iter().map(|r| (r.first, r.last)).collect();
    if let Some(s) = steady::steady(&attempts) {
        let concurrency = f64::from(args.concurrency);
        println!(
            "  steady state          {:.0} jobs/s in the middle {:.0}% of the span ({:.0}% of ideal): {:.0} attempts in flight on average ({:.0}% of concurrency), each {:.1} ms against the receiver's {} ms",
            s.rate,
            100.0 * (1.0 - 2.0 * s.cut),
            100.0 * s.rate / ideal,
            s.in_flight,
            100.0 * s.in_flight / concurrency,
            s.attempt_ms,
            args.http_delay_ms
        );
    }
    println!(
        "  connections accepted  {} ({:.2} x concurrency); most requests open at once {}",
        stub.connections(),
        stub.connections() as f64 / f64::from(args.concurrency),
        stub.max_open()
    );
    println!("  requests received     {}", stub.requests());
    println!(
        "  daemon CPU            {cpu:.1} s; peak RSS {} MiB; wall {wall:.1} s",
        rss / 1024
    );
    println!(
        "  receiver CPU          {own:.1} s (this process: the receiver, and polling Redis for the drain)"
    );
    Ok(())
}

/// Empties Redis, then enqueues `n` jobs of type `hook` that POST to the
/// receiver on `port`; a connection to Redis and the job ids.
pub(super) fn fill_webhooks(
    bench: &Bench,
    n: usize,
    scheme: &str,
    port: u16,
) -> anyhow::Result<(redis::Connection, Vec<String>)> {
    let mut con = bench.redis.con()?;
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let body = format!(r#"{{"url":"{scheme}://127.0.0.1:{port}/hook","body":{{}}}}"#);
    let (ids, _) = fill(&mut con, n, |_| ("hook".into(), body.clone()), false)?;
    Ok((con, ids))
}
