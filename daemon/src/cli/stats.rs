//! `ward stats`: how many jobs each queue holds, by state.

use anyhow::Context as _;
use clap::Args;

use super::target::QueuesArgs;
use crate::control::pause::{self, PauseView};
use crate::store::WHOLE_QUEUE;
use crate::text::format_ms;

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
    /// Jobs held back while their job type or the queue is paused.
    held: u64,
    /// The queue's pauses (`target` `*`: the whole queue), each with the
    /// jobs it holds.
    paused: Vec<PauseView>,
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
            let paused = pause::status(&q)
                .await
                .with_context(|| format!("cannot read the pauses of queue `{name}`"))?;
            rows.push(QueueStats {
                queue: name.clone(),
                consumed: s.group_exists,
                ready: s.ready,
                leased: s.pending,
                delayed: s.delayed,
                dead: s.dead,
                oldest_ready_ms: s.oldest_ready_ms.map(|t| s.now_ms.saturating_sub(t)),
                held: paused.held.total,
                paused: paused.pauses,
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
        for p in &r.paused {
            println!("  {}", pause_line(p));
        }
        if r.held > 0 {
            println!("  {} job(s) held while paused", r.held);
        }
    }
}

/// One pause as a line: what, by whom, since and until when, why, and how
/// many jobs it holds.
fn pause_line(p: &PauseView) -> String {
    let what = if p.target == WHOLE_QUEUE {
        "paused (whole queue)".to_string()
    } else {
        format!("paused job type `{}`", p.target)
    };
    let until = match p.pause.until_ms {
        None => String::new(),
        Some(u) if p.expired => format!(", until {} (over; resuming)", format_ms(u)),
        Some(u) => format!(", until {}", format_ms(u)),
    };
    format!(
        "{what} by {} since {}{until}: {} ({} held)",
        p.pause.by,
        format_ms(p.pause.at_ms),
        p.pause.note,
        p.held
    )
}
