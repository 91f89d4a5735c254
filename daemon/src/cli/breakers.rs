//! `ward breakers`: each queue's circuit breakers.

use anyhow::Context as _;
use clap::Args;

use super::target::QueuesArgs;

/// `ward breakers`
#[derive(Debug, Args)]
pub(crate) struct BreakersArgs {
    #[command(flatten)]
    on: QueuesArgs,
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

impl BreakersArgs {
    /// Reads each queue's breakers and prints a table (or JSON).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let names = self.on.names("breakers")?;
        let mut lines = Vec::new();
        for name in &names {
            let q = self.on.target.queue(name).await?;
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
        if self.on.json {
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
        print_table(&lines);
        Ok(())
    }
}

fn print_table(lines: &[BreakerLine]) {
    println!(
        "{:<16} {:<20} {:<7} {:>8} {:>8}  open for",
        "queue", "upstream", "state", "failures", "openings"
    );
    for l in lines {
        let left = l.open_for_ms.map_or_else(
            || "-".to_string(),
            |ms| format!("{:.1} s", ms as f64 / 1000.0),
        );
        println!(
            "{:<16} {:<20} {:<7} {:>8} {:>8}  {left}",
            l.queue, l.upstream, l.state, l.failures, l.openings
        );
    }
}
