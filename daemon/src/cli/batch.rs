//! `ward batch`: create, seal, show and list batches. What a batch is and
//! how its ledger is kept is [`crate::control::batches`]'s and the store's;
//! this file reads the command line and prints.

use clap::{Args, Subcommand};

use super::format::ts;
use super::target::QueueTarget;
use crate::control::Actor;
use crate::control::batches::{self, BatchView};
use crate::store::Callbacks;

/// `ward batch ...`
#[derive(Debug, Subcommand)]
pub(crate) enum BatchCommand {
    /// Create an open batch and print its id; add jobs with
    /// `ward enqueue --batch ID`, `ward_enqueue` or a `batch` field.
    Create(CreateArgs),
    /// Seal a batch: no more members may join it through `ward enqueue`
    /// or `ward_enqueue`; it finishes when its last member ends.
    Seal(SealArgs),
    /// One batch: its members by state, times, and the failures grouped
    /// by class and code.
    Show(ShowArgs),
    /// A queue's batches, newest first.
    List(ListArgs),
    /// Requeue exactly the batch's dead members (audited; `--dry-run`
    /// counts them first); the ledger counts them back as pending.
    RetryFailed(ActArgs),
    /// Cancel every member of the batch still waiting or running.
    Cancel(ActArgs),
    /// Quarantine a batch: its members are held, not run (no attempt
    /// spent), until `ward batch resume`; attempts under way finish.
    Pause(super::batch_pause::PauseArgs),
    /// Let a paused batch go: its held members go back to the stream.
    Resume(super::batch_pause::ResumeArgs),
}

impl BatchCommand {
    /// Runs one `ward batch` command.
    ///
    /// # Errors
    /// Bad input, a missing batch, Redis errors.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        match self {
            BatchCommand::Create(a) => a.exec().await,
            BatchCommand::Seal(a) => a.exec().await,
            BatchCommand::Show(a) => a.exec().await,
            BatchCommand::List(a) => a.exec().await,
            BatchCommand::RetryFailed(a) => a.retry_failed().await,
            BatchCommand::Cancel(a) => a.cancel().await,
            BatchCommand::Pause(a) => a.pause().await,
            BatchCommand::Resume(a) => a.resume().await,
        }
    }
}

/// `ward batch create`
#[derive(Debug, Args)]
pub(crate) struct CreateArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The batch id (letters, digits, `-`, `_`, `.`, `:`); default: a
    /// new one.
    #[arg(long)]
    id: Option<String>,
    /// A job type to enqueue once, when every member has ended (the batch
    /// sealed); its payload is the batch's summary as JSON.
    #[arg(long, value_name = "JOB")]
    on_complete: Option<String>,
    /// A job type to enqueue once, when every member has succeeded (maybe
    /// later, after dead members were requeued and succeeded).
    #[arg(long, value_name = "JOB")]
    on_success: Option<String>,
    /// Who creates it, for the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

impl CreateArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let callbacks = Callbacks {
            on_complete: self.on_complete,
            on_success: self.on_success,
        };
        let id = batches::create(
            &q,
            &Actor::cli(self.by.as_deref()),
            self.id.as_deref(),
            &callbacks,
        )
        .await?;
        println!("{id}");
        Ok(())
    }
}

/// `ward batch seal`
#[derive(Debug, Args)]
pub(crate) struct SealArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The batch id.
    id: String,
    /// Who seals it, for the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

impl SealArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let now = batches::seal(&q, &Actor::cli(self.by.as_deref()), &self.id).await?;
        if now {
            println!("sealed batch `{}`: no more members may join it", self.id);
        } else {
            println!("batch `{}` was sealed already", self.id);
        }
        Ok(())
    }
}

/// `ward batch show`
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The batch id.
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl ShowArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let v = batches::show(&q, &self.id, crate::clock::now_ms()).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        print_view(&v);
        Ok(())
    }
}

/// `ward batch list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl ListArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let all = batches::list(&q, crate::clock::now_ms()).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&all)?);
            return Ok(());
        }
        if all.is_empty() {
            println!("queue `{}` has no batches", self.on.queue);
            return Ok(());
        }
        println!(
            "{:<28} {:<8} {:>8} {:>8} {:>9} {:>6} {:>9}  created",
            "batch", "status", "total", "pending", "succeeded", "dead", "cancelled"
        );
        for v in &all {
            let l = &v.ledger;
            println!(
                "{:<28} {:<8} {:>8} {:>8} {:>9} {:>6} {:>9}  {}",
                l.id,
                if v.paused.is_some() {
                    "paused"
                } else {
                    v.status
                },
                l.total,
                l.pending,
                l.succeeded,
                l.dead,
                l.cancelled,
                ts(Some(l.created_at_ms))
            );
        }
        Ok(())
    }
}

