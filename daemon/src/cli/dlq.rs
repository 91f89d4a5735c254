//! `ward dlq`: inspect, requeue and discard dead letters (`ward:{Q}:dead`).
//! What a dead letter is, how they are found and what a requeue or a
//! discard does is [`crate::dlq`]'s; this file reads the command line and
//! prints.

use clap::{Args, Subcommand};
use serde::Serialize;

use super::format::{print_history, ts};
use super::target::QueueTarget;
use crate::control::{self, Action, Actor};
use crate::dlq::{self, DEFAULT_LIST_LIMIT, DeadLetter, Filter, Located, Op, parse_since};
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
    /// Requeue every dead letter matching --job/--reason/--since (all of them without filters).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    filter: FilterArgs,
    /// Who requeues, for the job's history (default: $USER).
    #[arg(long)]
    by: Option<String>,
    /// Why, for the job's history.
    #[arg(long)]
    note: Option<String>,
}

/// `ward dlq discard`
#[derive(Debug, Args)]
pub(crate) struct DiscardArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// Job ids (or dead-letter entry ids) to discard.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Why, kept in the job record and its history.
    #[arg(long)]
    reason: Option<String>,
    /// Who discards, for the job's history (default: $USER).
    #[arg(long)]
    by: Option<String>,
}

/// Which dead letters a list or a `requeue --all` takes.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct FilterArgs {
    /// Only this job type (exact).
    #[arg(long)]
    job: Option<String>,
    /// Only reasons containing this text, ignoring case (`budget` matches both budget reasons).
    #[arg(long)]
    reason: Option<String>,
    /// Only dead-lettered since: a duration back from now (`30m`, `2h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<u64>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Filter {
        Filter {
            job: a.job,
            reason: a.reason,
            since_ms: a.since,
        }
    }
}

impl ListArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = open(&self.on).await?;
        let queue = &self.on.queue;
        let filter = Filter::from(self.filter);
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
        let filter = Filter::from(self.filter);
        if !self.all && !filter.is_empty() {
            anyhow::bail!(
                "--job, --reason and --since select dead letters for --all; with job ids, leave them out"
            );
        }
        let q = open(&self.on).await?;
        let queue = &self.on.queue;
        let by = operator(self.by);
        let note = self.note.unwrap_or_default();
        let actor = Actor::cli(Some(&by));
        if self.all {
            let (seen, failed) = requeue_all(&q, &filter, &by, &note).await?;
            let target = if filter.is_empty() {
                "every dead letter".to_string()
            } else {
                filter.describe()
            };
            audit(&q, &actor, Op::Requeue, target, seen - failed, &note).await?;
            return summary(Op::Requeue, seen, failed);
        }
        let target = self.ids.join(" ");
        let letters = resolve_ids(&q, queue, self.ids).await?;
        let (total, failed) = act(&q, letters, Op::Requeue, &by, &note).await?;
        audit(&q, &actor, Op::Requeue, target, total - failed, &note).await?;
        summary(Op::Requeue, total, failed)
    }
}

/// `requeue --all`: counts the matching dead letters, says how many, then
/// requeues them page by page from the newest counted down, so memory holds
/// one page of payloads however many there are.
async fn requeue_all(
    q: &Queue,
    filter: &Filter,
    by: &str,
    note: &str,
) -> anyhow::Result<(usize, usize)> {
    let queue = &q.keys.queue;
    let (total, top) = dlq::count(q, filter, dlq::ACT_PAGE).await?;
    if filter.is_empty() {
        println!("no filter given: requeuing all {total} dead letter(s) of queue `{queue}`");
    } else {
        println!(
            "requeuing {total} dead letter(s) of queue `{queue}` matching {}",
            filter.describe()
        );
    }
    let Some(top) = top else {
        return Ok((0, 0));
    };
    let mut pages = dlq::Pages::from(filter.clone(), dlq::ACT_PAGE, &top);
    let (mut seen, mut failed) = (0usize, 0usize);
    while let Some((letters, _)) = pages.next(q).await? {
        seen += letters.len();
        let letters = letters
            .into_iter()
            .map(|d| (d.id.clone(), Some(d)))
            .collect();
        failed += dlq::act(q, letters, Op::Requeue, by, note, |acted| {
            println!("{}", acted.line(Op::Requeue, queue));
        })
        .await?;
    }
    Ok((seen, failed))
}

impl DiscardArgs {
    async fn exec(self) -> anyhow::Result<()> {
        let q = open(&self.on).await?;
        let by = operator(self.by);
        let note = self.reason.unwrap_or_default();
        let target = self.ids.join(" ");
        let letters = resolve_ids(&q, &self.on.queue, self.ids).await?;
        let (total, failed) = act(&q, letters, Op::Discard, &by, &note).await?;
        let actor = Actor::cli(Some(&by));
        audit(&q, &actor, Op::Discard, target, total - failed, &note).await?;
        summary(Op::Discard, total, failed)
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

/// Who acts, for the job's history: `--by`, else `$USER`.
fn operator(by: Option<String>) -> String {
    by.filter(|b| !b.is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Looks each id up; an id without a dead letter is reported right away
/// and comes back as `(id, None)`.
async fn resolve_ids(
    q: &Queue,
    queue: &str,
    ids: Vec<String>,
) -> anyhow::Result<Vec<(String, Option<DeadLetter>)>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let located = dlq::locate(q, &id).await?;
        match located {
            Located::Dead(d) => out.push((id, Some(*d))),
            other => {
                eprintln!("{}", dlq::not_dead(queue, &id, &other));
                out.push((id, None));
            }
        }
    }
    Ok(out)
}

/// Applies `op` to each dead letter, printing one line per id; returns how
/// many ids there were and how many were not acted on.
async fn act(
    q: &Queue,
    letters: Vec<(String, Option<DeadLetter>)>,
    op: Op,
    by: &str,
    note: &str,
) -> anyhow::Result<(usize, usize)> {
    let queue = &q.keys.queue;
    let total = letters.len();
    let failed = dlq::act(q, letters, op, by, note, |acted| {
        println!("{}", acted.line(op, queue));
    })
    .await?;
    Ok((total, failed))
}

/// Puts a requeue or discard on the audit trail.
async fn audit(
    q: &Queue,
    actor: &Actor,
    op: Op,
    target: String,
    count: usize,
    note: &str,
) -> anyhow::Result<()> {
    let action = Action {
        action: match op {
            Op::Requeue => "requeue",
            Op::Discard => "discard",
        },
        queue: &q.keys.queue,
        target,
        count: u64::try_from(count).unwrap_or(u64::MAX),
        note,
        detail: None,
    };
    control::audit::record(&q.store(), actor, action).await?;
    Ok(())
}

/// The last line of a run over `total` ids: an error if any was not acted on.
fn summary(op: Op, total: usize, failed: usize) -> anyhow::Result<()> {
    let done = op.done();
    if failed > 0 {
        anyhow::bail!("{failed} of {total} job(s) not {done}");
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
