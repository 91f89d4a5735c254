//! The plain lease: one `XREADGROUP` of the normal stream, no script.
//!
//! The lease script (`lua/lease.lua`) reads the three level streams in the
//! starvation guard's order, moves entries that name another level, joins
//! plain-XADD batch members to their ledger and claims idempotency keys.
//! A queue of plain jobs needs none of that, and running every read through
//! Lua costs Redis a conversion of each entry to Lua and back. So while the
//! last read said the level streams were empty and nothing needed a script
//! ([`super::Lease::plain`]), the reader reads plainly; the few entries
//! that do need a script (found by scanning their fields here) are finished
//! by `lua/lease_fix.lua`, and the next read goes through the script again.
//! A keyed entry needs no script at the read: its key is claimed right
//! after, with the other keyed deliveries of the read, by the triage's one
//! pipeline of claims (`Queue::check_keys`, what a delivery taken over
//! from another consumer gets too). The lease script claims in the same
//! step as the read, but converts every entry to Lua and back to do it,
//! which costs Redis more than the second round trip costs the daemon.

use std::sync::LazyLock;

use redis::Value;

use super::consume::KeyCheck;
use super::fields::{BATCH, ENTRY};
use super::levels::{Lease, LeaseAsk, lease_prelude};
use super::reply::{bytes_of, parse_xread, protocol};
use super::script::script;
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::{FIELD, Priority};

static LEASE_FIX_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script(&lease_prelude(), include_str!("lua/lease_fix.lua")));

/// `lease_fix.lua`'s answer for an entry moved to its level's stream.
const MOVED: &str = "moved";
/// `lease_fix.lua`'s answer for an entry no longer in the stream: moved by
/// an earlier call for the same read, or deleted by hand.
const GONE: &str = "gone";

/// Whether a `lease_fix.lua` answer means the entry is not run now.
fn not_run(answer: &str) -> bool {
    answer == MOVED || answer == GONE
}

/// A plain read whose entries were taken (they are leased to the reader)
/// but could not be finished: `lease_fix.lua` failed for them (Redis out of
/// memory refuses its first write, say). The reader keeps them as its own
/// and calls [`Queue::finish_plain`] until it succeeds, so they are run,
/// not left to expire as lost attempts.
#[derive(Debug)]
pub struct Unfinished {
    /// Everything the read took, in stream order.
    pub read: Vec<Delivery>,
    /// Why finishing them failed.
    pub error: QueueError,
}

impl Queue {
    /// Reads up to `ask.count` new deliveries of the normal stream with a
    /// plain `XREADGROUP` (never waiting), then finishes those that need
    /// the script's work in one call of `lua/lease_fix.lua`. The lease is
    /// [`Lease::plain`] when none did, and [`Lease::unfinished`] when that
    /// call failed.
    ///
    /// # Errors
    /// Redis errors of the read, or a reply of the wrong shape.
    pub(super) async fn lease_plain(
        &self,
        consumer: &str,
        ask: LeaseAsk<'_>,
    ) -> Result<Lease, QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(ask.count)
            .arg("STREAMS")
            .arg(&self.keys.jobs)
            .arg(">")
            .query_async(&mut con)
            .await?;
        let got = parse_xread(reply)?;
        if !got.iter().any(needs_script) {
            return Ok(Lease {
                deliveries: got.into_iter().map(|d| (d, None)).collect(),
                plain: true,
                unfinished: None,
            });
        }
        Ok(match self.finish_plain(&got, ask.key_ttls).await {
            Ok(lease) => lease,
            Err(error) => Lease {
                unfinished: Some(Unfinished { read: got, error }),
                ..Lease::default()
            },
        })
    }

    /// Finishes the deliveries `read` of one plain read (in stream order)
    /// with one call of `lua/lease_fix.lua` for those that need it,
    /// claiming the keys of the job types in `key_ttls`: the deliveries to
    /// run, each with its key's answer. Safe to call again for the same
    /// read after a failure (see the script).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn finish_plain(
        &self,
        read: &[Delivery],
        key_ttls: &[(String, u64)],
    ) -> Result<Lease, QueueError> {
        let fix: Vec<&str> = read
            .iter()
            .filter(|d| needs_script(d))
            .map(|d| d.entry_id.as_str())
            .collect();
        let answers = self.fix(&fix, key_ttls).await?;
        let mut fixed = fix.iter().copied().zip(answers.iter()).peekable();
        let mut deliveries = Vec::with_capacity(read.len());
        for d in read {
            // The fixed ids are in the order of `read`.
            let answer = match fixed.peek() {
                Some((id, a)) if *id == d.entry_id => {
                    let a = a.as_str();
                    fixed.next();
                    Some(a)
                }
                _ => None,
            };
            match answer {
                Some(a) if not_run(a) => {}
                Some(a) => deliveries.push((d.clone(), KeyCheck::from_answer(a))),
                None => deliveries.push((d.clone(), None)),
            }
        }
        Ok(Lease {
            deliveries,
            plain: false,
            unfinished: None,
        })
    }
}

