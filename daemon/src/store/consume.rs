//! Taking deliveries: the consumer group, leases and their renewal, taking
//! over lost deliveries, and the idempotency check before a job runs.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{RedisError, Value};

use super::reply::{parse_entries, parse_xread, protocol};
use super::script::script;
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::Priority;

static RENEW_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/renew.lua")));
static RELEASE_KEYS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/release_keys.lua")));

/// What the idempotency check says about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCheck {
    /// Run it: the key is this job's and not completed.
    Run,
    /// A second enqueue of a key owned by this other job.
    DuplicateOf(String),
    /// This job already succeeded: a redelivery.
    Completed,
    /// The key cannot be claimed: Redis refused it (`WRONGTYPE`: the key
    /// holds another type, which Ward never writes), in Redis' words.
    Unusable(String),
}

impl KeyCheck {
    /// What a claim of job `id`'s key found: `held`, the key's value before
    /// (`None`: it was free, and is `id`'s now), as
    /// [`super::KeyOwner::parse`] reads it.
    pub(super) fn claimed(id: &str, held: Option<&str>) -> KeyCheck {
        let Some(held) = held else {
            return KeyCheck::Run;
        };
        match super::KeyOwner::parse(held) {
            // Not a value Ward writes, but the key is not this job's.
            None => KeyCheck::DuplicateOf(held.to_string()),
            Some(owner) if owner.job_id != id => KeyCheck::DuplicateOf(owner.job_id),
            Some(owner) if owner.done => KeyCheck::Completed,
            Some(_) => KeyCheck::Run,
        }
    }

    /// A lease script's answer (`lease.lua`, `lease_fix.lua`): `run`,
    /// `dup <owner>`, `done` or `bad <Redis' words>`; `None` for `''` (no
    /// key was checked).
    pub(super) fn from_answer(s: &str) -> Option<KeyCheck> {
        if s.is_empty() {
            return None;
        }
        if let Some(owner) = s.strip_prefix("dup ") {
            return Some(KeyCheck::DuplicateOf(owner.to_string()));
        }
        if let Some(why) = s.strip_prefix("bad ") {
            return Some(KeyCheck::Unusable(why.to_string()));
        }
        Some(if s == "done" {
            KeyCheck::Completed
        } else {
            KeyCheck::Run
        })
    }
}

impl Queue {
    /// Creates the consumer group (and the stream) if missing, on the
    /// stream of every priority level. The group
    /// starts at the beginning of the stream, so jobs added before any
    /// daemon ran are not skipped.
    ///
    /// # Errors
    /// Any Redis error other than "the group already exists".
    pub async fn ensure_group(&self) -> Result<(), QueueError> {
        for level in Priority::ALL {
            self.ensure_group_on(self.keys.stream(level)).await?;
        }
        Ok(())
    }

