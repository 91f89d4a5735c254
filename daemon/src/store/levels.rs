//! Leasing across the priority levels: one script reads the level streams
//! in the order the reader's starvation guard chose, moving new entries
//! that name another level to that level's stream on the way (see
//! `lua/lease.lua` and [`crate::priority`]).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::batches::BATCH_LUA;
use super::reply::{parse_entries, parse_xread, protocol};
use super::script::{quote, script};
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::{FIELD, Priority};

/// Most entries one lease call moves to their level's stream. Bounds how
/// long the script holds Redis (a few ms) when a flood of `low` jobs sits
/// in the normal stream; the reader calls again at once while there is more.
const MOVE_BUDGET: usize = 1024;

static LEASE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    script(
        &format!("local PRIORITY_FIELD = {}\n{BATCH_LUA}", quote(FIELD)),
        include_str!("lua/lease.lua"),
    )
});

/// The letter `lease.lua` knows level `p` by.
fn letter(p: Priority) -> char {
    match p {
        Priority::High => 'h',
        Priority::Normal => 'n',
        Priority::Low => 'l',
    }
}

impl Queue {
    /// Reads up to `count` new deliveries for `consumer` from the level
    /// streams in `order` (each while room is left), waiting at most `block`
    /// when none of them has anything (no busy polling). May return none
    /// without waiting, when it moved entries to their level's stream.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn lease_levels(
        &self,
        consumer: &str,
        count: usize,
        order: [Priority; 3],
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let (got, last) = self.lease_once(consumer, count, order).await?;
        let (Some(block), Some(last)) = (block, last) else {
            return Ok(got);
        };
        // Nothing anywhere: wait for an entry past what the group has
        // delivered on any of the streams, then lease once more.
        let mut con = self.con.clone();
        let woke: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg("STREAMS")
            .arg(&self.keys.jobs)
            .arg(&self.keys.jobs_high)
            .arg(&self.keys.jobs_low)
            .arg(&last[..])
            .query_async(&mut con)
            .await?;
        if parse_xread(woke)?.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.lease_once(consumer, count, order).await?.0)
    }

    /// One call of the lease script: the deliveries, and when there were
    /// none (and nothing was moved), each stream's last-delivered id.
    async fn lease_once(
        &self,
        consumer: &str,
        count: usize,
        order: [Priority; 3],
    ) -> Result<(Vec<Delivery>, Option<Vec<String>>), QueueError> {
        let order: String = order.into_iter().map(letter).collect();
        let mut con = self.con.clone();
        let reply: Value = LEASE_SCRIPT
            .key(&self.keys.jobs)
            .key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .arg(GROUP)
            .arg(consumer)
            .arg(order)
            .arg(count)
            .arg(MOVE_BUDGET)
            .invoke_async(&mut con)
            .await?;
        let Value::Array(mut parts) = reply else {
            return Err(protocol("lease", &reply));
        };
        if parts.len() < 2 {
            return Err(protocol("lease", &Value::Array(parts)));
        }
        let last: Vec<String> = parts
            .drain(2..)
            .filter_map(|v| match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Value::SimpleString(s) => Some(s),
                _ => None,
            })
            .collect();
        let entries = parts.pop().unwrap_or(Value::Nil);
        let got = parse_entries(entries, "lease")?;
        let idle = got.is_empty() && last.len() == 3;
        Ok((got, idle.then_some(last)))
    }
}
