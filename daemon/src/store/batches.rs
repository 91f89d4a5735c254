//! Batches: a ledger per batch of jobs, kept in the queue's hash tag.
//!
//! `ward:{Q}:batch:<id>` is a hash: `id`, `state` (`open` | `sealed`),
//! `created_at`, `sealed_at`, `finished_at` (Unix ms; `finished_at` is the
//! first time the batch was sealed with no member pending), and the member
//! counts `total`, `pending` (waiting, retrying or running), `succeeded`,
//! `dead`, `cancelled`, `late` (members that joined after the seal, by a
//! plain XADD), `implicit` (`1` when a plain XADD named a batch nobody
//! created), `succeeded_at` (the first time every member had succeeded),
//! the callback job types `on_complete` and `on_success`, and the ids of
//! the jobs they enqueued (`on_complete_job`, `on_success_job`). `ward:{Q}:batch:<id>:failed` maps each dead member's job id
//! to JSON (`class`, `code`, `message`, `reason`, `attempts`, `at`);
//! `ward:{Q}:batches` indexes the queue's batches by creation time.
//!
//! The counts change only inside the scripts that change a member's state
//! (`ward_enqueue`, LEASE for a plain XADD's member, APPLY, REQUEUE,
//! CANCEL), through the helpers of `lua/batch_ledger.lua`, so they never
//! drift from the jobs.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::script::script;
use super::{Queue, QueueError};

/// The ledger helpers (`batch_keys`, `batch_join`, `batch_end`,
/// `batch_requeued`), prepended to every script that uses them.
pub(super) const BATCH_LUA: &str = include_str!("lua/batch_ledger.lua");

static CREATE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/batch_create.lua")));
static SEAL_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(BATCH_LUA, include_str!("lua/batch_seal.lua")));
static EXPIRE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(BATCH_LUA, include_str!("lua/batch_expire.lua")));

/// Batch ids ledger retention looks at per script call: a few ms of
/// Redis' time.
const EXPIRE_CHUNK: usize = 500;

/// Longest batch id: it is part of two keys and of every member's entry.
pub const MAX_BATCH_ID: usize = 128;

/// The jobs a batch enqueues when it settles, in its own queue, with the
/// batch's summary as their payload (JSON: `batch`, `event`, `total`,
/// `succeeded`, `dead`, `cancelled`, `late`, `created_at`, `sealed_at`,
/// `finished_at`, `at`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Callbacks {
    /// Job type enqueued once, when every member has ended for the first
    /// time (the batch sealed).
    pub on_complete: Option<String>,
    /// Job type enqueued once, when every member has succeeded (maybe
    /// after dead members were requeued).
    pub on_success: Option<String>,
}

/// One batch's ledger, as Redis holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchLedger {
    /// The batch id.
    pub id: String,
    /// False while members may still join (`open`), true once sealed.
    pub sealed: bool,
    /// When it was created, Unix ms.
    pub created_at_ms: u64,
    /// When it was sealed, Unix ms.
    pub sealed_at_ms: Option<u64>,
    /// The first time it was sealed with no member pending, Unix ms.
    pub finished_at_ms: Option<u64>,
    /// Members that ever joined.
    pub total: u64,
    /// Members not ended yet: waiting, retrying, held or running.
    pub pending: u64,
    /// Members that succeeded.
    pub succeeded: u64,
    /// Members dead-lettered (and not requeued since).
    pub dead: u64,
    /// Members cancelled.
    pub cancelled: u64,
    /// Members that joined after the seal (only a plain XADD can).
    pub late: u64,
    /// True when a plain XADD named the batch before anyone created it.
    pub implicit: bool,
    /// The first time every member had succeeded, Unix ms.
    pub succeeded_at_ms: Option<u64>,
    /// Its callback job types.
    pub callbacks: Callbacks,
    /// The id of the `on_complete` job, once enqueued.
    pub on_complete_job: Option<String>,
    /// The id of the `on_success` job, once enqueued.
    pub on_success_job: Option<String>,
}

