//! `ward breakers`: each queue's circuit breakers; `ward breakers open|close`
//! overrides one.

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::target::{QueueTarget, QueuesArgs};
use crate::control::Actor;
use crate::control::breakers::{self, BreakerLine, Override};
use crate::text::format_ms;

/// `ward breakers`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BreakersArgs {
    #[command(subcommand)]
    action: Option<BreakerAction>,
    #[command(flatten)]
    on: QueuesArgs,
}

/// `ward breakers open|close`
#[derive(Debug, Subcommand)]
enum BreakerAction {
    /// Force an upstream's breaker open: its jobs wait (no attempt spent)
    /// until the time is up, then it is half open as after any opening.
    Open {
        #[command(flatten)]
        on: QueueTarget,
        /// The upstream.
        upstream: String,
        /// How long (`30s`, `10m`, `2h`).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        open_for: std::time::Duration,
        #[command(flatten)]
        why: Why,
    },
    /// Force an upstream's breaker closed, forgetting the failures it counted.
    Close {
        #[command(flatten)]
        on: QueueTarget,
        /// The upstream.
        upstream: String,
        #[command(flatten)]
        why: Why,
    },
}

/// Who acts and why, for the audit trail.
#[derive(Debug, Args)]
struct Why {
    /// Why, for the audit trail.
    #[arg(long)]
    note: String,
    /// Who (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

impl BreakersArgs {
    /// Lists the breakers, or overrides one.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        match self.action {
            Some(action) => action.exec().await,
            None => list(&self.on).await,
        }
    }
}

impl BreakerAction {
    async fn exec(self) -> anyhow::Result<()> {
        let (on, upstream, how, why) = match self {
            BreakerAction::Open {
                on,
                upstream,
                open_for,
                why,
            } => (on, upstream, Override::Open(open_for), why),
            BreakerAction::Close { on, upstream, why } => (on, upstream, Override::Close, why),
        };
        let q = on.connect().await?;
        let actor = Actor::cli(why.by.as_deref());
        let forced = breakers::force(&q, &actor, &upstream, how, &why.note).await?;
        let queue = &on.queue;
        match forced.open_until_ms {
            Some(until) => println!(
                "breaker of upstream `{upstream}` in queue `{queue}` is open until {}",
                format_ms(until)
            ),
            None if forced.was_open => {
                println!("breaker of upstream `{upstream}` in queue `{queue}` is closed");
            }
            None => println!(
                "breaker of upstream `{upstream}` in queue `{queue}` was not open; its failures are forgotten"
            ),
        }
        Ok(())
    }
}

async fn list(on: &QueuesArgs) -> anyhow::Result<()> {
    let names = on.names("breakers")?;
    let mut lines = Vec::new();
    for name in &names {
        let q = on.target.queue(name).await?;
        lines.extend(
            breakers::list(&q)
                .await
                .with_context(|| format!("cannot read the breakers of queue `{name}`"))?,
        );
    }
    if on.json {
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
