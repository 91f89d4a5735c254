//! The dead-letter stream: reading, requeuing, discarding, retention.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::reply::parse_entries;
use super::script::script;
use super::{Delivery, MAX_HISTORY, Queue, QueueError};

/// The fields of a dead-letter entry that describe the failure; every other
/// field is a correlation field carried from the job's entry (`user_id`,
/// `idempotency_key`, ...). The scripts that write or read dead letters get
/// it as the Lua set `DEAD_ENTRY_FIELDS`.
pub const DEAD_ENTRY_FIELDS: [&str; 14] = [
    "id", "job", "queue", "reason", "class", "code", "message", "upstream", "attempts", "first_at",
    "last_at", "plugin", "payload", "entry",
];

/// How long the record of a discarded job, or of a dead letter removed by
/// retention, is kept after that (then it expires, bounding memory).
pub const RETIRED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// What REQUEUE and DISCARD share: finding the dead letter, the history line.
const DEAD_LETTER: &str = include_str!("lua/dead_letter.lua");
static REQUEUE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(DEAD_LETTER, include_str!("lua/requeue.lua")));
static DISCARD_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(DEAD_LETTER, include_str!("lua/discard.lua")));
static TRIM_DEAD_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/trim_dead.lua")));

/// What became of a requeue or a discard of one dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Done. For a requeue, the new entry's id in `ward:{Q}:jobs`.
    Done(Option<String>),
    /// The dead letter was no longer in `ward:{Q}:dead`: someone requeued
    /// or discarded it meanwhile, or retention removed it. Nothing changed.
    Gone,
    /// Refused, nothing changed; says why.
    Refused(String),
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries older than `dead_max_age`.
    pub by_age: usize,
    /// Entries past `dead_max_len` (the oldest).
    pub by_len: usize,
    /// A per-call limit was hit; call again.
    pub more: bool,
}

/// An operator's action on one dead letter: which entry, of which job, by
/// whom, and why (`note`, `""` for none).
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterAct<'a> {
    /// The dead-letter entry's id in `ward:{Q}:dead`.
    pub dead_id: &'a str,
    /// The job it is a dead letter of (checked against the entry).
    pub job_id: &'a str,
    /// Who acts, for the job's history.
    pub by: &'a str,
    /// Why, for the history; `""` for no note.
    pub note: &'a str,
}

impl Queue {
    /// Whether Redis knows this queue at all (its jobs stream or its
    /// dead-letter stream exists).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn exists(&self) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let n: usize = redis::cmd("EXISTS")
            .arg(&self.keys.jobs)
            .arg(&self.keys.dead)
            .query_async(&mut con)
            .await?;
        Ok(n > 0)
    }

    /// Reads the newest `count` dead-letter entries (for tests and tools).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_letters(&self, count: usize) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys.dead)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        parse_entries(reply, "XREVRANGE")
    }

    /// Up to `count` dead-letter entries, newest first: those older than
    /// entry `before` (exclusive; `None`: from the newest) and dead-lettered
    /// at or after `since_ms` (Unix ms, `None`: no bound).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_page(
        &self,
        before: Option<&str>,
        since_ms: Option<u64>,
        count: usize,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(&self.keys.dead)
            .arg(before.map_or_else(|| "+".to_string(), |b| format!("({b}")))
            .arg(since_ms.map_or_else(|| "-".to_string(), |s| format!("{s}-0")))
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        parse_entries(reply, "XREVRANGE")
    }

    /// The dead-letter entry with stream id `dead_id`, if it is still there.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn dead_entry(&self, dead_id: &str) -> Result<Option<Delivery>, QueueError> {
        self.entry_in(&self.keys.dead, dead_id).await
    }

    /// Puts dead job `job_id` (dead-letter entry `dead_id`) back as a fresh
    /// job: one script that removes the dead letter, adds an entry at
    /// attempt 1 with the original payload, resets the record and appends
    /// `{"event":"requeued","by":..,"note":..,"at":..}` to the history.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn requeue_dead(&self, act: &DeadLetterAct<'_>) -> Result<Resolution, QueueError> {
        let mut inv = self.dead_letter_call(&REQUEUE_SCRIPT, act);
        inv.key(&self.keys.jobs);
        self.resolve("REQUEUE", &inv).await
    }

    /// Marks dead job `job_id` (dead-letter entry `dead_id`) `discarded`:
    /// one script that removes the dead letter, records who, when and why,
    /// and lets the record expire after [`RETIRED_TTL`].
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn discard_dead(&self, act: &DeadLetterAct<'_>) -> Result<Resolution, QueueError> {
        let mut inv = self.dead_letter_call(&DISCARD_SCRIPT, act);
        inv.arg(RETIRED_TTL.as_secs());
        self.resolve("DISCARD", &inv).await
    }

    /// Removes dead letters past `max_len` (oldest first) or older than
    /// `max_age`, at most `limit` per limit and call; their records expire
    /// after [`RETIRED_TTL`].
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn trim_dead(
        &self,
        max_len: Option<u64>,
        max_age: Option<Duration>,
        limit: usize,
    ) -> Result<Trimmed, QueueError> {
        let mut con = self.con.clone();
        let (by_age, by_len, more): (usize, usize, u8) = TRIM_DEAD_SCRIPT
            .key(&self.keys.dead)
            .arg(max_len.map(|n| n.to_string()).unwrap_or_default())
            .arg(
                max_age
                    .map(|a| a.as_millis().to_string())
                    .unwrap_or_default(),
            )
            .arg(&self.keys.record_prefix)
            .arg(RETIRED_TTL.as_secs())
            .arg(limit.max(1))
            .arg(MAX_HISTORY)
            .invoke_async(&mut con)
            .await?;
        Ok(Trimmed {
            by_age,
            by_len,
            more: more == 1,
        })
    }
}

/// REQUEUE and DISCARD take the same keys and arguments first (see
/// `lua/dead_letter.lua`).
impl Queue {
    fn dead_letter_call<'s>(
        &self,
        script: &'s redis::Script,
        act: &DeadLetterAct<'_>,
    ) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.keys.dead)
            .key(self.keys.record(act.job_id))
            .key(self.keys.history(act.job_id))
            .arg(act.dead_id)
            .arg(act.job_id)
            .arg(act.by)
            .arg(act.note)
            .arg(MAX_HISTORY);
        inv
    }

    async fn resolve(
        &self,
        what: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<Resolution, QueueError> {
        let mut con = self.con.clone();
        let (status, detail): (String, String) = inv.invoke_async(&mut con).await?;
        resolution(what, status, detail)
    }
}

fn resolution(
    what: &'static str,
    status: String,
    detail: String,
) -> Result<Resolution, QueueError> {
    match status.as_str() {
        "ok" => Ok(Resolution::Done(Some(detail).filter(|d| !d.is_empty()))),
        "gone" => Ok(Resolution::Gone),
        "refused" => Ok(Resolution::Refused(detail)),
        _ => Err(QueueError::Protocol {
            what,
            detail: format!("{status} {detail}"),
        }),
    }
}
