//! `ward job cancel`: jobs that should not run (any more).

use clap::Args;

use super::target::QueueTarget;
use crate::control::{self, Actor};

/// `ward job cancel QUEUE ID... --note WHY`
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The job ids (for a plain XADD, its stream entry id).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Why: kept in each job's record and history, and in the audit trail.
    #[arg(long)]
    note: String,
    /// Who cancels (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl CancelArgs {
    /// Cancels the jobs, one line per id; fails when an id is not found.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let report = control::cancel::cancel(&q, &actor, &self.ids, &self.note).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            for j in &report.jobs {
                println!("{}", line(&q.keys.queue, j));
            }
        }
        let missing = report
            .jobs
            .iter()
            .filter(|j| j.outcome == control::cancel::CancelOutcome::NotFound)
            .count();
        if missing > 0 {
            anyhow::bail!("{missing} of {} job(s) not found", self.ids.len());
        }
        Ok(())
    }
}

/// What became of one job, for a person.
fn line(queue: &str, j: &control::cancel::JobCancel) -> String {
    use control::cancel::CancelOutcome;
    let id = &j.id;
    match &j.outcome {
        CancelOutcome::Cancelled { was } => {
            format!("{id}: cancelled (it was {was}; it will never run)")
        }
        CancelOutcome::Requested { new: true } => {
            format!("{id}: requested (it is running; the daemon running it interrupts it)")
        }
        CancelOutcome::Requested { new: false } => {
            format!("{id}: requested (already; the daemon running it interrupts it)")
        }
        CancelOutcome::Finished { state } => {
            format!("{id}: finished (already {state}; nothing changed)")
        }
        CancelOutcome::NotFound => format!("{id}: not found in queue `{queue}`"),
    }
}
