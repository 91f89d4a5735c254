//! Circuit breakers per upstream, shared by every daemon of a queue.

use std::sync::LazyLock;

use redis::Value;

use super::reply::{bytes_of, protocol};
use super::script::script;
use super::{Queue, QueueError};

static BREAKER_RECORD_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/breaker_record.lua")));
static BREAKER_FORCE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/breaker_force.lua")));
static BREAKERS_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/breakers.lua")));

/// One upstream's circuit breaker as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakerState {
    /// The upstream.
    pub upstream: String,
    /// Failures counted in the current window.
    pub failures: u32,
    /// Open until this Redis time, Unix ms (0 if it never opened).
    pub open_until_ms: u64,
    /// How many times it has opened (while its hash lives).
    pub openings: u32,
}

/// What reporting to a breaker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerUpdate {
    /// Open until this Redis time, Unix ms, if it is open.
    pub open_until_ms: Option<u64>,
    /// This report opened it (so this daemon raises the alert).
    pub opened_now: bool,
}

/// What an operator's override of a breaker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BreakerForced {
    /// Whether it was open before.
    pub was_open: bool,
    /// Open until this Redis time, Unix ms; `None` once closed.
    pub open_until_ms: Option<u64>,
}

impl Queue {
    /// An operator's override: opens `upstream`'s breaker for `open_for`
    /// (whatever it counted), or with `None` closes it and forgets its
    /// failures. `by` and `note` are kept in the breaker's hash.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn breaker_force(
        &self,
        upstream: &str,
        open_for: Option<std::time::Duration>,
        by: &str,
        note: &str,
    ) -> Result<BreakerForced, QueueError> {
        let mut con = self.con.clone();
        let ms = open_for.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (was_open, until): (u8, u64) = BREAKER_FORCE_SCRIPT
            .key(&self.keys.breakers)
            .key(self.keys.breaker(upstream))
            .arg(upstream)
            .arg(if open_for.is_some() { "open" } else { "close" })
            .arg(ms)
            .arg(by)
            .arg(note)
            .invoke_async(&mut con)
            .await?;
        Ok(BreakerForced {
            was_open: was_open == 1,
            open_until_ms: (until > 0).then_some(until),
        })
    }

    /// Reports `failures` failures blamed on `upstream` (0: a success) to its
    /// circuit breaker, shared by every daemon of the queue.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn breaker_report(
        &self,
        upstream: &str,
        failures: u32,
        policy: &crate::config::BreakerPolicy,
    ) -> Result<BreakerUpdate, QueueError> {
        let mut con = self.con.clone();
        let (state, until, opened, _failures): (String, u64, u8, u32) = BREAKER_RECORD_SCRIPT
            .key(&self.keys.breakers)
            .key(self.keys.breaker(upstream))
            .arg(upstream)
            .arg(failures)
            .arg(policy.failures)
            .arg(u64::try_from(policy.window.as_millis()).unwrap_or(u64::MAX))
            .arg(u64::try_from(policy.open_for.as_millis()).unwrap_or(u64::MAX))
            .invoke_async(&mut con)
            .await?;
        Ok(BreakerUpdate {
            open_until_ms: (state == "open").then_some(until),
            opened_now: opened == 1,
        })
    }

    /// Every breaker of the queue, and the Redis server's time (Unix ms).
    /// Upstreams whose breaker has expired are dropped from the queue's set
    /// on the way.
    ///
    /// # Errors
    /// Redis errors, or a reply of the wrong shape.
    pub async fn breakers(&self) -> Result<(u64, Vec<BreakerState>), QueueError> {
        let mut con = self.con.clone();
        let reply: Vec<Value> = BREAKERS_SCRIPT
            .key(&self.keys.breakers)
            .arg(&self.keys.breaker_prefix)
            .invoke_async(&mut con)
            .await?;
        let int = |v: &Value| match v {
            Value::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        };
        let Some(now) = reply.first().and_then(int) else {
            return Err(protocol("breakers", &Value::Array(reply)));
        };
        let mut out = Vec::new();
        for chunk in reply[1..].chunks(4) {
            let [u, f, o, n] = chunk else {
                return Err(protocol("breakers", &Value::Array(chunk.to_vec())));
            };
            out.push(BreakerState {
                upstream: String::from_utf8_lossy(&bytes_of(u.clone())).into_owned(),
                failures: int(f).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
                open_until_ms: int(o).unwrap_or(0),
                openings: int(n).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
            });
        }
        out.sort_by(|a, b| a.upstream.cmp(&b.upstream));
        Ok((now, out))
    }
}
