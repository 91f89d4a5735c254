//! Leasing across the priority levels: one script reads the level streams
//! in the order the reader's starvation guard chose, moving new entries
//! that name another level to that level's stream on the way and claiming
//! idempotency keys (see `lua/lease.lua` and [`crate::priority`]). While
//! the level streams are empty and entries need nothing of a script, the
//! reader may read with a plain `XREADGROUP` instead (`lease_plain.rs`).

use std::sync::LazyLock;
use std::time::Duration;

use redis::Value;

use super::batches::BATCH_LUA;
use super::consume::KeyCheck;
use super::fields::IDEMPOTENCY_KEY;
use super::lease_plain::Unfinished;
use super::reply::{bytes_of, parse_entries, parse_xread, protocol};
use super::script::{quote, script};
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::{FIELD, Priority};

/// Most entries one lease call moves to their level's stream. Bounds how
/// long the script holds Redis (a few ms) when a flood of `low` jobs sits
/// in the normal stream; the reader calls again at once while there is more.
const MOVE_BUDGET: usize = 1024;

/// What both lease scripts start with: the field names they look for, the
/// batch helpers and what they do with an entry (`lua/lease_entry.lua`).
pub(super) fn lease_prelude() -> String {
    format!(
        "local PRIORITY_FIELD = {}\nlocal KEY_FIELD = {}\n{BATCH_LUA}{}",
        quote(FIELD),
        quote(IDEMPOTENCY_KEY),
        include_str!("lua/lease_entry.lua")
    )
}

static LEASE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(&lease_prelude(), include_str!("lua/lease.lua")));

/// The letter `lease.lua` knows level `p` by.
fn letter(p: Priority) -> char {
    match p {
        Priority::High => 'h',
        Priority::Normal => 'n',
        Priority::Low => 'l',
    }
}

/// A leased delivery, and the answer for its idempotency key when the lease
/// claimed it (`None`: no key, or its job type was not listed).
pub type Leased = (Delivery, Option<KeyCheck>);

/// What a lease needs to know of the job types it may claim keys for.
#[derive(Debug, Clone, Copy)]
pub struct LeaseAsk<'a> {
    /// Most deliveries.
    pub count: usize,
    /// The order the level streams are read in.
    pub order: [Priority; 3],
    /// How long to wait when there is nothing (`None`: do not wait).
    pub block: Option<Duration>,
    /// The job types whose idempotency keys are claimed as their jobs are
    /// leased, each with its key's TTL in ms.
    pub key_ttls: &'a [(String, u64)],
    /// Read with a plain `XREADGROUP` of the normal stream (see
    /// `lease_plain.rs`): only while the last reads said [`Lease::plain`].
    pub plain: bool,
}

/// What a lease took.
#[derive(Debug, Default)]
pub struct Lease {
    /// The deliveries, each with its key's answer.
    pub deliveries: Vec<Leased>,
    /// Whether the next read may be a plain `XREADGROUP`: this one needed
    /// no script but for its key claims (nothing moved, no batch joined)
    /// and the level streams were empty.
    pub plain: bool,
    /// A plain read whose entries could not be finished: none are in
    /// `deliveries`; the reader finishes them (see [`Unfinished`]).
    pub unfinished: Option<Unfinished>,
}

impl Queue {
    /// Reads up to `ask.count` new deliveries for `consumer` from the level
    /// streams in `ask.order` (each while room is left), waiting at most
    /// `ask.block` when none of them has anything (no busy polling). May
    /// return none without waiting, when it moved entries to their level's
    /// stream. The idempotency key of a delivery of a job type in
    /// `ask.key_ttls` is claimed in the same step (see `lua/lease.lua`).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn lease_levels(
        &self,
        consumer: &str,
        ask: LeaseAsk<'_>,
    ) -> Result<Lease, QueueError> {
        if ask.plain {
            let lease = self.lease_plain(consumer, ask).await?;
            // Nothing in the normal stream: the script looks at every
            // stream, and waits.
            if !lease.deliveries.is_empty() || lease.unfinished.is_some() {
                return Ok(lease);
            }
        }
        let (got, plain, last) = self.lease_once(consumer, ask).await?;
        let (Some(block), Some(last)) = (ask.block, last) else {
            return Ok(Lease {
                deliveries: got,
                plain,
                unfinished: None,
            });
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
            return Ok(Lease::default());
        }
        let (deliveries, plain, _) = self.lease_once(consumer, ask).await?;
        Ok(Lease {
            deliveries,
            plain,
            unfinished: None,
        })
    }

    /// One call of the lease script: the deliveries, whether the next read
    /// may be plain, and when there were none (and nothing was moved), each
    /// stream's last-delivered id.
    async fn lease_once(
        &self,
        consumer: &str,
        ask: LeaseAsk<'_>,
    ) -> Result<(Vec<Leased>, bool, Option<Vec<String>>), QueueError> {
        let order: String = ask.order.into_iter().map(letter).collect();
        let mut con = self.con.clone();
        let mut inv = LEASE_SCRIPT.key(&self.keys.jobs);
        inv.key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .arg(GROUP)
            .arg(consumer)
            .arg(order)
            .arg(ask.count)
            .arg(MOVE_BUDGET);
        for (job, ttl) in ask.key_ttls {
            inv.arg(job).arg(*ttl);
        }
        let reply: Value = inv.invoke_async(&mut con).await?;
        let Value::Array(mut parts) = reply else {
            return Err(protocol("lease", &reply));
        };
        if parts.len() < 4 {
            return Err(protocol("lease", &Value::Array(parts)));
        }
        let last: Vec<String> = parts
            .drain(4..)
            .filter_map(|v| match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                Value::SimpleString(s) => Some(s),
                _ => None,
            })
            .collect();
        let plain = matches!(parts.pop(), Some(Value::Int(1)));
        let checks = match parts.pop() {
            Some(Value::Array(c)) => c,
            other => return Err(protocol("lease", &other.unwrap_or(Value::Nil))),
        };
        let entries = parts.pop().unwrap_or(Value::Nil);
        let got = parse_entries(entries, "lease")?;
        if !checks.is_empty() && checks.len() != got.len() {
            return Err(QueueError::Protocol {
                what: "lease",
                detail: format!("{} key answers for {} deliveries", checks.len(), got.len()),
            });
        }
        let mut checks = checks.into_iter();
        let got: Vec<Leased> = got
            .into_iter()
            .map(|d| {
                let answer = checks.next().map(bytes_of).unwrap_or_default();
                (d, KeyCheck::from_answer(&String::from_utf8_lossy(&answer)))
            })
            .collect();
        let idle = got.is_empty() && last.len() == 3;
        Ok((got, plain, idle.then_some(last)))
    }
}
