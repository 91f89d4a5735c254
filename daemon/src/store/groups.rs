//! The slots of job groups (tenants) and their waiting lines: taken for a
//! batch in one script call, given back per batch of completions in
//! another; and the queue's grouped job types, published for
//! `ward_enqueue`, which parks a busy group's new jobs straight away (see
//! [`crate::fairness`]).

use std::sync::LazyLock;
use std::time::Duration;

use super::script::script;
use super::{Queue, QueueError};
use crate::fairness::{GroupLimit, QUEUED_TTL};

static ACQUIRE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/group_acquire.lua")));
static RELEASE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/group_release.lua")));

/// One job's claim on a slot of its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupClaim<'a> {
    /// The job type.
    pub job: &'a str,
    /// The group (the value of the job type's `group_by` field).
    pub group: &'a [u8],
    /// The job's id.
    pub id: &'a str,
    /// The group's cap (`group_concurrency`).
    pub cap: u32,
    /// How long the slot lasts unless given back (the attempt's longest run
    /// plus the lease, so a dead daemon's slots come back).
    pub ttl: Duration,
}

impl Queue {
    /// Takes a slot for each claim, in order: `None` for each that got one,
    /// else its place in its group's waiting line (0: next), where it is
    /// parked.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong length.
    pub async fn acquire_group_slots(
        &self,
        claims: &[GroupClaim<'_>],
    ) -> Result<Vec<Option<u64>>, QueueError> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = ACQUIRE_SCRIPT.prepare_invoke();
        for c in claims {
            let g = self.keys.group(c.job, c.group);
            inv.key(g.slots)
                .key(g.waiting)
                .key(g.queued)
                .arg(c.id)
                .arg(c.cap)
                .arg(ms(c.ttl));
        }
        let mut con = self.con.clone();
        let got: Vec<i64> = inv.invoke_async(&mut con).await?;
        if got.len() != claims.len() {
            return Err(QueueError::Protocol {
                what: "group slots",
                detail: format!("{} answers for {} jobs", got.len(), claims.len()),
            });
        }
        Ok(got.into_iter().map(|g| u64::try_from(g).ok()).collect())
    }

    /// Gives back the slots of `claims` (attempts that ended; a claim that
    /// holds none is a no-op), waking one parked job per slot freed.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn release_group_slots(&self, claims: &[GroupClaim<'_>]) -> Result<(), QueueError> {
        if claims.is_empty() {
            return Ok(());
        }
        let mut inv = RELEASE_SCRIPT.key(&self.keys.delayed);
        inv.arg(&self.keys.wake).arg(ms(QUEUED_TTL));
        for c in claims {
            let g = self.keys.group(c.job, c.group);
            inv.key(g.slots).key(g.waiting).key(g.queued).arg(c.id);
        }
        let mut con = self.con.clone();
        let _: i64 = inv.invoke_async(&mut con).await?;
        Ok(())
    }
}

/// `d` in whole ms, as the scripts take durations.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How a grouped job type reads in `ward:{Q}:grouping`: `<cap> <field>`.
#[must_use]
pub fn grouping_entry(limit: &GroupLimit) -> String {
    format!("{} {}", limit.concurrency, limit.field)
}

impl Queue {
    /// Tells `ward_enqueue` the queue's grouped job types (`group_by`,
    /// `group_concurrency`), replacing what it was told before, so a new
    /// job of a group at its cap is parked at enqueue instead of joining
    /// the stream. Written at start and on every reload.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn publish_grouping(
        &self,
        grouped: &[(&str, &GroupLimit)],
    ) -> Result<(), QueueError> {
        let mut pipe = redis::pipe();
        pipe.atomic().del(&self.keys.grouping).ignore();
        for (job, limit) in grouped {
            pipe.hset(&self.keys.grouping, *job, grouping_entry(limit))
                .ignore();
        }
        let mut con = self.con.clone();
        let () = pipe.query_async(&mut con).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grouping_entry_reads_as_the_function_library_parses_it() {
        let limit = GroupLimit {
            field: "tenant id".into(),
            concurrency: 12,
        };
        assert_eq!(grouping_entry(&limit), "12 tenant id");
        // The library's pattern: the cap, one space, the field (any text).
        let lua = include_str!("lua/functions.lua");
        assert!(
            lua.contains("'^(%d+) (.+)$'"),
            "functions.lua parses `<cap> <field>`"
        );
    }
}
