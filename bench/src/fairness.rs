//! The `fairness` scenario: how long tenant B's one job waits behind
//! `--jobs` (at most 100,000) jobs of tenant A, on a job type grouped by
//! `tenant` with `group_concurrency = 2` and 1 s attempts (so A's backlog
//! never runs meanwhile in any number that matters). Twice:
//!
//! - plain `XADD`s, queued before the daemon starts: B waits for the
//!   daemon's pass over A's backlog (each job read and parked once); the
//!   figure is that pass's rate, parked jobs a second;
//! - `ward_enqueue` calls with the daemon running: A's jobs past its cap are
//!   parked at enqueue, so B's wait should not depend on A's backlog.

use std::time::Instant;

use anyhow::Context as _;
use ward_testkit::{Config, METRICS_ANY_PORT, Ward, job_table, xadd_pipe};

use super::{Bench, READY, STREAM, stop};

/// Each of A's attempts: long enough that its backlog does not move.
const PAYLOAD: &str = r#"{"times":0,"sleep_ms":1000}"#;

/// A daemon on queue `bench` whose job type `grouped` (the `flaky` plugin)
/// runs at most two attempts of one tenant at once.
fn daemon(bench: &Bench) -> anyhow::Result<Ward> {
    let flaky = bench.plugins.join("flaky.wasm");
    let config = Config::new(&bench.redis.url)
        .top(METRICS_ANY_PORT)
        .queue(
            "bench",
            &format!("concurrency = {}", bench.args.concurrency),
        )
        .jobs(&job_table(
            "grouped",
            "bench",
            &flaky,
            "group_by = \"tenant\"\ngroup_concurrency = 2",
        ))
        .render();
    let ward = Ward::try_start(&bench.ward, &config, &[("RUST_LOG", "warn")])?;
    Ok(ward.try_ready(READY)?)
}

/// The Redis clock, Unix ms.
fn server_ms(con: &mut redis::Connection) -> anyhow::Result<u64> {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(con)?;
    Ok(s * 1000 + us / 1000)
}

/// Waits until job `id` has started; its `first_at` (Unix ms).
fn started(con: &mut redis::Connection, id: &str) -> anyhow::Result<u64> {
    let deadline = Instant::now() + READY;
    loop {
        let first: Option<u64> = redis::cmd("HGET")
            .arg(format!("ward:{{bench}}:job:{id}"))
            .arg("first_at")
            .query(con)?;
        if let Some(t) = first {
            return Ok(t);
        }
        anyhow::ensure!(Instant::now() < deadline, "job {id} did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// One `FCALL ward_enqueue` of tenant `tenant`'s job into `pipe`.
fn fcall(pipe: &mut redis::Pipeline, tenant: &str) {
    pipe.cmd("FCALL")
        .arg("ward_enqueue")
        .arg(1)
        .arg(STREAM)
        .arg("grouped")
        .arg(PAYLOAD);
    for _ in 0..6 {
        pipe.arg("");
    }
    pipe.arg("tenant").arg(tenant);
}

/// Runs both and prints the figures.
pub(super) fn run(bench: &Bench) -> anyhow::Result<()> {
    let n = bench.args.jobs.min(100_000);
    let mut con = bench.redis.con()?;

    // Plain XADDs, queued before the daemon starts.
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            xadd_pipe(
                &mut pipe,
                STREAM,
                &[("job", "grouped"), ("payload", PAYLOAD), ("tenant", "A")],
            );
        }
        let _: Vec<String> = pipe.query(&mut con)?;
    }
    let b: String = redis::cmd("XADD")
        .arg(STREAM)
        .arg("*")
        .arg("job")
        .arg("grouped")
        .arg("payload")
        .arg("{}")
        .arg("tenant")
        .arg("B")
        .query(&mut con)?;
    let d = daemon(bench)?;
    let ready = server_ms(&mut con)?;
    let waited = started(&mut con, &b)?.saturating_sub(ready);
    stop(vec![d]);
    println!(
        "## fairness: tenant B's job behind {n} plain XADDs of tenant A (group_concurrency = 2)"
    );
    println!(
        "  B started             {waited} ms after the daemon was ready ({:.0} of A's jobs parked a second)",
        n as f64 * 1000.0 / waited.max(1) as f64
    );

    // Through ward_enqueue, the daemon running.
    let _: () = redis::cmd("FLUSHALL").query(&mut con)?;
    let d = daemon(bench)?;
    let t = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            fcall(&mut pipe, "A");
        }
        let _: Vec<(String, String, u64)> = pipe.query(&mut con)?;
    }
    let enqueue = t.elapsed().as_secs_f64();
    let at = server_ms(&mut con)?;
    let mut pipe = redis::pipe();
    fcall(&mut pipe, "B");
    let (b, _, _): (String, String, u64) = pipe
        .query::<Vec<(String, String, u64)>>(&mut con)?
        .pop()
        .context("no reply")?;
    let waited = started(&mut con, &b)?.saturating_sub(at);
    stop(vec![d]);
    println!(
        "## fairness: tenant B's job behind {n} ward_enqueue calls of tenant A (group_concurrency = 2)"
    );
    println!(
        "  enqueue rate          {:.0} ward_enqueue calls/s (pipelines of 1000; A's jobs past its cap parked)",
        n as f64 / enqueue
    );
    println!("  B started             {waited} ms after its enqueue");
    Ok(())
}