    /// [`Queue::ensure_group`] on one stream (one of [`super::Keys::stream`]'s).
    ///
    /// # Errors
    /// Redis errors (a key of another type under the stream's name among them).
    pub async fn ensure_group_on(&self, stream: &str) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        // Looked up first, read-only: a Redis at its maxmemory refuses the
        // create even when the group is there.
        let groups: Result<Value, RedisError> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut con)
            .await;
        if let Ok(Value::Array(groups)) = groups
            && groups.iter().any(is_wards_group)
        {
            return Ok(());
        }
        let res: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut con)
            .await;
        match res {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads up to `count` new deliveries for `consumer`, waiting at most
    /// `block` for the first one (no busy polling).
    ///
    /// # Errors
    /// Redis errors, or a reply that is not a stream read.
    pub async fn lease_batch(
        &self,
        consumer: &str,
        count: usize,
        block: Option<Duration>,
    ) -> Result<Vec<Delivery>, QueueError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            // BLOCK 0 would wait forever; wait at least a millisecond.
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        let reply: Value = cmd
            .arg("STREAMS")
            .arg(&self.keys.jobs)
            .arg(">")
            .query_async(&mut con)
            .await?;
        parse_xread(reply)
    }

    /// Resets the lease of deliveries `entry_ids` still owned by `consumer`;
    /// returns those it no longer owns.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn renew(
        &self,
        consumer: &str,
        entry_ids: &[String],
    ) -> Result<Vec<String>, QueueError> {
        if entry_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = RENEW_SCRIPT.key(&self.keys.jobs);
        inv.key(&self.keys.jobs_high).key(&self.keys.jobs_low);
        inv.arg(GROUP).arg(consumer);
        for id in entry_ids {
            inv.arg(id);
        }
        let mut con = self.con.clone();
        Ok(inv.invoke_async(&mut con).await?)
    }

    /// Takes over deliveries whose lease expired (idle longer than `lease`:
    /// their worker stopped renewing them), at most `count`, scanning the
    /// pending list from entry `from` (`"0-0"`: its start). Returns them and
    /// where the next scan goes on (`"0-0"` once the whole list was seen):
    /// Redis looks at no more than ten times `count` entries per call, so a
    /// caller that always started over would never see past them.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn reclaim(
        &self,
        consumer: &str,
        lease: Duration,
        from: &str,
        count: usize,
    ) -> Result<(String, Vec<Delivery>), QueueError> {
        self.reclaim_in(Priority::Normal, consumer, lease, from, count)
            .await
    }

    /// [`Queue::reclaim`] on the stream of level `level`.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn reclaim_in(
        &self,
        level: Priority,
        consumer: &str,
        lease: Duration,
        from: &str,
        count: usize,
    ) -> Result<(String, Vec<Delivery>), QueueError> {
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(self.keys.stream(level))
            .arg(GROUP)
            .arg(consumer)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
            .arg(from)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        match reply {
            Value::Array(mut parts) if parts.len() >= 2 => {
                let claimed = parse_entries(parts.swap_remove(1), "XAUTOCLAIM")?;
                let next = match parts.swap_remove(0) {
                    Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    Value::SimpleString(s) => s,
                    other => return Err(protocol("XAUTOCLAIM", &other)),
                };
                Ok((next, claimed))
            }
            other => Err(protocol("XAUTOCLAIM", &other)),
        }
    }

    /// Removes consumers of the group that hold no pending delivery and
    /// have not read for `idle` (daemons that stopped or died, each with its
    /// own name); returns their names. A live daemon reads every few seconds,
    /// and one removed by mistake is recreated by its next read.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn forget_idle_consumers(
        &self,
        me: &str,
        idle: Duration,
    ) -> Result<Vec<String>, QueueError> {
        let mut gone = Vec::new();
        for level in Priority::ALL {
            let names = match self.forget_idle_on(self.keys.stream(level), me, idle).await {
                Ok(names) => names,
                // A level no job was ever moved to may have no stream yet.
                Err(_) if level != Priority::Normal => Vec::new(),
                Err(e) => return Err(e),
            };
            for name in names {
                if !gone.contains(&name) {
                    gone.push(name);
                }
            }
        }
        Ok(gone)
    }

    /// [`Queue::forget_idle_consumers`] of one stream's group.
    async fn forget_idle_on(
        &self,
        stream: &str,
        me: &str,
        idle: Duration,
    ) -> Result<Vec<String>, QueueError> {
        let mut con = self.con.clone();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let mut gone = Vec::new();
        for c in self.consumers_of(stream).await? {
            let (name, pending, idle_for) = (c.name, c.pending > 0, c.idle_ms);
            if name != me && !pending && idle_for >= idle_ms {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(stream)
                    .arg(GROUP)
                    .arg(&name)
                    .query_async(&mut con)
                    .await?;
                gone.push(name);
            }
        }
        Ok(gone)
    }

    /// Claims the idempotency keys of a batch for their jobs: `(job id,
    /// key, ttl)` each. One `SET key id NX PX ttl GET` per key, pipelined:
    /// each claim is atomic on its own, and a script would cost Redis a
    /// conversion of every argument to Lua and back for no more safety.
    /// A key of another type is that job's [`KeyCheck::Unusable`]: one
    /// such key must not stop the batch.
    ///
    /// # Errors
    /// Redis errors (any refusal but `WRONGTYPE`), or a reply of the wrong
    /// shape.
    pub async fn check_keys(
        &self,
        items: &[(&str, &str, Duration)],
    ) -> Result<Vec<KeyCheck>, QueueError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (id, key, ttl) in items {
            pipe.cmd("SET")
                .arg(self.keys.idempotency(key))
                .arg(*id)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                .arg("GET");
        }
        pipe.ignore_errors();
        let mut con = self.con.clone();
        let held: Vec<redis::RedisResult<Option<String>>> = pipe.query_async(&mut con).await?;
        if held.len() != items.len() {
            return Err(QueueError::Protocol {
                what: "idempotency check",
                detail: format!("{} answers for {} keys", held.len(), items.len()),
            });
        }
        items
            .iter()
            .zip(held)
            .map(|((id, _, _), held)| match held {
                Ok(held) => Ok(KeyCheck::claimed(id, held.as_deref())),
                Err(e) if e.code() == Some("WRONGTYPE") => Ok(KeyCheck::Unusable(e.to_string())),
                Err(e) => Err(e.into()),
            })
            .collect()
    }

    /// Gives back the idempotency keys of entries dead-lettered without
    /// running for what they are: `(entry id, key)` each, a key deleted
    /// only while it is still claimed for exactly that entry (see
    /// `lua/release_keys.lua`).
    ///
    /// # Errors
    /// Redis errors (a key holding another type among them).
    pub async fn release_keys(&self, items: &[(&str, &str)]) -> Result<(), QueueError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut inv = RELEASE_KEYS_SCRIPT.prepare_invoke();
        for (entry, key) in items {
            inv.key(self.keys.idempotency(key)).arg(*entry);
        }
        let mut con = self.con.clone();
        let _given_back: usize = inv.invoke_async(&mut con).await?;
        Ok(())
    }
}

