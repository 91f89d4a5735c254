//! `ward audit`: the audit trail of operator actions, oldest first.

use clap::Args;

use super::target::RedisTarget;
use crate::dlq::parse_since;
use crate::text::format_ms;

/// `ward audit`
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    #[command(flatten)]
    target: RedisTarget,
    /// Only actions since: a duration back from now (`30m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
    /// Show at most the newest this many.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Print JSON (an array of entries).
    #[arg(long)]
    json: bool,
}

impl AuditArgs {
    /// Prints the trail.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let store = self.target.store().await?;
        let entries = store
            .read_audit(self.since.unwrap_or(0), self.limit)
            .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&entries)?);
            return Ok(());
        }
        if entries.is_empty() {
            println!("no operator actions recorded");
            return Ok(());
        }
        for e in &entries {
            let note = if e.note.is_empty() {
                String::new()
            } else {
                format!(": {}", e.note)
            };
            println!(
                "{}  {} ({})  {} {} {} [{}]{note}",
                format_ms(e.at_ms),
                e.by,
                e.via,
                e.action,
                e.queue,
                e.target,
                e.count
            );
        }
        Ok(())
    }
}
