//! Fairness between tenants: a job type may group its jobs by one of their
//! correlation fields (`group_by = "tenant"`) and cap each group's attempts
//! in flight fleet-wide (`group_concurrency = N`).
//!
//! The model: each group has a set of slots in Redis (`ward:{Q}:group:<job
//! type>:<value>`, job id → when the slot expires). Before a batch runs,
//! one script takes a slot for each of its grouped jobs; a job whose group
//! has none free is not run and spends no attempt: it is deferred (code
//! [`GROUP_BUSY_CODE`]) and parked in the group's waiting line. When an
//! attempt of the group ends, its slot is given back and the job that has
//! waited longest is made due at once, so a busy group's jobs come back
//! one per freed slot, not all at once; a slot whose daemon died expires
//! (after the job type's `timeout` plus the queue's `lease`), and every
//! parked job is looked at again after [`RECHECK`] in any case.
//!
//! Parked at enqueue: the daemons publish the grouped job types
//! (`ward:{Q}:grouping`), and `ward_enqueue` parks a job whose group
//! already has `N` jobs running or on their way through the stream (those
//! counted for [`QUEUED_TTL`] at most) in the group's line in the same
//! step, in the form a daemon parks it in. So a flood of one group never
//! sits in the stream ahead of another group's job: the other group's job
//! waits for nothing but a read, whatever the flood's size.
//!
//! Its limits: a plain `XADD` cannot be routed, so such a flood enters the
//! stream and the daemons read past it once, parking it in reads that grow
//! while most of what they read is parked (see `worker/reader.rs`); that
//! pass is the delay another group's job sees. A group's slots are taken
//! per batch, so jobs of one group in the same batch compete in stream
//! order.
//!
//! Pure: no Redis, no I/O.

use std::time::Duration;

use crate::job::JobEntry;

/// The code a job held back because its group is at its cap is recorded
/// with (nothing ran, no attempt spent).
pub const GROUP_BUSY_CODE: &str = "group-busy";

/// How long a parked job waits at most before it is looked at again, when
/// no slot of its group is seen to free (e.g. its holder's daemon died).
pub const RECHECK: Duration = Duration::from_secs(10);

/// Most jitter added to [`RECHECK`], so parked jobs do not all come back in
/// the same instant.
pub const RECHECK_JITTER: Duration = Duration::from_secs(2);

/// A job type's grouping: which correlation field names the group, and how
/// many attempts of one group may be in flight across the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimit {
    /// The entry's correlation field whose value is the group (`tenant`).
    pub field: String,
    /// Most attempts of one group in flight at once, fleet-wide (≥ 1).
    pub concurrency: u32,
}

impl GroupLimit {
    /// The group `entry` belongs to: its field's value, if it has one. An
    /// entry without the field is not limited.
    #[must_use]
    pub fn group_of<'a>(&self, extra: &'a [(String, Vec<u8>)]) -> Option<&'a [u8]> {
        extra
            .iter()
            .find(|(k, _)| *k == self.field)
            .map(|(_, v)| v.as_slice())
    }

    /// [`GroupLimit::group_of`] for a job entry.
    #[must_use]
    pub fn group_of_entry<'a>(&self, entry: &'a JobEntry) -> Option<&'a [u8]> {
        self.group_of(&entry.extra)
    }
}

/// How much later each place further back in a group's waiting line is
/// looked at again: the rechecks of a long line are spread out (about a
/// hundred a second per group, however long the line), so they do not
/// churn through the daemon while the slots' wake-ups do the work.
pub const RECHECK_PER_PLACE: Duration = Duration::from_millis(10);

/// The longest a parked job waits before it is looked at again.
pub const RECHECK_MAX: Duration = Duration::from_secs(3600);

/// How long a job `ward_enqueue` sent to the stream counts against its
/// group's cap before it takes a slot. Normally it stops counting when a
/// daemon reads it (slot taken, or parked); an entry that leaves the stream
/// another way (cancelled, dead-lettered unread, a duplicate) stops
/// counting after this, so a lost count costs a group at most this long of
/// new jobs parked rather than sent on (each back within its recheck).
pub const QUEUED_TTL: Duration = Duration::from_secs(60);

/// How long a job whose group is busy is deferred: at `place` in its
/// group's waiting line, with `jitter_ms` a random number (only its
/// remainder below [`RECHECK_JITTER`] counts).
#[must_use]
pub fn busy_delay(place: u64, jitter_ms: u64) -> Duration {
    let span = u64::try_from(RECHECK_JITTER.as_millis())
        .unwrap_or(1)
        .max(1);
    let back = RECHECK_PER_PLACE.saturating_mul(u32::try_from(place).unwrap_or(u32::MAX));
    (RECHECK + back).min(RECHECK_MAX) + Duration::from_millis(jitter_ms % span)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_the_value_of_its_field_and_absent_without_it() {
        let g = GroupLimit {
            field: "tenant".into(),
            concurrency: 2,
        };
        let extra = vec![
            ("order".to_string(), b"1".to_vec()),
            ("tenant".to_string(), b"acme".to_vec()),
        ];
        assert_eq!(g.group_of(&extra), Some(&b"acme"[..]));
        assert_eq!(g.group_of(&extra[..1]), None);
    }

    #[test]
    fn busy_delays_spread_within_the_jitter() {
        assert_eq!(busy_delay(0, 0), RECHECK);
        assert!(busy_delay(0, u64::MAX) < RECHECK + RECHECK_JITTER);
        assert_ne!(busy_delay(0, 1), busy_delay(0, 2));
        assert_eq!(busy_delay(100, 0), RECHECK + Duration::from_secs(1));
        assert!(busy_delay(u64::MAX, 0) <= RECHECK_MAX);
    }
}
