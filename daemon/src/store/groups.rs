//! The slots of job groups (tenants) and their waiting lines: taken for a
//! batch in one script call, given back per batch of completions in
//! another (see [`crate::fairness`]).

use std::sync::LazyLock;
use std::time::Duration;

use super::script::script;
use super::{Queue, QueueError};

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
            let (slots, waiting) = self.keys.group(c.job, c.group);
            inv.key(slots)
                .key(waiting)
                .arg(c.id)
                .arg(c.cap)
                .arg(u64::try_from(c.ttl.as_millis()).unwrap_or(u64::MAX));
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
        inv.arg(&self.keys.wake);
        for c in claims {
            let (slots, waiting) = self.keys.group(c.job, c.group);
            inv.key(slots).key(waiting).arg(c.id);
        }
        let mut con = self.con.clone();
        let _: i64 = inv.invoke_async(&mut con).await?;
        Ok(())
    }
}
