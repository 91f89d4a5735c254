//! The dead-letter stream: reading, requeuing, discarding, retention.

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::batches::BATCH_LUA;
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
static REQUEUE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &format!("{DEAD_LETTER}{BATCH_LUA}"),
        include_str!("lua/requeue.lua"),
    )
});
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

/// One dead letter of a chunk acted on in one script call: which entry, of
/// which job.
#[derive(Debug, Clone, Copy)]
pub struct DeadRef<'a> {
    /// The dead-letter entry's id in `ward:{Q}:dead`.
    pub dead_id: &'a str,
    /// The job it is a dead letter of (checked against the entry).
    pub job_id: &'a str,
}

impl<'a> DeadRef<'a> {
    fn of(act: &DeadLetterAct<'a>) -> DeadRef<'a> {
        DeadRef {
            dead_id: act.dead_id,
            job_id: act.job_id,
        }
    }
}

/// What an edit-and-requeue changed, as the job's history keeps it: the
/// digests and sizes of both payloads, never the old payload itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PayloadEdit {
    /// sha256 (hex) of the payload the job died with.
    pub old_payload_sha256: String,
    /// Its size in bytes.
    pub old_payload_size: usize,
    /// sha256 (hex) of the corrected payload.
    pub payload_sha256: String,
    /// Its size in bytes.
    pub payload_size: usize,
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
        let one = [DeadRef::of(act)];
        let mut done = self.requeue_dead_chunk(act.by, act.note, &one).await?;
        done.pop().ok_or_else(|| short_reply("REQUEUE"))
    }

    /// [`Queue::requeue_dead`] of each dead letter of `chunk`, in one script
    /// call (so keep a chunk small, a few dozen: each requeue is a dozen
    /// commands, and the call holds Redis throughout); one resolution per
    /// dead letter, in order.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn requeue_dead_chunk(
        &self,
        by: &str,
        note: &str,
        chunk: &[DeadRef<'_>],
    ) -> Result<Vec<Resolution>, QueueError> {
        let inv = self.dead_letter_call(&REQUEUE_SCRIPT, by, note, chunk, |_| None);
        self.resolve("REQUEUE", &inv, chunk.len()).await
    }

    /// Requeues dead job `job_id` like [`Queue::requeue_dead`] but with
    /// `payload` in place of its own, which the record then keeps. The
    /// history's `requeued` event says `"edited":true` with the sha256 and
    /// size of the old payload and of the new one: the old payload itself is
    /// kept nowhere (it may be what held a secret by mistake).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn requeue_dead_edited(
        &self,
        act: &DeadLetterAct<'_>,
        payload: &[u8],
    ) -> Result<(Resolution, PayloadEdit), QueueError> {
        let mut con = self.con.clone();
        let old: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.record(act.job_id))
            .arg("payload")
            .query_async(&mut con)
            .await?;
        let old = old.unwrap_or_default();
        let edit = PayloadEdit {
            old_payload_sha256: crate::digest::sha256_hex(&old),
            old_payload_size: old.len(),
            payload_sha256: crate::digest::sha256_hex(payload),
            payload_size: payload.len(),
        };
        let json = serde_json::to_string(&edit).map_err(|e| QueueError::Protocol {
            what: "REQUEUE",
            detail: e.to_string(),
        })?;
        let one = [DeadRef::of(act)];
        let inv = self.dead_letter_call(&REQUEUE_SCRIPT, act.by, act.note, &one, |_| {
            Some((payload, json.as_str()))
        });
        let mut done = self.resolve("REQUEUE", &inv, 1).await?;
        let resolution = done.pop().ok_or_else(|| short_reply("REQUEUE"))?;
        Ok((resolution, edit))
    }

    /// Marks dead job `job_id` (dead-letter entry `dead_id`) `discarded`:
    /// one script that removes the dead letter, records who, when and why,
    /// and lets the record expire after [`RETIRED_TTL`].
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn discard_dead(&self, act: &DeadLetterAct<'_>) -> Result<Resolution, QueueError> {
        let one = [DeadRef::of(act)];
        let mut done = self.discard_dead_chunk(act.by, act.note, &one).await?;
        done.pop().ok_or_else(|| short_reply("DISCARD"))
    }

    /// [`Queue::discard_dead`] of each dead letter of `chunk`, in one script
    /// call; one resolution per dead letter, in order.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn discard_dead_chunk(
        &self,
        by: &str,
        note: &str,
        chunk: &[DeadRef<'_>],
    ) -> Result<Vec<Resolution>, QueueError> {
        let inv = self.dead_letter_call(&DISCARD_SCRIPT, by, note, chunk, |_| None);
        self.resolve("DISCARD", &inv, chunk.len()).await
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

/// REQUEUE and DISCARD take the same layout (see `lua/dead_letter.lua`).
impl Queue {
    fn dead_letter_call<'s, 'p>(
        &self,
        script: &'s redis::Script,
        by: &str,
        note: &str,
        chunk: &[DeadRef<'_>],
        edit: impl Fn(usize) -> Option<(&'p [u8], &'p str)>,
    ) -> redis::ScriptInvocation<'s> {
        let mut inv = script.prepare_invoke();
        inv.key(&self.keys.dead)
            .key(&self.keys.jobs)
            .arg(by)
            .arg(note)
            .arg(MAX_HISTORY)
            .arg(RETIRED_TTL.as_secs());
        for (i, d) in chunk.iter().enumerate() {
            let (payload, json) = edit(i).unwrap_or((&[][..], ""));
            inv.key(self.keys.record(d.job_id))
                .key(self.keys.history(d.job_id))
                .arg(d.dead_id)
                .arg(d.job_id)
                .arg(payload)
                .arg(json);
        }
        inv
    }

    async fn resolve(
        &self,
        what: &'static str,
        inv: &redis::ScriptInvocation<'_>,
        n: usize,
    ) -> Result<Vec<Resolution>, QueueError> {
        let mut con = self.con.clone();
        let flat: Vec<String> = inv.invoke_async(&mut con).await?;
        if flat.len() != 2 * n {
            return Err(short_reply(what));
        }
        flat.chunks_exact(2)
            .map(|p| resolution(what, &p[0], &p[1]))
            .collect()
    }
}

fn short_reply(what: &'static str) -> QueueError {
    QueueError::Protocol {
        what,
        detail: "not one outcome per dead letter".to_string(),
    }
}

fn resolution(what: &'static str, status: &str, detail: &str) -> Result<Resolution, QueueError> {
    match status {
        "ok" => Ok(Resolution::Done(
            Some(detail.to_string()).filter(|d| !d.is_empty()),
        )),
        "gone" => Ok(Resolution::Gone),
        "refused" => Ok(Resolution::Refused(detail.to_string())),
        _ => Err(QueueError::Protocol {
            what,
            detail: format!("{status} {detail}"),
        }),
    }
}
