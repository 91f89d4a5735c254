//! One queue's depth and lag for observability, read in one script call.

use std::sync::LazyLock;

use super::script::script;
use super::{GROUP, Queue, QueueError};

/// One queue's depth and lag, read in one script call (observability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Whether the consumer group `ward` exists on the stream.
    pub group_exists: bool,
    /// Entries not yet delivered to the group.
    pub ready: u64,
    /// Entries delivered and not yet acknowledged.
    pub pending: u64,
    /// Jobs in the delayed set (retries and scheduled jobs).
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead: u64,
    /// The Redis server's time, Unix ms.
    pub now_ms: u64,
    /// Enqueue time (entry id ms) of the oldest entry not yet delivered.
    pub oldest_ready_ms: Option<u64>,
    /// Batches not finished yet (open, or sealed with members pending).
    pub batches_unfinished: u64,
    /// Whether the whole queue is paused (`ward pause`, not expired).
    pub paused: bool,
    /// When a daemon last recorded an outcome of the queue (Unix ms, the
    /// Redis clock); `None` before the first.
    pub last_progress_ms: Option<u64>,
}

static SAMPLE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/sample.lua")));

impl Queue {
    /// Reads the queue's depth by state and the age of its oldest ready
    /// entry in one round trip (read-only).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn sample(&self) -> Result<QueueSample, QueueError> {
        let mut con = self.con.clone();
        let v: Vec<i64> = SAMPLE_SCRIPT
            .key(&self.keys.jobs)
            .key(&self.keys.delayed)
            .key(&self.keys.dead)
            .key(&self.keys.acked)
            .key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .key(&self.keys.batches_unfinished)
            .key(&self.keys.paused)
            .key(&self.keys.progress)
            .arg(GROUP)
            .invoke_async(&mut con)
            .await?;
        let [
            found,
            ready,
            pending,
            delayed,
            dead,
            now,
            oldest,
            batches,
            paused,
            progress,
        ] = v[..]
        else {
            return Err(QueueError::Protocol {
                what: "queue sample",
                detail: format!("{v:?}"),
            });
        };
        let n = |x: i64| u64::try_from(x).unwrap_or(0);
        Ok(QueueSample {
            group_exists: found == 1,
            ready: n(ready),
            pending: n(pending),
            delayed: n(delayed),
            dead: n(dead),
            now_ms: n(now),
            oldest_ready_ms: u64::try_from(oldest).ok(),
            batches_unfinished: n(batches),
            paused: paused == 1,
            last_progress_ms: u64::try_from(progress).ok(),
        })
    }
}
