//! `ward enqueue`: add a job to a queue.

use std::io::Read;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::target::QueueTarget;
use crate::config;
use crate::config::defaults::MAX_DURATION;
use crate::priority::Priority;
use crate::store;
use crate::store::EnqueueOptions;
use crate::text::format_ms;

/// `ward enqueue`
#[derive(Debug, Args)]
pub(crate) struct EnqueueArgs {
    #[command(flatten)]
    on: QueueTarget,
    /// The job type.
    job: String,
    /// The payload; `-` reads it from standard input, byte for byte.
    payload: String,
    /// Start the job after this long, e.g. `30s`, `5m`.
    #[arg(long, conflicts_with = "at", value_parser = parse_job_delay)]
    delay: Option<Duration>,
    /// Start the job at this time (RFC 3339, e.g. `2026-11-22T03:00:00Z`).
    #[arg(long, value_parser = parse_at)]
    at: Option<u64>,
    /// Create the job only once per key: a second enqueue with the same
    /// key (within its TTL) prints the first job's id and says so.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// How long the key is remembered (default: the job type's
    /// `idempotency_ttl` from `--config`, else 24h).
    #[arg(long, value_parser = parse_key_ttl)]
    idempotency_ttl: Option<Duration>,
    /// The priority level: `high` runs first, `low` when the others leave
    /// room; the queue's `priority_weights` keep every level moving.
    #[arg(long, default_value = "normal", value_parser = parse_priority)]
    priority: Priority,
    /// Add the job to this open batch (`ward batch create`); refused when
    /// the batch is sealed or does not exist.
    #[arg(long)]
    batch: Option<String>,
    /// A correlation field, `NAME=VALUE` (repeatable), carried with the job
    /// as a plain `XADD`'s extra fields are, e.g. `--field tenant=acme` for
    /// a job type with `group_by = "tenant"`: a job whose group is at its
    /// `group_concurrency` waits in its group's line, not in the stream.
    #[arg(long = "field", value_name = "NAME=VALUE", value_parser = parse_field)]
    fields: Vec<(String, String)>,
}

/// `--field NAME=VALUE`.
fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!(
            "`{s}` is not a field; write NAME=VALUE, e.g. --field tenant=acme"
        )),
    }
}

/// A priority level's name.
fn parse_priority(s: &str) -> Result<Priority, String> {
    Priority::parse(s)
        .ok_or_else(|| format!("`{s}` is not a priority level; use high, normal or low"))
}

impl EnqueueArgs {
    /// Adds the job and prints its id (and, on standard error, whether it
    /// was a duplicate or when it is due).
    pub(crate) async fn exec(self) -> anyhow::Result<()> {
        let payload = if self.payload == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("cannot read the payload from standard input")?;
            buf
        } else {
            self.payload.into_bytes()
        };
        let job = &self.job;
        if job.is_empty() {
            anyhow::bail!("the job type is empty; name one of the config's [[job]] entries");
        }
        let q = self.on.connect().await?;
        let key = self.idempotency_key.as_deref();
        let batch = self.batch.as_deref();
        // A batch member goes through ward_enqueue, which refuses a sealed
        // or unknown batch and counts the member in the same step.
        // Correlation fields too: ward_enqueue parks the job of a group at
        // its cap instead of adding it to the stream.
        let plain = self.delay.is_none()
            && self.at.is_none()
            && key.is_none()
            && batch.is_none()
            && self.fields.is_empty();
        if plain && q.max_backlog().await?.is_none() {
            // The plain path: one XADD, exactly what any client can do.
            println!("{}", q.enqueue_at(job, &payload, self.priority).await?);
            return Ok(());
        }
        // A batch needs library version 5 or later, fields 6: an older one
        // would ignore the arguments and add the job without them.
        if batch.is_some() || !self.fields.is_empty() {
            q.ensure_functions().await?;
        }
        // A queue with a max_backlog: through ward_enqueue, which refuses
        // past it.
        let ttl = match (self.idempotency_ttl, key) {
            (Some(ttl), _) => ttl,
            (None, Some(_)) => self.on.target.idempotency_ttl(&self.on.queue, job)?,
            (None, None) => config::DEFAULT_IDEMPOTENCY_TTL,
        };
        let fields: Vec<(&str, &[u8])> = self
            .fields
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let done = match q
            .enqueue_opts(
                job,
                &payload,
                &EnqueueOptions {
                    key,
                    delay: self.delay,
                    at_ms: self.at,
                    ttl,
                    priority: self.priority,
                    batch,
                    fields: &fields,
                },
            )
            .await
        {
            Err(store::QueueError::Redis(e)) if e.code() == Some(store::BACKPRESSURE) => {
                anyhow::bail!(
                    "backpressure: queue `{}` refused the job: {}",
                    self.on.queue,
                    e.detail()
                        .unwrap_or("its backlog is at its max_backlog; nothing was added")
                );
            }
            Err(store::QueueError::Redis(e)) if e.code() == Some(store::BATCH_SEALED) => {
                anyhow::bail!(
                    "queue `{}` refused the job: {}",
                    self.on.queue,
                    e.detail()
                        .unwrap_or("its batch is sealed; nothing was added")
                );
            }
            Err(store::QueueError::Redis(e))
                if (batch.is_some() || !fields.is_empty()) && e.code() == Some("ERR") =>
            {
                anyhow::bail!(
                    "queue `{}` refused the job: {}",
                    self.on.queue,
                    e.detail().unwrap_or("nothing was added")
                );
            }
            other => other?,
        };
        println!("{}", done.id);
        if done.duplicate {
            eprintln!(
                "duplicate: idempotency key `{}` already belongs to job {}; nothing was added",
                key.unwrap_or(""),
                done.id
            );
        } else if let Some(due) = done.due_ms {
            eprintln!("due at {}", format_ms(due));
        }
        Ok(())
    }
}

fn parse_delay(s: &str) -> Result<Duration, String> {
    config::parse_duration(s)
}

/// `--delay`: a duration no longer than any other Ward accepts, checked
/// here so that a delay Redis scores or the CLI could not print is refused
/// before anything is enqueued.
fn parse_job_delay(s: &str) -> Result<Duration, String> {
    let delay = parse_delay(s)?;
    if delay > MAX_DURATION {
        return Err(too_far(s));
    }
    Ok(delay)
}

/// `--idempotency-ttl`: at least a millisecond (a key remembered for no
/// time deduplicates nothing) and no longer than any other Ward duration.
fn parse_key_ttl(s: &str) -> Result<Duration, String> {
    let ttl = parse_job_delay(s)?;
    if ttl < Duration::from_millis(1) {
        return Err(format!(
            "`{s}` is too short: a key must be remembered for at least 1ms"
        ));
    }
    Ok(ttl)
}

/// `--at`: an RFC 3339 time from 1970 to [`MAX_DURATION`] from now.
fn parse_at(s: &str) -> Result<u64, String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| {
        format!("`{s}` is not an RFC 3339 time ({e}); write it like 2026-11-22T03:00:00Z")
    })?;
    let at = u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{s}` is before 1970"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let latest = (now + MAX_DURATION).as_millis();
    if u128::from(at) > latest {
        return Err(too_far(s));
    }
    Ok(at)
}

/// The message for a `--delay` or `--at` too far ahead.
fn too_far(s: &str) -> String {
    format!(
        "`{s}` is too far ahead: a job may be delayed by at most {} days; nothing was enqueued",
        MAX_DURATION.as_secs() / 86_400
    )
}