/// One batch, for a person.
fn print_view(v: &BatchView) {
    let l = &v.ledger;
    println!("batch      {} (queue {})", l.id, v.queue);
    let status = match v.status {
        "open" => "open: members may still join; `ward batch seal` when all are in",
        "sealed" => "sealed: no more members; running",
        _ => "finished: sealed, every member ended",
    };
    println!("status     {status}");
    println!("total      {}", l.total);
    match v.running {
        Some(r) => println!(
            "pending    {}   (waiting, retrying or running; {r} running now)",
            l.pending
        ),
        None => println!("pending    {}   (waiting, retrying or running)", l.pending),
    }
    if let Some(p) = &v.paused {
        let note = if p.note.is_empty() {
            String::new()
        } else {
            format!(": {}", p.note)
        };
        let until = match p.until_ms {
            Some(ms) => format!("{} or ", ts(Some(ms))),
            None => String::new(),
        };
        println!(
            "paused     by {} at {}{note}; its members are held until {until}`ward batch resume`",
            p.by,
            ts(Some(p.at_ms))
        );
    }
    println!("succeeded  {}", l.succeeded);
    println!("dead       {}", l.dead);
    println!("cancelled  {}", l.cancelled);
    if l.late > 0 {
        println!(
            "late       {}   (joined by a plain XADD after the seal)",
            l.late
        );
    }
    if l.implicit {
        println!("note       created by a plain XADD that named it, not by `ward batch create`");
    }
    println!("created    {}", ts(Some(l.created_at_ms)));
    println!("sealed     {}", ts(l.sealed_at_ms));
    println!("finished   {}", ts(l.finished_at_ms));
    if l.succeeded_at_ms.is_some() {
        println!("all succeeded {}", ts(l.succeeded_at_ms));
    }
    for (name, job, fired) in [
        ("on_complete", &l.callbacks.on_complete, &l.on_complete_job),
        ("on_success", &l.callbacks.on_success, &l.on_success_job),
    ] {
        if let Some(job) = job {
            let state = fired.as_ref().map_or_else(
                || "not yet enqueued".to_string(),
                |id| format!("enqueued as job {id}"),
            );
            println!("{name:<10} {job}: {state}");
        }
    }
    println!(
        "elapsed    {}",
        humantime::format_duration(std::time::Duration::from_millis(v.elapsed_ms))
    );
    println!("{}", v.summary);
    for g in &v.failures {
        let code = if g.code.is_empty() {
            String::new()
        } else {
            format!(" [{}]", g.code)
        };
        println!(
            "  {:>6}  {}{code}  e.g. job {}: {}",
            g.count, g.class, g.sample_job_id, g.sample_message
        );
    }
}

/// `ward batch retry-failed` and `ward batch cancel`
#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The batch id.
    id: String,
    /// Why: kept in each job's history and in the audit trail.
    #[arg(long, required_unless_present = "dry_run")]
    note: Option<String>,
    /// Count the members it would act on and show some; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Who acts, for the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl ActArgs {
    async fn retry_failed(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let note = self.note.clone().unwrap_or_default();
        let r =
            crate::control::batch_actions::retry_failed(&q, &actor, &self.id, &note, self.dry_run)
                .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else if r.dry_run {
            println!(
                "batch `{}`: {} dead member(s) would be requeued (dry run; nothing changed)",
                self.id, r.matched
            );
        } else {
            println!(
                "batch `{}`: {} dead member(s) requeued of {} matched",
                self.id, r.acted, r.matched
            );
        }
        Ok(())
    }

    async fn cancel(self) -> anyhow::Result<()> {
        let q = self.on.connect().await?;
        let actor = Actor::cli(self.by.as_deref());
        let note = self.note.clone().unwrap_or_default();
        let r =
            crate::control::batch_actions::cancel_rest(&q, &actor, &self.id, &note, self.dry_run)
                .await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else if r.dry_run {
            println!(
                "batch `{}`: {} member(s) still waiting or running would be cancelled (dry run; nothing changed)",
                self.id, r.matched
            );
        } else {
            println!(
                "batch `{}`: {} cancelled, {} running asked to stop, {} had ended meanwhile",
                self.id, r.cancelled, r.requested, r.unchanged
            );
        }
        Ok(())
    }
}
