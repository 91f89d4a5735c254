//! The `upstream` scenario: does flow control cost throughput? No-op jobs
//! whose job type names an upstream with a generous `[[upstream]]` limit (a
//! rate and a concurrency cap far above what the run reaches, so every
//! batch is admitted through the script, never held back) against the same
//! jobs of a job type naming none, on the same daemon config. Target: within
//! 20%.

use std::path::Path;

use ward_testkit::job_table;

use super::{Bench, Mix, drain_run, print_run};

/// The job type naming the limited upstream.
pub(super) const JOB: &str = "limited";

/// The `[[job]]` of [`JOB`] (running `noop`) and its `[[upstream]]`: a rate
/// of a million per second with a bucket as large, and every slot of the
/// largest queue concurrency, so the limit never holds a job back.
pub(super) fn job_type(noop: &Path) -> String {
    job_table(JOB, "bench", noop, "upstreams = [\"api\"]")
        + "\n[[upstream]]\nname = \"api\"\nrate = 1000000\nburst = 1000000\nconcurrency = 4096\n"
}

/// Runs both, alternately (`--runs` times each), and prints the medians and
/// their ratio.
pub(super) fn compare(bench: &Bench) -> anyhow::Result<()> {
    let (mut plain, mut limited) = (Vec::new(), Vec::new());
    for _ in 0..bench.args.runs.max(1) {
        plain.push(drain_run(
            bench,
            "throughput: no-op jobs naming no upstream",
            Mix::Plain,
        )?);
        limited.push(drain_run(
            bench,
            "throughput: no-op jobs naming an upstream with a generous [[upstream]] limit (rate + concurrency)",
            Mix::Upstream,
        )?);
    }
    for runs in [&mut plain, &mut limited] {
        runs.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    }
    let (p, l) = (&plain[plain.len() / 2], &limited[limited.len() / 2]);
    print_run(p);
    print_run(l);
    println!(
        "## upstream limit vs. none: {:.0} vs. {:.0} jobs/s, ratio {:.2} (target: at least 0.80)",
        l.throughput,
        p.throughput,
        l.throughput / p.throughput
    );
    Ok(())
}