impl Queue {
    /// Finishes deliveries of `level`'s stream taken over from a daemon
    /// that died (see `worker/services/reclaim.rs`) as its lease would have:
    /// one it read plainly may have died before `lease_fix.lua` counted a
    /// producer's batch member or moved an entry to its level, or just
    /// after (the batch's joined set makes a second count a no-op). Returns
    /// the entry ids moved to their level's stream (they never ran, are
    /// read from there, and are not to be recorded) or no longer in the
    /// stream (nothing to record them as).
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn finish_taken(
        &self,
        level: Priority,
        deliveries: &[Delivery],
    ) -> Result<Vec<String>, QueueError> {
        // Only the normal stream is read plainly.
        let fix: Vec<&str> = deliveries
            .iter()
            .filter(|d| level == Priority::Normal && needs_script(d))
            .map(|d| d.entry_id.as_str())
            .collect();
        if fix.is_empty() {
            return Ok(Vec::new());
        }
        let answers = self.fix(&fix, &[]).await?;
        Ok(fix
            .iter()
            .zip(&answers)
            .filter(|(_, a)| not_run(a))
            .map(|(id, _)| (*id).to_string())
            .collect())
    }

    /// Calls `lua/lease_fix.lua` for the entries `ids` (in stream order),
    /// claiming the keys of the job types in `key_ttls`; one answer per id.
    async fn fix(
        &self,
        ids: &[&str],
        key_ttls: &[(String, u64)],
    ) -> Result<Vec<String>, QueueError> {
        let mut inv = LEASE_FIX_SCRIPT.key(&self.keys.jobs);
        inv.key(&self.keys.jobs_high)
            .key(&self.keys.jobs_low)
            .arg(GROUP)
            .arg(key_ttls.len());
        for (job, ttl) in key_ttls {
            inv.arg(job).arg(*ttl);
        }
        for id in ids {
            inv.arg(*id);
        }
        let mut con = self.con.clone();
        let reply: Value = inv.invoke_async(&mut con).await?;
        let Value::Array(answers) = reply else {
            return Err(protocol("lease fix", &reply));
        };
        if answers.len() != ids.len() {
            return Err(QueueError::Protocol {
                what: "lease fix",
                detail: format!("{} answers for {} entries", answers.len(), ids.len()),
            });
        }
        Ok(answers
            .into_iter()
            .map(|a| String::from_utf8_lossy(&bytes_of(a)).into_owned())
            .collect())
    }
}

/// Whether delivery `d`, read plainly, needs the lease script's work: it
/// names another priority level, or joins a batch by a plain XADD's field
/// (what `lease.lua` would have done as it read it). Its idempotency key,
/// if any, is claimed by the triage's key check (see the module's note),
/// or by `lease_fix.lua` with the rest when it goes there anyway.
pub(super) fn needs_script(d: &Delivery) -> bool {
    let field = |name: &str| {
        d.fields
            .iter()
            .find(|(k, _)| k.as_slice() == name.as_bytes())
            .map(|(_, v)| v.as_slice())
    };
    if matches!(field(FIELD), Some(b"high" | b"low")) {
        return true;
    }
    let counted = ENTRY
        .iter()
        .any(|(lua, f)| matches!(*lua, "id" | "batch") && field(f).is_some());
    field(BATCH).is_some_and(|b| !b.is_empty()) && !counted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&str, &str)]) -> Delivery {
        Delivery {
            entry_id: "1-0".to_string(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn only_entries_that_need_the_scripts_work_are_sent_to_it() {
        let plain = delivery(&[("job", "send"), ("payload", "{}")]);
        assert!(!needs_script(&plain));
        for level in ["high", "low"] {
            assert!(needs_script(&delivery(&[
                ("job", "send"),
                ("priority", level)
            ])));
        }
        assert!(!needs_script(&delivery(&[
            ("job", "send"),
            ("priority", "normal")
        ])));
        // A producer's batch member joins its ledger; Ward's entries and
        // ward_enqueue's were counted already.
        assert!(needs_script(&delivery(&[("job", "send"), ("batch", "b1")])));
        assert!(!needs_script(&delivery(&[
            ("job", "send"),
            ("batch", "b1"),
            ("ward:batch", "b1")
        ])));
        assert!(!needs_script(&delivery(&[
            ("job", "send"),
            ("batch", "b1"),
            ("ward:id", "1-0")
        ])));
        assert!(!needs_script(&delivery(&[("job", "send"), ("batch", "")])));
        // A keyed entry's key is claimed by the triage's check, after the
        // read: no script at the read.
        assert!(!needs_script(&delivery(&[
            ("job", "send"),
            ("idempotency_key", "k")
        ])));
    }
}
