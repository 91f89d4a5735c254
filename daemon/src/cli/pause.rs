//! `ward pause` and `ward resume`: stop a queue or one job type of it on
//! every daemon, and let it go again. What they do is
//! [`crate::control::pause`]'s; this file reads the command line and prints.

use clap::Args;

use super::target::QueueTarget;
use crate::control::Actor;
use crate::control::pause::{self, parse_until};
use crate::text::format_ms;

/// `ward pause`
#[derive(Debug, Args)]
pub(crate) struct PauseArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Pause only this job type (default: the whole queue).
    #[arg(long)]
    job: Option<String>,
    /// Why (required): shown by `ward stats` and kept in the audit trail.
    #[arg(long)]
    note: String,
    /// Resume by itself: after a duration (`30m`, `2h`) or at an RFC 3339 time.
    #[arg(long, value_parser = |s: &str| parse_until(s, crate::clock::now_ms()))]
    until: Option<u64>,
    /// Who pauses (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ward resume`
#[derive(Debug, Args)]
pub(crate) struct ResumeArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Resume only this job type (default: the whole queue).
    #[arg(long)]
    job: Option<String>,
    /// Why, for the audit trail.
    #[arg(long, default_value = "")]
    note: String,
    /// Who resumes (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// "queue `q`" or "job type `a` of queue `q`".
fn what(queue: &str, job: Option<&str>) -> String {
    match job {
        None => format!("queue `{queue}`"),
        Some(job) => format!("job type `{job}` of queue `{queue}`"),
    }
}

impl PauseArgs {
    /// Pauses and says what it did.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let job = self.job.as_deref();
        let done = pause::pause(&q, &actor, job, &self.note, self.until).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&done)?);
            return Ok(());
        }
        let until = done.pause.until_ms.map_or_else(
            || "until `ward resume`".to_string(),
            |u| format!("until {}", format_ms(u)),
        );
        let again = if done.previous.is_some() {
            " (it was paused already; this pause replaces that one)"
        } else {
            ""
        };
        println!(
            "paused {} {until}{again}; running attempts finish, new ones wait",
            what(&self.on.queue, job)
        );
        Ok(())
    }
}

impl ResumeArgs {
    /// Resumes, releases the held jobs, and says how many.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let job = self.job.as_deref();
        let done = pause::resume(&q, &actor, job, &self.note).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&done)?);
            return Ok(());
        }
        let what = what(&self.on.queue, job);
        let was = if done.removed.is_some() {
            format!("resumed {what}")
        } else {
            format!("{what} was not paused")
        };
        println!("{was}; released {} held job(s)", done.released);
        if done.still_held > 0 {
            println!(
                "{} job(s) stay held: their job type or the queue is still paused (see `ward stats`)",
                done.still_held
            );
        }
        Ok(())
    }
}
