//! Deliveries leased to this daemon that no read handed over.
//!
//! A read takes its entries into the group's pending list under this
//! consumer as Redis runs it. When its reply never arrives (the connection
//! dropped after Redis ran the call) or its script fails after the
//! `XREADGROUP`, those entries are this daemon's in Redis but not in hand:
//! nothing runs them, the heartbeat does not renew them (they are not
//! held), and after the lease a reclaim charges each a lost attempt it
//! never ran. The reader looks for them after a failed read and runs them.

use std::sync::LazyLock;

use redis::Value;

use super::reply::parse_entries;
use super::script::script;
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::Priority;

static ADOPT_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/adopt.lua")));

/// Pending entries listed per `XPENDING` call.
const PAGE: usize = 1000;

impl Queue {
    /// This consumer's pending deliveries on `level`'s stream that are on
    /// their first delivery and that the daemon does not know (`known` is
    /// false: neither held nor abandoned), at most `max`, in stream order.
    ///
    /// # Errors
    /// Redis errors (a reply of the wrong shape among them).
    pub async fn orphans(
        &self,
        level: Priority,
        consumer: &str,
        known: impl Fn(&str) -> bool,
        max: usize,
    ) -> Result<Vec<String>, QueueError> {
        let stream = self.keys.stream(level);
        let mut con = self.con.clone();
        let mut from = "-".to_string();
        let mut found = Vec::new();
        while found.len() < max {
            // Extended form, as `scan_running` reads it: id, consumer,
            // idle ms, deliveries.
            let page: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
                .arg(stream)
                .arg(GROUP)
                .arg(&from)
                .arg("+")
                .arg(PAGE)
                .arg(consumer)
                .query_async(&mut con)
                .await;
            let page = match page {
                Ok(page) => page,
                // A level stream (or its group) need not exist yet.
                Err(e) if e.code() == Some("NOGROUP") => return Ok(found),
                Err(e) => return Err(e.into()),
            };
            let listed = page.len();
            for (id, _, _, deliveries) in page {
                from = format!("({id}");
                if deliveries == 1 && !known(&id) && found.len() < max {
                    found.push(id);
                }
            }
            if listed < PAGE {
                break;
            }
        }
        Ok(found)
    }

    /// Takes back `ids` of `level`'s stream (from [`Queue::orphans`]) for
    /// `consumer`, each only while still pending under it on its first
    /// delivery (see `lua/adopt.lua`): the deliveries, with their fields.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn adopt(
        &self,
        level: Priority,
        consumer: &str,
        ids: &[String],
    ) -> Result<Vec<Delivery>, QueueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = ADOPT_SCRIPT.key(self.keys.stream(level));
        inv.arg(GROUP).arg(consumer);
        for id in ids {
            inv.arg(id);
        }
        let mut con = self.con.clone();
        let reply: Value = inv.invoke_async(&mut con).await?;
        parse_entries(reply, "adopt.lua")
    }
}
