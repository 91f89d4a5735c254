//! Pauses: the hash `ward:{Q}:paused` (field `*` for the whole queue, else
//! a job type; value JSON `{"by","at_ms","note","until_ms"}`) and the set
//! `ward:{Q}:held` of the jobs held back meanwhile.
//!
//! A job is held by APPLY (`lua/apply.lua`, kind `hold`), which checks the
//! pause in the same step; it is released by RELEASE (`lua/release.lua`)
//! in chunks, after the pause is removed. Both read the pause through
//! `lua/paused.lua`, so they agree on what is paused.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::script::{RECORD_ENTRY, script};
use super::{MAX_HISTORY, Queue, QueueError};

/// The field of `ward:{Q}:paused` that pauses the whole queue.
pub const WHOLE_QUEUE: &str = "*";
/// The start of the field of `ward:{Q}:paused` that pauses (quarantines)
/// one batch: `batch:<id>`. Job type names cannot clash with it: a pause of
/// a job type so named is refused.
pub const BATCH_PAUSE_PREFIX: &str = "batch:";
/// Most held jobs RELEASE looks at in one call: a few ms of Redis' time.
pub const RELEASE_CHUNK: usize = 500;
/// How many times a release goes over the held set again after a pass that
/// released jobs and skipped others (jobs removed meanwhile by another
/// releaser shift the positions, so a pass may step over a job).
const RELEASE_PASSES: usize = 4;
/// Held ids read per round trip when counting them by job type.
const COUNT_CHUNK: usize = 1000;

/// What APPLY and RELEASE share: whether a job type is paused now.
pub(super) const PAUSED_LUA: &str = include_str!("lua/paused.lua");

static RELEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &format!("{PAUSED_LUA}{RECORD_ENTRY}"),
        include_str!("lua/release.lua"),
    )
});
static UNPAUSE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/unpause.lua")));

/// One pause, as `ward:{Q}:paused` stores it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pause {
    /// Who paused.
    pub by: String,
    /// When, Unix ms.
    pub at_ms: u64,
    /// Why.
    pub note: String,
    /// When it ends by itself, Unix ms; `None`: at a resume.
    pub until_ms: Option<u64>,
}

impl Pause {
    /// Whether it holds jobs back at `now_ms` (its `until_ms` has not passed).
    #[must_use]
    pub fn in_force(&self, now_ms: u64) -> bool {
        self.until_ms.is_none_or(|u| now_ms < u)
    }

    /// The pause stored as `raw`; a value that is not such JSON still
    /// counts as a pause (by `?`), as the scripts count it.
    fn read(raw: &str) -> Pause {
        serde_json::from_str(raw).unwrap_or_else(|_| Pause {
            by: "?".into(),
            at_ms: 0,
            note: format!("(unreadable pause: {raw})"),
            until_ms: None,
        })
    }
}

/// The pauses of one queue, by field (`*` or a job type).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Pauses(pub BTreeMap<String, Pause>);

impl Pauses {
    /// Whether `field` (`*` or a job type) is paused at `now_ms`.
    #[must_use]
    pub fn in_force(&self, field: &str, now_ms: u64) -> bool {
        self.0.get(field).is_some_and(|p| p.in_force(now_ms))
    }

    /// Whether the whole queue is paused at `now_ms`.
    #[must_use]
    pub fn queue_paused(&self, now_ms: u64) -> bool {
        self.in_force(WHOLE_QUEUE, now_ms)
    }

    /// Whether jobs of type `job` are held back at `now_ms`: `Some(true)`
    /// when the whole queue is paused, `Some(false)` when only the job
    /// type is, `None` when neither.
    #[must_use]
    pub fn holds(&self, job: &str, now_ms: u64) -> Option<bool> {
        if self.queue_paused(now_ms) {
            Some(true)
        } else if self.in_force(job, now_ms) {
            Some(false)
        } else {
            None
        }
    }

