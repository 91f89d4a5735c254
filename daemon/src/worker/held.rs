//! The deliveries one queue's daemon holds: leased and not yet recorded.
//! The reader adds each delivery it leases, the completer removes each it
//! records, the heartbeat renews exactly these, and the reclaimer leaves
//! them alone.
//!
//! Every delivery passes here twice, so an entry id is held as the two
//! numbers Redis makes it of (`<ms>-<seq>`), not as a string: no
//! allocation per delivery, and a cheaper hash and compare.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use foldhash::fast::RandomState;

/// A stream entry id, `<ms>-<seq>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EntryId {
    ms: u64,
    seq: u64,
}

impl EntryId {
    /// The id Redis wrote as `id`; `None` for anything that is not
    /// `<ms>-<seq>` (Redis never returns such an entry id).
    pub(crate) fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return None;
        }
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The most abandoned deliveries remembered (see [`Held::abandon`]).
const ABANDONED_MAX: usize = 4096;

/// The deliveries held (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct Held {
    ids: Mutex<HashSet<EntryId, RandomState>>,
    /// Deliveries let go without a record (their attempt panicked), the
    /// newest last: left for the reclaim to charge a lost attempt, so a
    /// failed read's clean-up must not take them back.
    abandoned: Mutex<VecDeque<EntryId>>,
}

impl Held {
    fn ids(&self) -> MutexGuard<'_, HashSet<EntryId, RandomState>> {
        // A set of numbers: no invariant a panicking holder could break.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds the deliveries `ids` (entry ids as Redis wrote them).
    pub(crate) fn hold<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut held = self.ids();
        for id in ids {
            match EntryId::parse(id) {
                Some(id) => {
                    held.insert(id);
                }
                // Not renewed: its lease runs out and it is reclaimed as a
                // lost attempt, as after a crash.
                None => tracing::error!(
                    entry = id,
                    "a stream entry id that is not <ms>-<seq>; its lease will not be renewed"
                ),
            }
        }
    }

    /// Lets go of the deliveries `ids` (recorded, or not this daemon's).
    pub(crate) fn release<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut held = self.ids();
        for id in ids.filter_map(EntryId::parse) {
            held.remove(&id);
        }
    }

    /// Lets go of the delivery `id`.
    pub(crate) fn release_id(&self, id: EntryId) {
        self.ids().remove(&id);
    }

    /// Lets go of the delivery `id` without recording it: its lease runs
    /// out and the reclaim charges it a lost attempt. [`Held::known`] still
    /// knows it (the newest [`ABANDONED_MAX`] of them).
    pub(crate) fn abandon(&self, id: EntryId) {
        self.release_id(id);
        let mut abandoned = self
            .abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if abandoned.len() == ABANDONED_MAX {
            abandoned.pop_front();
        }
        abandoned.push_back(id);
    }

    /// Whether delivery `id` is held or was [abandoned](Held::abandon):
    /// either way, this daemon knows what became of it.
    pub(crate) fn known(&self, id: &str) -> bool {
        let Some(id) = EntryId::parse(id) else {
            return false;
        };
        self.ids().contains(&id)
            || self
                .abandoned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&id)
    }

    /// Whether delivery `id` is held.
    pub(crate) fn contains(&self, id: &str) -> bool {
        EntryId::parse(id).is_some_and(|id| self.ids().contains(&id))
    }

    /// The deliveries held, as Redis writes their ids.
    pub(crate) fn entry_ids(&self) -> Vec<String> {
        self.ids().iter().map(EntryId::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_read_back_as_redis_wrote_them() {
        for id in [
            "0-1",
            "1764850000000-0",
            "18446744073709551615-18446744073709551615",
        ] {
            assert_eq!(
                EntryId::parse(id).map(|e| e.to_string()).as_deref(),
                Some(id)
            );
        }
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "+1-0",
            "1-+0",
            "a-1",
            "18446744073709551616-0",
        ] {
            assert_eq!(EntryId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn held_deliveries_are_renewed_until_released() {
        let held = Held::default();
        held.hold(["1-0", "1-1", "2-0", "junk"].into_iter());
        assert!(held.contains("1-1") && !held.contains("junk") && !held.contains("3-0"));
        held.release(["1-1", "9-9"].into_iter());
        held.release_id(EntryId::parse("2-0").expect("an id"));
        assert_eq!(held.entry_ids(), vec!["1-0".to_string()]);
    }

    #[test]
    fn an_abandoned_delivery_is_not_renewed_but_still_known() {
        let held = Held::default();
        held.hold(["1-0", "2-0"].into_iter());
        held.abandon(EntryId::parse("2-0").expect("an id"));
        assert_eq!(held.entry_ids(), vec!["1-0".to_string()], "not renewed");
        assert!(held.known("1-0") && held.known("2-0") && !held.known("3-0"));
        // Only the newest are remembered.
        for ms in 10..10 + ABANDONED_MAX as u64 {
            held.abandon(EntryId::parse(&format!("{ms}-0")).expect("an id"));
        }
        assert!(!held.known("2-0") && held.known("10-0"));
    }
}
