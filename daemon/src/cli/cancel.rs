//! `ward job cancel`: jobs that should not run (any more).

use clap::Args;

use super::target::QueueTarget;
use crate::control::bulk_cancel::{self, JobFilter};
use crate::control::{self, Actor};
use crate::dlq::parse_since;
use crate::store::Waiting;

/// `ward job cancel QUEUE ID... --note WHY`
#[derive(Debug, Args)]
pub(crate) struct CancelArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The job ids (for a plain XADD, its stream entry id).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Cancel every job matching --job/--state/--since/--until/--field
    /// instead (queued, delayed and paused ones unless --state says).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// With --all: count the matches and show some, change nothing.
    #[arg(long, requires = "all")]
    dry_run: bool,
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
        if self.all {
            return self.all(&q, &actor).await;
        }
        if !self.filter.is_empty() {
            anyhow::bail!(
                "--job, --state, --since, --until and --field select jobs for --all; with job ids, leave them out"
            );
        }
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

impl CancelArgs {
    /// `--all`: every matching job, page by page.
    async fn all(&self, q: &crate::store::Queue, actor: &Actor) -> anyhow::Result<()> {
        let filter = self.filter.to_filter();
        let report =
            bulk_cancel::cancel_matching(q, actor, &filter, &self.note, self.dry_run).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        let queue = &q.keys.queue;
        let what = filter.describe();
        if report.dry_run {
            println!(
                "{} job(s) of queue `{queue}` match {what}; nothing changed (dry run)",
                report.matched
            );
        } else {
            println!(
                "{} job(s) of queue `{queue}` matched {what}: {} cancelled, {} running asked to stop, {} already finished",
                report.matched, report.cancelled, report.requested, report.unchanged
            );
        }
        for (state, ids) in &report.sample {
            println!("  {state}: {}", ids.join(" "));
        }
        Ok(())
    }
}

/// Which jobs `--all` (and `ward job list`) takes.
#[derive(Debug, Clone, Default, Args)]
pub(super) struct FilterArgs {
    /// Only this job type.
    #[arg(long)]
    job: Option<String>,
    /// Only jobs in this state: queued, delayed, paused or running (repeat
    /// for several; default queued, delayed and paused).
    #[arg(long = "state", value_parser = parse_state)]
    states: Vec<Waiting>,
    /// Only jobs enqueued since: a duration back from now (`30m`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
    /// Only jobs enqueued before: a duration back from now or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    until: Option<u64>,
    /// Only jobs whose field NAME is VALUE (`--field order_id=o-17`); repeatable.
    #[arg(long = "field", value_parser = parse_field)]
    fields: Vec<(String, String)>,
}

impl FilterArgs {
    fn is_empty(&self) -> bool {
        self.job.is_none()
            && self.states.is_empty()
            && self.since.is_none()
            && self.until.is_none()
            && self.fields.is_empty()
    }

    pub(super) fn to_filter(&self) -> JobFilter {
        JobFilter {
            job: self.job.clone(),
            states: self.states.clone(),
            since_ms: self.since,
            until_ms: self.until,
            fields: self.fields.clone(),
        }
    }
}

fn parse_state(s: &str) -> Result<Waiting, String> {
    match s {
        "queued" => Ok(Waiting::Queued),
        "delayed" => Ok(Waiting::Delayed),
        "paused" => Ok(Waiting::Paused),
        "running" => Ok(Waiting::Running),
        other => Err(format!(
            "`{other}` is not one of queued, delayed, paused, running"
        )),
    }
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
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