    /// Whether batch `batch` (`None`: the job is in none) is paused at
    /// `now_ms`. Without any pause this costs nothing: it runs per job.
    #[must_use]
    pub fn holds_batch(&self, batch: Option<&str>, now_ms: u64) -> bool {
        let Some(batch) = batch else {
            return false;
        };
        self.0
            .iter()
            .any(|(f, p)| f.strip_prefix(BATCH_PAUSE_PREFIX) == Some(batch) && p.in_force(now_ms))
    }

    /// The pauses whose `until_ms` has passed at `now_ms` (a daemon ends
    /// them), with that `until_ms`.
    pub fn expired(&self, now_ms: u64) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().filter_map(move |(f, p)| match p.until_ms {
            Some(u) if u <= now_ms => Some((f.as_str(), u)),
            _ => None,
        })
    }
}

/// What one release of held jobs did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Jobs put back in the stream.
    pub released: u64,
    /// Ids in the held set with no record, or one no longer paused (a
    /// cancel): removed from it, nothing delivered.
    pub dropped: u64,
}

/// How many jobs are held, by job type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HeldCounts {
    /// Jobs in `ward:{Q}:held`.
    pub total: u64,
    /// Of those looked at, how many per job type.
    pub by_type: BTreeMap<String, u64>,
    /// False when there were more than were counted by type.
    pub complete: bool,
}

