//! Adding jobs: a plain enqueue, the `ward_enqueue` function library, and
//! moving due delayed jobs back to the stream.

use std::sync::LazyLock;
use std::time::Duration;

use redis::RedisError;

use super::batches::BATCH_LUA;
use super::script::{RECORD_ENTRY, library, script};
use super::{Queue, QueueError, Store};
use crate::priority::{self, Priority};

/// Version of the Redis Function library; bump it with every change.
/// 2: arguments are checked before anything is written.
/// 3: a seventh, optional argument: the priority level.
/// 4: past the queue's `max_backlog`, `ward_enqueue` refuses with
/// `BACKPRESSURE` (see [`BACKPRESSURE`]).
/// 5: an eighth, optional argument: the batch the job joins (refused with
/// `BATCH_SEALED` when it is sealed, or with `ERR` when it does not exist).
/// 6: correlation fields as name/value pairs after the eighth argument;
/// a job of a grouped job type (`group_by`) whose group is at its cap is
/// parked in its group's waiting line instead of joining the stream (see
/// [`crate::fairness`]).
/// 7: a keyed job's entry carries `ward:key_claimed` (its key was set to it
/// here), so the daemon that reads it does not claim the key again.
pub const FUNCTIONS_VERSION: &str = "7";

/// The error code `ward_enqueue` refuses with when the batch named is
/// sealed: `BATCH_SEALED batch B is sealed and takes no more members;
/// nothing was added`.
pub const BATCH_SEALED: &str = "BATCH_SEALED";

/// The error code `ward_enqueue` refuses with past a queue's `max_backlog`:
/// the reply reads `BACKPRESSURE queue backlog is N jobs, at its
/// max_backlog of M; nothing was added; try again later`.
pub const BACKPRESSURE: &str = "BACKPRESSURE";

/// The latest time Ward takes or shows, Unix ms (9999-12-31T23:59:59.999Z):
/// `ward_enqueue`'s `at_ms`, `delay_ms` and `ttl_ms` stay within it.
pub const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// The Redis Function library every client can call to enqueue atomically.
///
/// `FCALL ward_enqueue 1 ward:{Q}:jobs <job> <payload> [idempotency_key] [delay_ms] [ttl_ms] [at_ms] [priority] [batch] [name value]...`
/// (empty strings for the optional arguments you skip; `priority` is
/// `high`, `normal` or `low`; `batch` an open batch of the queue, see
/// [`crate::store::Queue::create_batch`]; then any correlation fields, as
/// a plain `XADD` carries them, e.g. `tenant acme`) returns
/// `[job_id, "created" | "duplicate", due_ms]` (`due_ms` is 0 when the job is
/// ready now). `ttl_ms` is how long the key is remembered (default 24 h).
pub static FUNCTIONS: LazyLock<String> =
    LazyLock::new(|| library(&format!("{BATCH_LUA}{}", include_str!("lua/functions.lua"))));

static PROMOTE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(RECORD_ENTRY, include_str!("lua/promote.lua")));

/// The options of one `ward_enqueue` call.
#[derive(Debug, Clone, Copy)]
pub struct EnqueueOptions<'a> {
    /// The idempotency key, if any.
    pub key: Option<&'a str>,
    /// Start the job after this long.
    pub delay: Option<Duration>,
    /// Start the job at this time (Unix ms); wins over `delay`.
    pub at_ms: Option<u64>,
    /// How long the key is remembered.
    pub ttl: Duration,
    /// The job's priority level.
    pub priority: Priority,
    /// The open batch the job joins, if any.
    pub batch: Option<&'a str>,
    /// Correlation fields (name, value), e.g. the job type's `group_by`
    /// field; needs library version 6.
    pub fields: &'a [(&'a str, &'a [u8])],
}

/// What a client's enqueue did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    /// The job id (the first job's, for a duplicate).
    pub id: String,
    /// True when the idempotency key was already taken: nothing was added.
    pub duplicate: bool,
    /// When the job is due (Unix ms, server clock), for a delayed job.
    pub due_ms: Option<u64>,
}

/// What one promotion pass did, in the Redis server's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved from the delayed set to the stream.
    pub moved: usize,
    /// The server's time when it ran, Unix ms.
    pub now_ms: u64,
    /// Due time of the earliest job still waiting, if any.
    pub next_due_ms: Option<u64>,
    /// Ids found in the delayed set without a job record (cannot be run).
    pub missing: Vec<String>,
}

