//! The `python` and `js` scenarios: the componentize-py and componentize-js
//! examples (`python-example.wasm`, `js-example.wasm`, built by
//! `scripts/build-lang-plugins`) draining pre-filled jobs, once with a
//! fresh instance per attempt (the default) and once with
//! `reuse_instance = --reuse` attempts per instance.
//!
//! Per run: throughput (first attempt start to last end, from the job
//! records), the mean time to get an instance and the mean attempt
//! (instantiate + `handle`) from the daemon's own histograms
//! (`ward_plugin_instantiate_seconds`, `ward_job_duration_seconds`,
//! scraped from its metrics endpoint before it stops), daemon CPU per job
//! and peak RSS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;
use ward_testkit::{Config, free_port, job_table};

use super::{Bench, all_succeeded, fill, records, stop, usage, wait_drained};

/// The example plugins' happy path: a record to validate and normalise.
const PAYLOAD: &str = r#"{"email":"Ada@Example.com","name":" Ada ","simulate":"none"}"#;

/// Runs the scenario for `lang` (`python` or `js`) and prints its figures.
pub(super) fn run(bench: &Bench, lang: &str) -> anyhow::Result<()> {
    let plugin = bench.plugins.join(format!("{lang}-example.wasm"));
    anyhow::ensure!(
        plugin.exists(),
        "{} is missing: build it with scripts/build-lang-plugins",
        plugin.display()
    );
    let args = &bench.args;
    println!(
        "## {lang}: the {lang} example plugin, {} jobs pre-filled, concurrency {}",
        args.lang_jobs, args.concurrency
    );
    for reuse in [1, args.reuse] {
        let label = if reuse > 1 {
            format!("reuse_instance = {reuse}")
        } else {
            "fresh instance per attempt".to_string()
        };
        let mut runs = Vec::new();
        for _ in 0..args.runs.max(1) {
            runs.push(one(bench, &plugin, reuse)?);
        }
        runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
        let m = &runs[runs.len() / 2];
        println!(
            "  {label:<28} {:>7.0} jobs/s (min {:.0}, max {:.0}); instance {:.1} µs, attempt {:.1} µs (means); daemon {:.1} µs CPU/job, {:.0} page faults/job; peak RSS {} MiB",
            m.throughput,
            runs[0].throughput,
            runs[runs.len() - 1].throughput,
            m.instantiate_us,
            m.attempt_us,
            m.cpu_per_job_us,
            m.faults_per_job,
            m.rss_kib / 1024
        );
    }
    Ok(())
}

/// What one run measured.
struct LangRun {
    throughput: f64,
    instantiate_us: f64,
    attempt_us: f64,
    cpu_per_job_us: f64,
    faults_per_job: f64,
    rss_kib: u64,
}

/// Minor page faults of a process so far (`/proc/PID/stat` field 10):
/// pages an instance touched for the first time, copy-on-write included.
fn minor_faults(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    after
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
fn one(bench: &Bench, plugin: &std::path::Path, reuse: u32) -> anyhow::Result<LangRun> {
    let args = &bench.args;
    let n = args.lang_jobs;
    let port = free_port();
    let threads = args
        .threads
        .map_or_else(String::new, |t| format!("[daemon]\nthreads = {t}\n\n"));
    let config = Config::new(&bench.redis.url)
        .top(&format!(
            "{threads}[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
        ))
        .queue(
            "bench",
            &format!(
                "concurrency = {}\nsucceeded_ttl = \"24h\"",
                args.concurrency
            ),
        )
        .jobs(&job_table(
            "lang",
            "bench",
            plugin,
            &format!("reuse_instance = {reuse}"),
        ))
        .render();
    let mut con = bench.redis.con()?;
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let (ids, _) = fill(&mut con, n, |_| ("lang".into(), PAYLOAD.into()), false)?;
    let ward = bench.start(&config)?;
    // Loading the plugin faults in pages too; count only what follows.
    let faults_at_ready = minor_faults(ward.pid());
    wait_drained(&mut con, Duration::from_secs(900)).context("jobs did not drain")?;
    // The last completions may still be on their way to the histograms.
    std::thread::sleep(Duration::from_millis(200));
    let metrics = scrape(port).unwrap_or_default();
    let (cpu, rss_kib) = usage(&ward);
    let faults = minor_faults(ward.pid()).saturating_sub(faults_at_ready);
    stop(vec![ward]);
    let rows = records(&mut con, &ids)?;
    all_succeeded(&rows, "lang")?;
    let first = rows.iter().map(|r| r.first).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.last).max().unwrap_or(0);
    let span = last.saturating_sub(first).max(1) as f64 / 1000.0;
    Ok(LangRun {
        throughput: n as f64 / span,
        instantiate_us: mean(&metrics, "ward_plugin_instantiate_seconds") * 1e6,
        attempt_us: mean(&metrics, "ward_job_duration_seconds") * 1e6,
        cpu_per_job_us: cpu / n as f64 * 1e6,
        faults_per_job: faults as f64 / n as f64,
        rss_kib,
    })
}

/// The daemon's Prometheus text, fetched with a bare HTTP/1.0 GET.
fn scrape(port: u16) -> std::io::Result<String> {
    let mut sock = TcpStream::connect(("127.0.0.1", port))?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.write_all(b"GET /metrics HTTP/1.0\r\nhost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    sock.read_to_string(&mut text)?;
    Ok(text)
}

/// Sum over count of a histogram or summary, over all its label sets.
fn mean(metrics: &str, name: &str) -> f64 {
    let total = |suffix: &str| -> f64 {
        let prefix = format!("{name}_{suffix}");
        metrics
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let count = total("count");
    if count > 0.0 {
        total("sum") / count
    } else {
        0.0
    }
}
