//! `ward stats`: how many jobs each queue holds, by state.

use anyhow::Context as _;
use clap::Args;

use super::target::QueuesArgs;

/// `ward stats`
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    #[command(flatten)]
    on: QueuesArgs,
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

impl StatsArgs {
    /// Samples each queue and prints a table (or JSON).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let names = self.on.names("stats")?;
        let mut rows = Vec::with_capacity(names.len());
        for name in &names {
            let q = self.on.target.queue(name).await?;
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
        if self.on.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(());
        }
        print_table(&rows);
        Ok(())
    }
}

fn print_table(rows: &[QueueStats]) {
    let width = rows.iter().map(|r| r.queue.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<width$}  {:>9}  {:>9}  {:>9}  {:>9}  oldest ready",
        "queue", "ready", "leased", "delayed", "dead"
    );
    for r in rows {
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
}
