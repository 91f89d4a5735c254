//! `ward batch pause` and `ward batch resume`: quarantine a batch and let
//! it go again (see [`crate::control::batch_pause`]).

use clap::Args;

use super::target::QueueTarget;
use crate::control::Actor;
use crate::control::batch_pause;

/// `ward batch resume`, and what `ward batch pause` takes besides `--until`.
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The batch id.
    id: String,
    /// Why: kept in the pause and the audit trail (required to pause).
    #[arg(long)]
    note: Option<String>,
    /// Who acts, for the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ward batch pause`
#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    #[command(flatten)]
    of: ResumeArgs,
    /// Resume by itself after a duration (`30m`, `2h`) or at an RFC 3339 time.
    #[arg(long, value_parser = |s: &str| crate::control::pause::parse_until(s, crate::clock::now_ms()))]
    until: Option<u64>,
}

impl PauseArgs {
    /// `ward batch pause`.
    pub(crate) async fn pause(self) -> anyhow::Result<()> {
        let q = self.of.on.connect().await?;
        let actor = Actor::cli(self.of.by.as_deref());
        let note = self.of.note.clone().unwrap_or_default();
        let r = batch_pause::pause(&q, &actor, &self.of.id, &note, self.until).await?;
        if self.of.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let again = if r.previous.is_some() {
                " (it was paused already; this pause replaces that one)"
            } else {
                ""
            };
            let until = match self.until {
                Some(ms) => format!("{} or ", crate::text::format_ms(ms)),
                None => String::new(),
            };
            println!(
                "paused batch `{}`: its members are held, not run, until {until}`ward batch resume {} {}`{again}",
                self.of.id, self.of.on.queue, self.of.id
            );
        }
        Ok(())
    }
}

impl ResumeArgs {
    /// `ward batch resume`.
    pub(crate) async fn resume(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let note = self.note.clone().unwrap_or_default();
        let r = batch_pause::resume(&q, &actor, &self.id, &note).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let was = if r.pause.is_some() {
                ""
            } else {
                " (it was not paused)"
            };
            println!(
                "resumed batch `{}`{was}: {} held member(s) back in the stream",
                self.id, r.released
            );
        }
        Ok(())
    }
}
