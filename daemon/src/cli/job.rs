//! `ward job`: look at jobs, cancel them.

use clap::Subcommand;

use super::format::{print_history, ts};
use super::target::QueueTarget;
use crate::store;
use crate::text::format_ms;

/// `ward job ...`
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Show a job's state, attempts and last error.
    Show {
        #[command(flatten)]
        on: QueueTarget,
        /// The job id (for a plain XADD, its stream entry id).
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the jobs waiting (queued, delayed, paused) or running, by
    /// filter, oldest first within each state; read only.
    List {
        #[command(flatten)]
        on: QueueTarget,
        #[command(flatten)]
        filter: super::cancel::FilterArgs,
        /// Show at most this many (up to 1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel jobs: a waiting one never runs, a running one is interrupted
    /// (on whichever daemon runs it), a finished one is left as it is.
    Cancel(super::cancel::CancelArgs),
}

impl JobCommand {
    /// Runs one `ward job` command.
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        match self {
            JobCommand::Show { on, id, json } => show(&on, &id, json).await,
            JobCommand::List {
                on,
                filter,
                limit,
                json,
            } => list(&on, &filter.to_filter(), limit, json).await,
            JobCommand::Cancel(args) => args.exec().await,
        }
    }
}

async fn list(
    on: &QueueTarget,
    filter: &crate::control::find::JobFilter,
    limit: usize,
    json: bool,
) -> anyhow::Result<()> {
    let q = on.connect().await?;
    let found = crate::control::find::list(&q, filter, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(());
    }
    if found.jobs.is_empty() {
        println!(
            "no job of queue `{}` matches ({})",
            on.queue,
            filter.describe()
        );
        return Ok(());
    }
    println!(
        "{:<20} {:<8} {:<20} {:<24} fields",
        "id", "state", "job", "enqueued"
    );
    for j in &found.jobs {
        let fields: Vec<String> = j.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:<20} {:<8} {:<20} {:<24} {}",
            j.id,
            j.state.as_str(),
            j.job,
            j.enqueued_at_ms.map_or_else(|| "-".to_string(), format_ms),
            fields.join(" ")
        );
    }
    if found.more {
        println!(
            "(more match: the first {} shown; raise --limit or narrow the filter)",
            found.jobs.len()
        );
    }
    Ok(())
}

async fn show(on: &QueueTarget, id: &str, json: bool) -> anyhow::Result<()> {
    let q = on.connect().await?;
    let queue = &on.queue;
    let Some(status) = q.job_status(id).await? else {
        anyhow::bail!(
            "no job `{id}` in queue `{queue}` (records of succeeded jobs are kept for the queue's succeeded_ttl, {} unless set)",
            humantime::format_duration(crate::config::defaults::SUCCEEDED_TTL)
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_status(&status);
    }
    Ok(())
}

/// Longest result `job show` prints on its line; `--json` has all of it.
const RESULT_SHOWN: usize = 400;

/// A result as one line of `job show`: its lines joined, cut past
/// [`RESULT_SHOWN`] characters with a pointer to the whole.
fn shown_result(r: &str) -> String {
    let mut line = r.replace('\n', " ");
    if line.chars().count() > RESULT_SHOWN {
        line = line.chars().take(RESULT_SHOWN).collect();
        line.push_str(&format!("… ({} bytes; --json shows it all)", r.len()));
    }
    line
}

fn print_status(s: &store::JobStatus) {
    println!("job       {}", s.id);
    println!("queue     {}", s.queue);
    println!("type      {}", s.job.as_deref().unwrap_or("-"));
    println!("state     {}", s.state);
    println!("attempts  {}", s.attempts);
    println!("first     {}", ts(s.first_attempt_at_ms));
    println!("last      {}", ts(s.last_attempt_at_ms));
    if let Some(reason) = &s.dead_reason {
        println!("reason    {reason}");
    }
    if let Some(e) = &s.last_error {
        let code = e
            .code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        println!("error     {}{code}: {}", e.class, e.message);
    }
    if let Some(due) = s.due_at_ms {
        println!("due       {}", format_ms(due));
    }
    if let Some(p) = &s.progress {
        // A plugin reports as it goes; the time says how fresh it is.
        let message = if p.message.is_empty() {
            String::new()
        } else {
            format!(" {}", p.message)
        };
        let attempt = p
            .attempt
            .map_or_else(String::new, |a| format!("attempt {a}, "));
        println!(
            "progress  {}%{message} ({attempt}at {})",
            p.percent,
            format_ms(p.at_ms)
        );
    }
    if let Some(c) = &s.cancel {
        // A cancel request of a running job reads `cancel    requested by ..`.
        let (label, what, at) = if s.state == "cancelled" {
            ("cancelled", "", c.cancelled_at_ms)
        } else {
            ("cancel", "requested ", c.requested_at_ms)
        };
        let note = if c.note.is_empty() {
            String::new()
        } else {
            format!(": {}", c.note)
        };
        // A request can come as the attempt succeeds: it finished first.
        let late = if s.state == "succeeded" {
            " (too late: it finished first)"
        } else {
            ""
        };
        println!("{label:<9} {what}by {} at {}{note}{late}", c.by, ts(at));
    }
    if let Some(d) = &s.plugin_digest {
        println!("plugin    sha256:{d}");
    }
    if let Some(r) = &s.result {
        println!("result    {}", shown_result(r));
    }
    if let Some(n) = &s.result_note {
        println!("result    ({n})");
    }
    print_history(&s.history);
}
