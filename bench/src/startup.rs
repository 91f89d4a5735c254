//! The `startup` scenario: how long `ward run` takes to be ready with the
//! Python and JavaScript example plugins (the slowest to compile: each
//! carries an interpreter), first with an empty compile cache, then again
//! with the cache the first start filled. Ready is the daemon's `ward is
//! running` line (what systemd's READY=1 follows), timed from the spawn;
//! the per-plugin compile times and the cache hits come from the daemon's
//! own `plugin compiled` and `plugins loaded` lines.

use std::time::Instant;

use anyhow::Context as _;
use ward_testkit::{Config, METRICS_ANY_PORT, job_table};

use super::Bench;

/// One start: seconds to ready, and the daemon's `plugins loaded` line.
fn start(bench: &Bench, cache: &std::path::Path) -> anyhow::Result<(f64, serde_json::Value)> {
    let plugin = |name: &str| bench.plugins.join(format!("{name}.wasm"));
    for p in ["python-example", "js-example"] {
        anyhow::ensure!(
            plugin(p).exists(),
            "{} is missing: build it with scripts/build-lang-plugins",
            plugin(p).display()
        );
    }
    let jobs = job_table("py", "bench", &plugin("python-example"), "")
        + &job_table("js", "bench", &plugin("js-example"), "");
    let config = Config::new(&bench.redis.url)
        .top(&format!(
            "{METRICS_ANY_PORT}[daemon]\ncompile_cache = \"{}\"\n\n",
            cache.display()
        ))
        .queue("bench", "concurrency = 8")
        .jobs(&jobs)
        .render();
    let t0 = Instant::now();
    let ward = bench.start(&config)?;
    let ready = t0.elapsed().as_secs_f64();
    let loaded = ward
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == "plugins loaded")
        .context("the daemon logged no `plugins loaded` line")?;
    let _ = ward.try_stop(super::STOP);
    Ok((ready, loaded))
}

/// A cold start (empty cache) then a warm one, each printed.
pub(super) fn run(bench: &Bench) -> anyhow::Result<()> {
    let cache = std::env::temp_dir().join(format!("ward-bench-cache.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    println!(
        "## startup: `ward run` with the Python and JavaScript example plugins, spawn to `ward is running` (READY=1)"
    );
    for label in [
        "first start (empty compile cache)",
        "second start (cache filled by the first)",
    ] {
        let (ready, loaded) = start(bench, &cache)?;
        println!(
            "  {label:<42} ready in {ready:.2} s; plugins loaded: {} ({} from the cache) in {} ms",
            loaded["plugins"], loaded["from_cache"], loaded["took_ms"]
        );
    }
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
