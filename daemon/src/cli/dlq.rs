//! `ward dlq`: inspect, requeue and discard dead letters (`ward:{Q}:dead`).
//! What a dead letter is, how they are found and what a requeue or a
//! discard does is [`crate::dlq`]'s; this file reads the command line and
//! prints.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde::Serialize;

use super::format::{print_history, ts};
use super::target::QueueTarget;
use crate::control::Actor;
use crate::control::dead::{self, BulkOptions, Progress, Report};
use crate::dlq::{
    self, Acted, DEFAULT_LIST_LIMIT, DeadLetter, Filter, Located, Op, parse_field, parse_since,
};
use crate::store::{self, Queue};
use crate::text::format_ms;

/// `ward dlq ...`
#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters, newest first.
    List(ListArgs),
    /// Show one dead letter in full: error, payload, correlation ids, history.
    Show(ShowArgs),
    /// Put dead jobs back as fresh jobs (attempt 1, budget reset, original payload).
    Requeue(RequeueArgs),
    /// Mark dead jobs "won't retry" and remove them from the dead-letter stream.
    Discard(DiscardArgs),
}

impl DlqCommand {
    /// Runs one `ward dlq` command.
    ///
    /// # Errors
    /// Bad input, Redis errors, and any job that could not be requeued or
    /// discarded (after every other one was tried).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        match self {
            DlqCommand::List(args) => args.exec().await,
            DlqCommand::Show(args) => args.exec().await,
            DlqCommand::Requeue(args) => args.exec().await,
            DlqCommand::Discard(args) => args.exec().await,
        }
    }
}

/// `ward dlq list`
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    on: QueueTarget,
    #[command(flatten)]
    filter: FilterArgs,
    /// Same as --dead-reason.
    #[arg(long, conflicts_with = "dead_reason")]
    reason: Option<String>,
    /// Show at most this many.
    #[arg(long, default_value_t = DEFAULT_LIST_LIMIT)]
    limit: usize,
    /// Print JSON (an array of dead letters).
    #[arg(long)]
    json: bool,
}

/// `ward dlq show`
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The job id (or the dead letter's own entry id in `ward:{Q}:dead`).
    id: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `ward dlq requeue`
#[derive(Debug, Args)]
pub(crate) struct RequeueArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Job ids (or dead-letter entry ids) to requeue.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Requeue every dead letter matching the filters (all of them without filters).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Same as --dead-reason.
    #[arg(long, conflicts_with = "dead_reason")]
    reason: Option<String>,
    #[command(flatten)]
    bulk: BulkArgs,
    /// Requeue the one job given with this payload instead of its own: a
    /// file, or `-` for stdin. Its history keeps both payloads' sha256.
    #[arg(long, value_name = "FILE|-", conflicts_with = "all")]
    payload: Option<PathBuf>,
    /// Who requeues, for the job's history and the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Why, for the job's history and the audit trail.
    #[arg(long)]
    note: Option<String>,
}

/// `ward dlq discard`
#[derive(Debug, Args)]
pub(crate) struct DiscardArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Job ids (or dead-letter entry ids) to discard.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    ids: Vec<String>,
    /// Discard every dead letter matching the filters (all of them without filters).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    bulk: BulkArgs,
    /// Why, kept in the job record, its history and the audit trail (not a
    /// filter here: filter by dead reason with --dead-reason).
    #[arg(long, alias = "note")]
    reason: Option<String>,
    /// Who discards, for the job's history and the audit trail (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

/// Which dead letters a list or an `--all` action takes.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FilterArgs {
    /// Only this job type (exact).
    #[arg(long)]
    job: Option<String>,
    /// Only dead reasons containing this text, ignoring case (`budget` matches both budget reasons).
    #[arg(long = "dead-reason", id = "dead_reason", value_name = "TEXT")]
    reason: Option<String>,
    /// Only this last error code (exact).
    #[arg(long)]
    code: Option<String>,
    /// Only dead-lettered since: a duration back from now (`30m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
    /// Only dead-lettered before: a duration back from now or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    until: Option<u64>,
    /// Only dead letters with this correlation field (exact; repeat for more).
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
}

impl FilterArgs {
    /// The filter, with `--reason` where the command takes it for `--dead-reason`.
    fn filter(self, reason: Option<String>) -> Filter {
        Filter {
            job: self.job,
            reason: self.reason.or(reason),
            code: self.code,
            since_ms: self.since,
            until_ms: self.until,
            fields: self.fields,
        }
    }
}