impl Queue {
    /// Appends a job to the stream; returns its id (the entry id).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue(&self, job: &str, payload: &[u8]) -> Result<String, QueueError> {
        self.enqueue_at(job, payload, Priority::Normal).await
    }

    /// Appends a job of level `level` to the stream (a plain `XADD`, with
    /// the `priority` field unless the level is `normal`); returns its id.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue_at(
        &self,
        job: &str,
        payload: &[u8],
        level: Priority,
    ) -> Result<String, QueueError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.keys.jobs)
            .arg("*")
            .arg("job")
            .arg(job)
            .arg("payload")
            .arg(payload);
        if level != Priority::Normal {
            cmd.arg(priority::FIELD).arg(level.as_str());
        }
        let id: String = cmd.query_async(&mut con).await?;
        Ok(id)
    }

    /// Moves up to `limit` due jobs from the delayed set back to the stream.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn promote_due(&self, limit: usize) -> Result<Promoted, QueueError> {
        let mut con = self.con.clone();
        let (moved, now_ms, next_due, missing): (usize, u64, i64, Vec<String>) = PROMOTE_SCRIPT
            .key(&self.keys.delayed)
            .key(&self.keys.jobs)
            .arg(&self.keys.record_prefix)
            .arg(limit)
            .invoke_async(&mut con)
            .await?;
        Ok(Promoted {
            moved,
            now_ms,
            next_due_ms: u64::try_from(next_due).ok(),
            missing,
        })
    }

    /// Loads (or replaces) the `ward` Redis Function library.
    ///
    /// # Errors
    /// Redis errors (e.g. a server older than 7.0, which has no functions).
    pub async fn load_functions(&self) -> Result<(), QueueError> {
        self.store().load_functions().await
    }

    /// Loads the function library if the server lost it or has another
    /// version; returns whether it had to (see [`Store::ensure_functions`]).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ensure_functions(&self) -> Result<bool, QueueError> {
        self.store().ensure_functions().await
    }

    /// Enqueues through `ward_enqueue`: deduplicated by `key` (remembered for
    /// `ttl`), delayed by `delay` or until `at_ms`. Loads the function
    /// library first if the server does not have it (e.g. after a restart).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue_with(
        &self,
        job: &str,
        payload: &[u8],
        key: Option<&str>,
        delay: Option<Duration>,
        at_ms: Option<u64>,
        ttl: Duration,
    ) -> Result<Enqueued, QueueError> {
        let o = EnqueueOptions {
            key,
            delay,
            at_ms,
            ttl,
            priority: Priority::Normal,
            batch: None,
            fields: &[],
        };
        self.enqueue_opts(job, payload, &o).await
    }

    /// [`Queue::enqueue_with`] with every option of `ward_enqueue`,
    /// the priority level included.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn enqueue_opts(
        &self,
        job: &str,
        payload: &[u8],
        o: &EnqueueOptions<'_>,
    ) -> Result<Enqueued, QueueError> {
        let EnqueueOptions {
            key,
            delay,
            at_ms,
            ttl,
            priority: level,
            batch,
            fields,
        } = *o;
        let mut cmd = redis::cmd("FCALL");
        cmd.arg("ward_enqueue")
            .arg(1)
            .arg(&self.keys.jobs)
            .arg(job)
            .arg(payload)
            .arg(key.unwrap_or(""))
            .arg(delay.map(|d| d.as_millis().to_string()).unwrap_or_default())
            .arg(ttl.as_millis().to_string())
            .arg(at_ms.map(|d| d.to_string()).unwrap_or_default())
            .arg(level.as_str())
            .arg(batch.unwrap_or(""));
        for (name, value) in fields {
            cmd.arg(*name).arg(*value);
        }
        let mut con = self.con.clone();
        let reply: Result<(String, String, u64), RedisError> = cmd.query_async(&mut con).await;
        let (id, status, due) = match reply {
            Err(e) if is_missing_function(&e) => {
                self.load_functions().await?;
                cmd.query_async(&mut con).await?
            }
            other => other?,
        };
        Ok(Enqueued {
            id,
            duplicate: status == "duplicate",
            due_ms: (due > 0).then_some(due),
        })
    }
}

/// The function library concerns the server, not one queue.
impl Store {
    /// Loads (or replaces) the `ward` Redis Function library.
    ///
    /// # Errors
    /// Redis errors (e.g. a server older than 7.0, which has no functions).
    pub async fn load_functions(&self) -> Result<(), QueueError> {
        let mut con = self.con();
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(FUNCTIONS.as_str())
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// Loads the function library if the server lost it (a restart without
    /// persistence, a `FUNCTION FLUSH`) or has another version; returns
    /// whether it had to.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn ensure_functions(&self) -> Result<bool, QueueError> {
        let mut con = self.con();
        let mut version = redis::cmd("FCALL_RO");
        version.arg("ward_version").arg(0);
        // Clients may call `ward_enqueue` on any master of a cluster, so
        // every master must have the library, not just one.
        let mut stale = Vec::new();
        for (node, reply) in con.on_every_master(version).await? {
            match reply.and_then(|v| Ok(redis::from_redis_value::<String>(v)?)) {
                Ok(v) if v == FUNCTIONS_VERSION => {}
                Ok(_) => stale.push(node),
                Err(e) if is_missing_function(&e) => stale.push(node),
                Err(e) => return Err(e.into()),
            }
        }
        if stale.is_empty() {
            return Ok(false);
        }
        if con.is_cluster() {
            tracing::info!(masters = ?stale, "loading Ward's functions on cluster masters that lack them");
        }
        self.load_functions().await.map(|()| true)
    }
}

fn is_missing_function(e: &RedisError) -> bool {
    e.to_string().contains("Function not found")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_library_reports_its_own_version() {
        assert!(include_str!("lua/functions.lua").contains("return FUNCTIONS_VERSION end"));
        assert!(FUNCTIONS.contains(&format!(
            "\nlocal FUNCTIONS_VERSION = '{FUNCTIONS_VERSION}'\n"
        )));
        assert!(FUNCTIONS.starts_with("#!lua name=ward\n"));
    }
}
