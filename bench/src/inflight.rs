//! The `inflight` scenario: how many I/O-bound attempts one daemon holds
//! at once, and what that costs in memory. `--inflight` webhook jobs (the
//! `webhook` example plugin) POST to a local keep-alive receiver that
//! answers each request only after `--inflight-hold-ms`; the queue's
//! concurrency is `--inflight`, so every job can be in flight at once.
//!
//! Reports the most requests the receiver held open at once (the attempts
//! really in flight together, counted where they arrive), the connections
//! it accepted, the daemon's peak RSS (`VmHWM`), its peak PSS (sampled:
//! the memory really in use, counting the plugin's shared memory image
//! once), its virtual size (`VmPeak`: the instance pool's reservation),
//! its memory mappings, what it still holds a few seconds after the last
//! job (`--inflight-idle-s`), and that every job succeeded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ward_testkit::{Config, HttpsStub, METRICS_ANY_PORT, job_table, proc_kib, proc_status_kib};

use super::{Bench, all_succeeded, records, stop, usage, wait_drained};
use crate::receiver::Receiver;

/// Runs the scenario once and prints what it measured.
#[allow(clippy::cast_precision_loss, reason = "job counts far below 2^52")]
pub(super) fn run(bench: &Bench) -> anyhow::Result<()> {
    let args = &bench.args;
    let n = args.inflight;
    let hold = Duration::from_millis(args.inflight_hold_ms);
    let stub = if args.inflight_h2 {
        Receiver::Tokio(match args.inflight_h2_streams {
            0 => HttpsStub::holding(hold),
            max => HttpsStub::limited(hold, max),
        })
    } else {
        Receiver::keep_alive(args.http_receiver, hold)
    };
    let plugin = bench.plugins.join("webhook.wasm");
    anyhow::ensure!(
        plugin.exists(),
        "{} is missing: build it with scripts/build-plugins",
        plugin.display()
    );
    let tls = match &stub {
        Receiver::Tokio(s) if args.inflight_h2 => {
            format!(", ca_file = \"{}\", http2 = true", s.ca_file.display())
        }
        _ => String::new(),
    };
    let http = format!(
        "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"120s\"{tls} }}\ntimeout = \"300s\"",
        stub.port()
    );
    let threads = args
        .threads
        .map_or_else(String::new, |t| format!("[daemon]\nthreads = {t}\n\n"));
    let config = Config::new(&bench.redis.url)
        .top(&format!("{threads}{METRICS_ANY_PORT}"))
        .queue(
            "bench",
            &format!("concurrency = {n}\nsucceeded_ttl = \"24h\""),
        )
        .jobs(&job_table("hook", "bench", &plugin, &http))
        .render();
    let scheme = if args.inflight_h2 { "https" } else { "http" };
    let (mut con, ids) = super::http::fill_webhooks(bench, n, scheme, stub.port())?;
    let ward = bench.start(&config)?;
    let started = Instant::now();
    let done = AtomicBool::new(false);
    let pid = ward.pid();
    // RSS counts the plugin's memory image once per slot that maps it,
    // though all slots share its pages; PSS divides shared pages among
    // their mappers, so its peak is the memory really in use. The kernel
    // keeps no peak PSS: sample it.
    let (drained, peak_pss) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(proc_kib(pid, "smaps_rollup", "Pss").unwrap_or(0));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        });
        let drained = wait_drained(&mut con, Duration::from_secs(900));
        done.store(true, Ordering::Relaxed);
        (drained, sampler.join().unwrap_or(0))
    });
    drained.context("webhook jobs did not drain")?;
    let wall = started.elapsed().as_secs_f64();
    let (cpu, rss) = usage(&ward);
    let vm_peak = proc_status_kib(ward.pid(), "VmPeak").unwrap_or(0);
    // Used slots keep their mappings, so the count now is the peak's.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", ward.pid()))
        .map_or(0, |m| m.lines().count());
    // What the burst leaves behind in a daemon that goes on idling.
    std::thread::sleep(Duration::from_secs(args.inflight_idle_s));
    let rss_after = proc_status_kib(pid, "VmRSS").unwrap_or(0);
    let pss_after = proc_kib(pid, "smaps_rollup", "Pss").unwrap_or(0);
    stop(vec![ward]);
    let rows = records(&mut con, &ids)?;
    if let Some((id, _)) = ids.iter().zip(&rows).find(|(_, r)| r.state != "succeeded") {
        // Say why, from the first job that did not succeed.
        let (code, message): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(format!("ward:{{bench}}:job:{id}"))
            .arg("last_code")
            .arg("last_message")
            .query(&mut con)?;
        eprintln!("inflight: job {id} did not succeed: {code:?} {message:?}");
    }
    all_succeeded(&rows, "inflight")?;
    let first = rows.iter().map(|r| r.first).min().unwrap_or(0);
    let last_start = rows.iter().map(|r| r.first).max().unwrap_or(0);
    println!(
        "## inflight: {n} webhook jobs, concurrency {n}, {} receiver ({}) answers after {} ms",
        match (args.inflight_h2, args.inflight_h2_streams) {
            (false, _) => "HTTP/1.1".to_string(),
            (true, 0) => "HTTPS HTTP/2 (http2 = true)".to_string(),
            (true, max) => format!("HTTPS HTTP/2 (http2 = true, {max} streams per connection)"),
        },
        stub.describe(),
        args.inflight_hold_ms
    );
    println!(
        "  peak in flight        {} requests held open at once at the receiver ({:.1}% of {n})",
        stub.max_open(),
        100.0 * stub.max_open() as f64 / n as f64
    );
    println!(
        "  starts spread         {} ms from the first attempt's start to the last's",
        last_start.saturating_sub(first)
    );
    println!(
        "  requests answered     {} (one per job expected)",
        stub.requests()
    );
    println!("  connections accepted  {}", stub.connections());
    println!("  memory mappings       {maps} after the run (vm.max_map_count bounds them)");
    println!(
        "  daemon                peak RSS {} MiB; peak PSS {} MiB (sampled every 200 ms); peak virtual size {} GiB; {cpu:.1} s CPU; wall {wall:.1} s",
        rss / 1024,
        peak_pss / 1024,
        vm_peak >> 20
    );
    println!(
        "  after the burst       RSS {} MiB, PSS {} MiB, {} s after the last job (idle)",
        rss_after / 1024,
        pss_after / 1024,
        args.inflight_idle_s
    );
    Ok(())
}