/// How an `--all` action runs.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BulkArgs {
    /// With --all: count the matching dead letters and show a sample; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// With --all: act on at most this many (newest first); run again for more.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

impl ListArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = open(&self.on).await?;
        let queue = &self.on.queue;
        let filter = self.filter.filter(self.reason);
        let letters = dlq::list(&q, &filter, self.limit).await?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&letters)?);
        } else if letters.is_empty() {
            let matching = if filter.is_empty() {
                String::new()
            } else {
                format!(" matching {}", filter.describe())
            };
            println!("no dead letters in queue `{queue}`{matching}");
        } else {
            print!("{}", dlq::table(&letters));
        }
        Ok(())
    }
}

impl ShowArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = open(&self.on).await?;
        let located = dlq::locate(&q, &self.id).await?;
        let Located::Dead(d) = located else {
            anyhow::bail!("{}", dlq::not_dead(&self.on.queue, &self.id, &located));
        };
        let history = q.history(&d.id).await?;
        if self.json {
            #[derive(Serialize)]
            struct Shown<'a> {
                #[serde(flatten)]
                dead: &'a DeadLetter,
                history: &'a [serde_json::Value],
            }
            let shown = Shown {
                dead: &d,
                history: &history,
            };
            println!("{}", serde_json::to_string_pretty(&shown)?);
        } else {
            print_dead_letter(&d);
            print_history(&history);
        }
        Ok(())
    }
}

impl RequeueArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let filter = self.filter.filter(self.reason);
        only_with_all(self.all, &filter, &self.bulk)?;
        let payload = match &self.payload {
            Some(path) => {
                let [_] = self.ids.as_slice() else {
                    anyhow::bail!(
                        "--payload replaces the payload of one job: give exactly one job id"
                    );
                };
                Some(read_payload(path)?)
            }
            None => None,
        };
        let q = open(&self.on).await?;
        let actor = Actor::cli(self.by.as_deref());
        let note = self.note.unwrap_or_default();
        let print = printer(Op::Requeue, &q, &filter, self.bulk.dry_run);
        let report = match payload {
            _ if self.all => {
                let options = self.bulk.options(note);
                dead::bulk(&q, &actor, Op::Requeue, &filter, &options, print).await?
            }
            Some(p) => dead::requeue_edited(&q, &actor, &self.ids[0], &p, &note, print).await?,
            None => dead::by_ids(&q, &actor, Op::Requeue, &self.ids, &note, print).await?,
        };
        summary(Op::Requeue, &report)
    }
}

impl DiscardArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let filter = self.filter.filter(None);
        only_with_all(self.all, &filter, &self.bulk)?;
        let q = open(&self.on).await?;
        let actor = Actor::cli(self.by.as_deref());
        let note = self.reason.unwrap_or_default();
        let print = printer(Op::Discard, &q, &filter, self.bulk.dry_run);
        let report = if self.all {
            let options = self.bulk.options(note);
            dead::bulk(&q, &actor, Op::Discard, &filter, &options, print).await?
        } else {
            dead::by_ids(&q, &actor, Op::Discard, &self.ids, &note, print).await?
        };
        summary(Op::Discard, &report)
    }
}

/// Filters choose what `--all` takes, and `--dry-run` and `--limit` say how
/// it runs; beside job ids they would be ignored.
fn only_with_all(all: bool, filter: &Filter, bulk: &BulkArgs) -> anyhow::Result<()> {
    if all {
        return Ok(());
    }
    if !filter.is_empty() {
        anyhow::bail!(
            "--job, --dead-reason, --code, --since, --until and --field select dead letters for --all; with job ids, leave them out"
        );
    }
    if bulk.dry_run || bulk.limit.is_some() {
        anyhow::bail!("--dry-run and --limit go with --all; with job ids, leave them out");
    }
    Ok(())
}

impl BulkArgs {
    /// The options of a run that stops after the chunk under way on SIGINT
    /// or SIGTERM, so what was done is reported and audited.
    fn options(self, note: String) -> BulkOptions {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        tokio::spawn(async move {
            super::run::shutdown_signal().await;
            flag.store(true, Ordering::SeqCst);
        });
        BulkOptions {
            note,
            dry_run: self.dry_run,
            limit: self.limit,
            stop: Some(stop),
            ..BulkOptions::default()
        }
    }
}