impl Queue {
    /// The queue's pauses, including those whose `until_ms` has passed.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn pauses(&self) -> Result<Pauses, QueueError> {
        let mut con = self.con.clone();
        let raw: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(&self.keys.paused)
            .query_async(&mut con)
            .await?;
        Ok(Pauses(
            raw.into_iter().map(|(f, v)| (f, Pause::read(&v))).collect(),
        ))
    }

    /// Pauses `field` (`*` or a job type) with `pause`, in place of any
    /// pause it had; returns that one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn set_pause(&self, field: &str, pause: &Pause) -> Result<Option<Pause>, QueueError> {
        let value = serde_json::to_string(pause).map_err(|e| QueueError::Protocol {
            what: "pause",
            detail: e.to_string(),
        })?;
        let mut con = self.con.clone();
        let (before,): (Option<String>,) = redis::pipe()
            .atomic()
            .hget(&self.keys.paused, field)
            .hset(&self.keys.paused, field, value)
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(before.as_deref().map(Pause::read))
    }

    /// Removes the pause of `field` (`*` or a job type); returns it, or
    /// `None` when there was none. Held jobs stay held until
    /// [`Queue::release_held`].
    ///
    /// # Errors
    /// Redis errors.
    pub async fn remove_pause(&self, field: &str) -> Result<Option<Pause>, QueueError> {
        let mut con = self.con.clone();
        let (before,): (Option<String>,) = redis::pipe()
            .atomic()
            .hget(&self.keys.paused, field)
            .hdel(&self.keys.paused, field)
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(before.as_deref().map(Pause::read))
    }

    /// Ends the pause of `field` whose `until_ms` was seen to have passed:
    /// true for the one caller (of any daemon) that removed it; false when
    /// it was gone, set anew, or not yet over by the Redis clock.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn end_expired_pause(&self, field: &str, until_ms: u64) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let removed: i64 = UNPAUSE_SCRIPT
            .key(&self.keys.paused)
            .arg(field)
            .arg(until_ms)
            .invoke_async(&mut con)
            .await?;
        Ok(removed == 1)
    }

    /// Puts back in the stream the held jobs of `field` (`*`: of every job
    /// type) that are no longer paused, each as the attempt it was held at,
    /// in chunks of [`RELEASE_CHUNK`] (one script each, so Redis is never
    /// blocked long). Jobs whose type, or whose queue, is still paused stay
    /// held. Safe to run again, and beside other releases: each job is
    /// delivered once.
    ///
    /// # Errors
    /// Redis errors; what was released by then stays released, and a rerun
    /// goes on with the rest.
    pub async fn release_held(&self, field: &str) -> Result<Released, QueueError> {
        let mut total = Released::default();
        for _ in 0..RELEASE_PASSES {
            let (mut from, mut pass) = (0u64, Released::default());
            loop {
                let (released, skipped, scanned, dropped) = self.release_chunk(field, from).await?;
                pass.released += released;
                pass.dropped += dropped;
                from += skipped;
                if usize::try_from(scanned).unwrap_or(0) < RELEASE_CHUNK {
                    break;
                }
            }
            total.released += pass.released;
            total.dropped += pass.dropped;
            // Only a pass that stepped over held jobs while removing
            // others may have missed one.
            if pass.released == 0 || from == 0 {
                break;
            }
        }
        Ok(total)
    }

    /// One RELEASE call from position `from` of the held set: (released,
    /// skipped, scanned, dropped).
    async fn release_chunk(
        &self,
        field: &str,
        from: u64,
    ) -> Result<(u64, u64, u64, u64), QueueError> {
        let mut con = self.con.clone();
        Ok(RELEASE_SCRIPT
            .key(&self.keys.held)
            .key(&self.keys.jobs)
            .key(&self.keys.paused)
            .arg(&self.keys.record_prefix)
            .arg(field)
            .arg(from)
            .arg(RELEASE_CHUNK)
            .arg(MAX_HISTORY)
            .invoke_async(&mut con)
            .await?)
    }

    /// How many jobs are held: in all, and by job type for up to `max` of
    /// them (oldest first; read in chunks, for `ward stats`).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn held_counts(&self, max: usize) -> Result<HeldCounts, QueueError> {
        let mut con = self.con.clone();
        let total: u64 = redis::cmd("ZCARD")
            .arg(&self.keys.held)
            .query_async(&mut con)
            .await?;
        let mut counts = HeldCounts {
            total,
            by_type: BTreeMap::new(),
            complete: usize::try_from(total).is_ok_and(|t| t <= max),
        };
        let mut from = 0;
        while from < max {
            let ids: Vec<String> = redis::cmd("ZRANGE")
                .arg(&self.keys.held)
                .arg(from)
                .arg(from + COUNT_CHUNK.min(max - from) - 1)
                .query_async(&mut con)
                .await?;
            if ids.is_empty() {
                break;
            }
            let mut p = redis::pipe();
            for id in &ids {
                p.hget(self.keys.record(id), "job");
            }
            let types: Vec<Option<String>> = p.query_async(&mut con).await?;
            for t in types.into_iter().flatten() {
                *counts.by_type.entry(t).or_default() += 1;
            }
            if ids.len() < COUNT_CHUNK {
                break;
            }
            from += ids.len();
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause(until_ms: Option<u64>) -> Pause {
        Pause {
            by: "ana".into(),
            at_ms: 1,
            note: "n".into(),
            until_ms,
        }
    }

    #[test]
    fn a_pause_holds_its_type_or_with_star_every_type_until_its_time() {
        let mut p = Pauses::default();
        assert_eq!(p.holds("a", 10), None);
        p.0.insert("a".into(), pause(Some(20)));
        assert_eq!(p.holds("a", 10), Some(false));
        assert_eq!(p.holds("b", 10), None);
        assert_eq!(p.holds("a", 20), None, "over at until_ms");
        assert_eq!(p.expired(20).collect::<Vec<_>>(), [("a", 20)]);
        p.0.insert(WHOLE_QUEUE.into(), pause(None));
        assert_eq!(p.holds("b", 30), Some(true));
        assert!(p.queue_paused(u64::MAX));
    }

    #[test]
    fn a_batch_pause_holds_only_that_batchs_members() {
        let mut p = Pauses::default();
        assert!(!p.holds_batch(Some("b1"), 10));
        p.0.insert(format!("{BATCH_PAUSE_PREFIX}b1"), pause(Some(20)));
        assert!(p.holds_batch(Some("b1"), 10));
        assert!(!p.holds_batch(Some("b2"), 10));
        assert!(!p.holds_batch(None, 10));
        assert!(!p.holds_batch(Some("b1"), 20), "over at until_ms");
        assert_eq!(p.holds("b1", 10), None, "no job type is paused");
    }

    #[test]
    fn the_stored_json_has_the_agreed_shape_and_junk_still_pauses() {
        let json = serde_json::to_value(pause(None)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"by": "ana", "at_ms": 1, "note": "n", "until_ms": null})
        );
        let junk = Pause::read("not json");
        assert!(junk.in_force(u64::MAX));
    }
}