/// Whether an `XINFO GROUPS` item is the group `ward`.
fn is_wards_group(g: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::BulkString(b) => b.as_slice() == GROUP.as_bytes(),
        Value::SimpleString(s) => s == GROUP,
        _ => false,
    };
    let is_name = |v: &Value| match v {
        Value::BulkString(b) => b.as_slice() == b"name",
        Value::SimpleString(s) => s == "name",
        _ => false,
    };
    match g {
        Value::Array(flat) => flat
            .chunks(2)
            .any(|kv| matches!(kv, [k, v] if is_name(k) && text(v))),
        Value::Map(pairs) => pairs.iter().any(|(k, v)| is_name(k) && text(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::KeyCheck;

    #[test]
    fn a_claim_runs_a_free_or_own_key_and_stops_a_taken_or_completed_one() {
        assert_eq!(KeyCheck::claimed("1-0", None), KeyCheck::Run);
        assert_eq!(KeyCheck::claimed("1-0", Some("1-0")), KeyCheck::Run);
        assert_eq!(
            KeyCheck::claimed("2-0", Some("1-0")),
            KeyCheck::DuplicateOf("1-0".into())
        );
        assert_eq!(
            KeyCheck::claimed("2-0", Some("1-0 done abc")),
            KeyCheck::DuplicateOf("1-0".into())
        );
        assert_eq!(
            KeyCheck::claimed("1-0", Some("1-0 done abc")),
            KeyCheck::Completed
        );
        assert_eq!(
            KeyCheck::claimed("1-0", Some(" ")),
            KeyCheck::DuplicateOf(" ".into())
        );
    }

    #[test]
    fn a_lease_scripts_answers_read_as_the_claims_they_report() {
        assert_eq!(KeyCheck::from_answer(""), None);
        assert_eq!(KeyCheck::from_answer("run"), Some(KeyCheck::Run));
        assert_eq!(KeyCheck::from_answer("done"), Some(KeyCheck::Completed));
        assert_eq!(
            KeyCheck::from_answer("dup 1-0"),
            Some(KeyCheck::DuplicateOf("1-0".into()))
        );
        // What the script answers for a key holding a value Ward never
        // writes (empty): not this job's.
        assert_eq!(
            KeyCheck::from_answer("dup "),
            Some(KeyCheck::DuplicateOf(String::new()))
        );
        assert_eq!(
            KeyCheck::from_answer("bad WRONGTYPE Operation against a key"),
            Some(KeyCheck::Unusable(
                "WRONGTYPE Operation against a key".into()
            ))
        );
    }
}