/// The corrected payload: the file's bytes, or stdin's for `-`.
fn read_payload(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("--payload -: cannot read stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("--payload {}: cannot read it", path.display()))
}

/// Prints an action's progress: the count of a bulk action, then one line
/// per job (and why a job had no dead letter, on stderr).
fn printer(op: Op, q: &Queue, filter: &Filter, dry_run: bool) -> impl FnMut(Progress<'_>) + use<> {
    let queue = q.keys.queue.clone();
    let filter = filter.clone();
    move |p| match p {
        Progress::Matched { count, sample } => {
            print_matched(op, &queue, &filter, dry_run, count);
            if !sample.is_empty() {
                println!("newest first: {}", sample.join(" "));
            }
        }
        Progress::Acted(acted) => {
            if let Acted::NoDeadLetter { why, .. } = acted {
                eprintln!("{why}");
            }
            println!("{}", acted.line(op, &queue));
        }
    }
}

/// What a bulk action found before it acts: how many.
fn print_matched(op: Op, queue: &str, filter: &Filter, dry_run: bool, count: u64) {
    let verb = match (op, dry_run) {
        (_, true) => "dry run: would",
        (Op::Requeue, false) => "requeuing",
        (Op::Discard, false) => "discarding",
    };
    let verb = if dry_run {
        format!("{verb} {}", op.verb())
    } else {
        verb.to_string()
    };
    if filter.is_empty() {
        println!("no filter given: {verb} all {count} dead letter(s) of queue `{queue}`");
    } else {
        println!(
            "{verb} {count} dead letter(s) of queue `{queue}` matching {}",
            filter.describe()
        );
    }
}

/// Connects and checks that Redis knows the queue at all, so a mistyped
/// queue name is not mistaken for an empty dead-letter stream.
async fn open(on: &QueueTarget) -> anyhow::Result<Queue> {
    let q = on.connect().await?;
    if !q.exists().await? {
        anyhow::bail!(
            "queue `{}` not found in Redis at {}: neither {} nor {} exists; check the queue name and --redis/--config",
            on.queue,
            store::redacted_url(&on.target.url()?),
            q.keys.jobs,
            q.keys.dead
        );
    }
    Ok(q)
}

/// The last lines of a run: an error if it was interrupted or any job was
/// not acted on.
fn summary(op: Op, r: &Report) -> anyhow::Result<()> {
    let done = op.done();
    if r.dry_run {
        println!("dry run: nothing was {done}");
        return Ok(());
    }
    if let Some(e) = &r.edit {
        println!(
            "payload sha256 {} ({} bytes) replaced by sha256 {} ({} bytes)",
            e.old_payload_sha256, e.old_payload_size, e.payload_sha256, e.payload_size
        );
    }
    let total = r.acted + r.not_acted();
    if r.interrupted {
        anyhow::bail!(
            "interrupted: {} of {} dead letter(s) {done}; run the command again to go on",
            r.acted,
            r.matched
        );
    }
    if r.not_acted() > 0 {
        anyhow::bail!("{} of {total} job(s) not {done}", r.not_acted());
    }
    if total > 1 {
        println!("{done} {total} job(s)");
    }
    Ok(())
}

fn print_dead_letter(d: &DeadLetter) {
    println!("job          {}", d.id);
    println!("queue        {}", d.queue);
    println!("type         {}", d.job);
    println!("reason       {}", d.reason);
    println!("error        {}", d.last_error());
    if let Some(u) = &d.upstream {
        println!("upstream     {u}");
    }
    println!("attempts     {}", d.attempts);
    println!("first        {}", ts(d.first_attempt_at_ms));
    println!("last         {}", ts(d.last_attempt_at_ms));
    println!(
        "dead at      {} (entry {})",
        format_ms(d.dead_at_ms),
        d.dead_id
    );
    if let Some(p) = &d.plugin_digest {
        println!("plugin       sha256:{p}");
    }
    if let Some(k) = &d.idempotency_key {
        println!("idempotency  {k}");
    }
    for (k, v) in d.extra.iter().filter(|(k, _)| *k != "idempotency_key") {
        println!("{k:<12} {v}");
    }
    match (&d.payload, &d.payload_hex) {
        (Some(p), _) => println!("payload      {p}"),
        (None, Some(h)) => println!("payload      (not UTF-8, hex) {h}"),
        (None, None) => {}
    }
}
