//! The daemons of a queue: the consumers of its group as Redis sees them
//! (`XINFO CONSUMERS`), and what each daemon's heartbeat says of itself in
//! a small hash with a TTL (`ward:{Q}:daemon:<consumer>`: its version and
//! when it last beat), which Redis has no other place for.

use std::collections::HashMap;
use std::time::Duration;

use redis::{RedisError, Value};

use super::{GROUP, Queue, QueueError};
use crate::priority::Priority;

/// One consumer of a queue's group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerInfo {
    /// The consumer's name (`<host>-<pid>-<random>`: one per daemon run).
    pub name: String,
    /// Deliveries it holds: leased and not yet acknowledged.
    pub pending: u64,
    /// Milliseconds since it last read or claimed.
    pub idle_ms: u64,
    /// Milliseconds since its last successful read (Redis 7.2+; `None`
    /// before, or when it never read).
    pub inactive_ms: Option<u64>,
}

/// What a daemon's heartbeat last wrote of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DaemonBeat {
    /// The `ward` version it runs.
    pub version: String,
    /// When it last beat, Unix ms (its own clock).
    pub last_seen_ms: u64,
    /// When it started, Unix ms.
    pub started_ms: u64,
}

impl Queue {
    /// The consumers of the queue's groups (one per priority level's
    /// stream), one line per daemon: what it holds on every level, and the
    /// least idle time among them. None when no daemon has created a group.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>, QueueError> {
        let mut out: Vec<ConsumerInfo> = Vec::new();
        for level in Priority::ALL {
            for c in self.consumers_of(self.keys.stream(level)).await? {
                match out.iter_mut().find(|o| o.name == c.name) {
                    Some(o) => {
                        o.pending += c.pending;
                        o.idle_ms = o.idle_ms.min(c.idle_ms);
                        o.inactive_ms = match (o.inactive_ms, c.inactive_ms) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    None => out.push(c),
                }
            }
        }
        Ok(out)
    }

    /// The consumers of `stream`'s group; none when the stream or the group
    /// does not exist yet.
    ///
    /// # Errors
    /// Redis errors.
    pub(super) async fn consumers_of(&self, stream: &str) -> Result<Vec<ConsumerInfo>, QueueError> {
        let mut con = self.con.clone();
        let reply: Result<Value, RedisError> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(GROUP)
            .query_async(&mut con)
            .await;
        let reply = match reply {
            Ok(r) => r,
            // No stream or no group yet: nobody consumes it.
            Err(e) if e.code() == Some("NOGROUP") || e.to_string().contains("no such key") => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e.into()),
        };
        let Value::Array(consumers) = reply else {
            return Ok(Vec::new());
        };
        Ok(consumers.into_iter().filter_map(consumer_info).collect())
    }

    /// Records this daemon's beat: its version and the time, kept for `ttl`
    /// (a daemon that stops beating drops out by itself), and its name in
    /// the queue's set of daemons (see [`Queue::beating`]), where beats
    /// older than `ttl` are dropped.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn record_beat(
        &self,
        consumer: &str,
        beat: &DaemonBeat,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        let key = self.keys.daemon(consumer);
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut con = self.con.clone();
        let () = redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("version", beat.version.clone()),
                    ("last_seen", beat.last_seen_ms.to_string()),
                    ("started", beat.started_ms.to_string()),
                ],
            )
            .ignore()
            .pexpire(&key, ttl_ms)
            .ignore()
            .zadd(&self.keys.daemons, consumer, beat.last_seen_ms)
            .ignore()
            .zrembyscore(
                &self.keys.daemons,
                0,
                beat.last_seen_ms.saturating_sub(ttl_ms.unsigned_abs()),
            )
            .ignore()
            .pexpire(&self.keys.daemons, ttl_ms)
            .ignore()
            .query_async(&mut con)
            .await?;
        Ok(())
    }

    /// The daemons that beat for this queue lately (within their beat's
    /// TTL, give or take the clocks), by consumer name: those serving it,
    /// whether or not they have leased from it yet.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn beating(&self) -> Result<Vec<String>, QueueError> {
        let mut con = self.con.clone();
        Ok(redis::cmd("ZRANGE")
            .arg(&self.keys.daemons)
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await?)
    }

    /// What consumer `consumer`'s daemon last wrote of itself, if its beat
    /// has not expired.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn beat(&self, consumer: &str) -> Result<Option<DaemonBeat>, QueueError> {
        let mut con = self.con.clone();
        let f: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.keys.daemon(consumer))
            .query_async(&mut con)
            .await?;
        if f.is_empty() {
            return Ok(None);
        }
        let number = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some(DaemonBeat {
            version: f.get("version").cloned().unwrap_or_default(),
            last_seen_ms: number("last_seen"),
            started_ms: number("started"),
        }))
    }
}

/// One consumer of an `XINFO CONSUMERS` reply (RESP2 flat array or RESP3 map).
fn consumer_info(c: Value) -> Option<ConsumerInfo> {
    let fields: Vec<(String, Value)> = match c {
        Value::Array(flat) => flat
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text(k)?, v.clone())),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, v)))
            .collect(),
        _ => return None,
    };
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let int = |name: &str| match get(name) {
        Some(Value::Int(n)) => u64::try_from(*n).ok(),
        _ => None,
    };
    Some(ConsumerInfo {
        name: text(get("name")?)?,
        pending: int("pending").unwrap_or(0),
        idle_ms: int("idle").unwrap_or(0),
        inactive_ms: int("inactive"),
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