/// One dead member of a batch, as its ledger keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedMember {
    /// The job id.
    #[serde(default)]
    pub job_id: String,
    /// The last failure's class.
    #[serde(default)]
    pub class: String,
    /// The last failure's code ('' for none).
    #[serde(default)]
    pub code: String,
    /// The last failure's message.
    #[serde(default)]
    pub message: String,
    /// Why it was dead-lettered (`permanent`, `max_attempts`, ...).
    #[serde(default)]
    pub reason: String,
    /// Attempts it made.
    #[serde(default)]
    pub attempts: u64,
    /// When it was dead-lettered, Unix ms.
    #[serde(default)]
    pub at: u64,
}

/// What [`Queue::seal_batch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// Sealed now.
    Now,
    /// It was sealed already; nothing changed.
    Already,
    /// No such batch.
    Missing,
}

/// Why a batch id cannot be used; `None` when it can.
#[must_use]
pub fn bad_batch_id(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("a batch id cannot be empty".to_string());
    }
    if id.len() > MAX_BATCH_ID {
        return Some(format!(
            "batch id `{id}` is longer than {MAX_BATCH_ID} bytes"
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Some(format!(
            "batch id `{id}` holds `{c}`; use letters, digits, `-`, `_`, `.` and `:`"
        ));
    }
    None
}

impl BatchLedger {
    /// Reads a ledger hash; `None` when it is empty (no such batch).
    fn from_hash(h: &HashMap<String, String>) -> Option<BatchLedger> {
        if h.is_empty() {
            return None;
        }
        let n = |k: &str| h.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        // A count below zero would be a bug elsewhere; shown as 0.
        let count = |k: &str| u64::try_from(n(k)).unwrap_or(0);
        let time = |k: &str| h.get(k).and_then(|v| v.parse::<u64>().ok());
        let text = |k: &str| h.get(k).filter(|v| !v.is_empty()).cloned();
        Some(BatchLedger {
            id: h.get("id").cloned().unwrap_or_default(),
            sealed: h.get("state").is_some_and(|s| s == "sealed"),
            created_at_ms: time("created_at").unwrap_or(0),
            sealed_at_ms: time("sealed_at"),
            finished_at_ms: time("finished_at"),
            total: count("total"),
            pending: count("pending"),
            succeeded: count("succeeded"),
            dead: count("dead"),
            cancelled: count("cancelled"),
            late: count("late"),
            implicit: h.get("implicit").is_some_and(|v| v == "1"),
            succeeded_at_ms: time("succeeded_at"),
            callbacks: Callbacks {
                on_complete: text("on_complete"),
                on_success: text("on_success"),
            },
            on_complete_job: text("on_complete_job"),
            on_success_job: text("on_success_job"),
        })
    }
}

impl Queue {
    /// Creates the open batch `id` with its callbacks; returns false when
    /// it exists already (nothing changed).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn create_batch(&self, id: &str, callbacks: &Callbacks) -> Result<bool, QueueError> {
        let (ledger, _) = self.keys.batch(id);
        let mut con = self.con.clone();
        let created: i64 = CREATE_SCRIPT
            .key(&ledger)
            .key(&self.keys.batches)
            .key(&self.keys.batches_unfinished)
            .arg(id)
            .arg(callbacks.on_complete.as_deref().unwrap_or(""))
            .arg(callbacks.on_success.as_deref().unwrap_or(""))
            .invoke_async(&mut con)
            .await?;
        Ok(created == 1)
    }

    /// Seals batch `id`: no member may join it through `ward_enqueue` any
    /// more.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn seal_batch(&self, id: &str) -> Result<Sealed, QueueError> {
        let (ledger, _) = self.keys.batch(id);
        let mut con = self.con.clone();
        let r: String = SEAL_SCRIPT
            .key(&ledger)
            .key(&self.keys.jobs)
            .key(&self.keys.batches_unfinished)
            .invoke_async(&mut con)
            .await?;
        Ok(match r.as_str() {
            "sealed" => Sealed::Now,
            "already" => Sealed::Already,
            _ => Sealed::Missing,
        })
    }

    /// Batch `id`'s ledger, `None` when there is no such batch.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn batch(&self, id: &str) -> Result<Option<BatchLedger>, QueueError> {
        let (ledger, _) = self.keys.batch(id);
        let mut con = self.con.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&ledger)
            .query_async(&mut con)
            .await?;
        Ok(BatchLedger::from_hash(&h))
    }

    /// Batch `id`'s dead members (all of them: a batch's failures are what
    /// its owner came to see).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn batch_failures(&self, id: &str) -> Result<Vec<FailedMember>, QueueError> {
        let (_, failed) = self.keys.batch(id);
        let mut con = self.con.clone();
        let h: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(&failed)
            .query_async(&mut con)
            .await?;
        let mut out: Vec<FailedMember> = h
            .into_iter()
            .map(|(job_id, json)| {
                let mut m: FailedMember = serde_json::from_str(&json).unwrap_or_default();
                m.job_id = job_id;
                m
            })
            .collect();
        out.sort_by(|a, b| (a.at, &a.job_id).cmp(&(b.at, &b.job_id)));
        Ok(out)
    }

    /// Ledger retention: removes the ledgers (with their failed members,
    /// index entry and pause) of the batches that finished before
    /// `cut_ms` (Unix ms) and have had nothing pending since, in chunks of
    /// one script each. Returns how many were removed. Safe beside other
    /// daemons doing the same.
    ///
    /// # Errors
    /// Redis errors; what was removed by then stays removed.
    pub async fn expire_batches(&self, cut_ms: u64) -> Result<u64, QueueError> {
        let mut con = self.con.clone();
        let (mut from, mut total) = (0u64, 0u64);
        loop {
            let (removed, looked, kept): (u64, u64, u64) = EXPIRE_SCRIPT
                .key(&self.keys.batches)
                .key(&self.keys.paused)
                .arg(self.keys.prefix())
                .arg(cut_ms)
                .arg(from)
                .arg(EXPIRE_CHUNK)
                .invoke_async(&mut con)
                .await?;
            total += removed;
            from += kept;
            if usize::try_from(looked).unwrap_or(0) < EXPIRE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// The queue's batches, newest first, at most `limit`.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn batches(&self, limit: usize) -> Result<Vec<BatchLedger>, QueueError> {
        let mut con = self.con.clone();
        let stop = isize::try_from(limit).unwrap_or(isize::MAX).max(1) - 1;
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&self.keys.batches)
            .arg(0)
            .arg(stop)
            .arg("REV")
            .query_async(&mut con)
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys.batch(id).0);
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut con).await?;
        Ok(hashes.iter().filter_map(BatchLedger::from_hash).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_ids_are_short_plain_words() {
        assert_eq!(bad_batch_id("import-17.v2:a_b"), None);
        assert!(bad_batch_id("").is_some());
        assert!(bad_batch_id("a b").unwrap().contains("` `"));
        assert!(bad_batch_id("{x}").is_some());
        assert!(bad_batch_id(&"x".repeat(MAX_BATCH_ID + 1)).is_some());
    }

    #[test]
    fn a_ledger_hash_reads_as_counts_and_times() {
        let h: HashMap<String, String> = [
            ("id", "b1"),
            ("state", "sealed"),
            ("created_at", "10"),
            ("sealed_at", "20"),
            ("total", "5"),
            ("pending", "1"),
            ("succeeded", "3"),
            ("dead", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let l = BatchLedger::from_hash(&h).unwrap();
        assert!(l.sealed);
        assert_eq!((l.total, l.pending, l.succeeded, l.dead), (5, 1, 3, 1));
        assert_eq!((l.sealed_at_ms, l.finished_at_ms), (Some(20), None));
        assert_eq!(BatchLedger::from_hash(&HashMap::new()), None);
    }
}
