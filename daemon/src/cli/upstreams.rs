//! `ward upstreams`: each queue's upstreams: limits, tokens, attempts in
//! flight, Retry-After holds and breakers.

use std::collections::BTreeMap;

use anyhow::Context as _;
use clap::Args;

use super::target::QueuesArgs;
use crate::config::Config;
use crate::control::upstreams::{self, UpstreamLine};

/// `ward upstreams`
#[derive(Debug, Args)]
pub(crate) struct UpstreamsArgs {
    #[command(flatten)]
    on: QueuesArgs,
}

impl UpstreamsArgs {
    /// Prints the upstreams of the queues named (or of every queue of
    /// `--config`): as a table, or as JSON with `--json`.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let on = &self.on;
        let names = on.names("upstreams")?;
        // Limits come from the config; without one only what Redis holds
        // (breakers, holds, tokens) is known.
        let config = on.target.config().map(|p| Config::load(&p)).transpose()?;
        let tables = config
            .as_ref()
            .map_or_else(BTreeMap::new, |c| c.upstreams.clone());
        let mut lines = Vec::new();
        for name in &names {
            let named: Vec<String> = config
                .iter()
                .flat_map(|c| c.queues.iter().filter(|q| q.name == *name))
                .flat_map(|q| q.jobs.values().flat_map(|j| j.upstreams.clone()))
                .collect();
            let q = on.target.queue(name).await?;
            lines.extend(
                upstreams::list(&q, &tables, &named)
                    .await
                    .with_context(|| format!("cannot read the upstreams of queue `{name}`"))?,
            );
        }
        if on.json {
            println!("{}", serde_json::to_string_pretty(&lines)?);
        } else if lines.is_empty() {
            println!(
                "no upstream is named by a job type or has a breaker (queues: {}); give --config to see the limits",
                names.join(", ")
            );
        } else {
            print_table(&lines);
        }
        Ok(())
    }
}

fn seconds(ms: Option<u64>) -> String {
    #[allow(clippy::cast_precision_loss, reason = "shown to a tenth")]
    ms.map_or_else(|| "-".into(), |ms| format!("{:.1} s", ms as f64 / 1000.0))
}

fn print_table(lines: &[UpstreamLine]) {
    println!(
        "{:<12} {:<20} {:<18} {:>5} {:>8} {:>9} {:>10}  breaker",
        "queue", "upstream", "rate", "cap", "tokens", "in flight", "held for"
    );
    for l in lines {
        let rate = match (&l.rate, l.configured) {
            (Some(r), _) => format!("{}/{}ms burst {}", r.rate, r.per_ms, r.burst),
            (None, true) => "-".into(),
            (None, false) => "(no table)".into(),
        };
        let cap = l.concurrency.map_or_else(|| "-".into(), |c| c.to_string());
        let tokens = l.tokens.map_or_else(|| "-".into(), |t| format!("{t:.1}"));
        let breaker = match l.breaker_open_for_ms {
            Some(_) => format!("open for {}", seconds(l.breaker_open_for_ms)),
            None => l.breaker.to_string(),
        };
        println!(
            "{:<12} {:<20} {:<18} {:>5} {:>8} {:>9} {:>10}  {breaker}",
            l.queue,
            l.upstream,
            rate,
            cap,
            tokens,
            l.in_flight,
            seconds(l.held_for_ms)
        );
    }
}
