//! What Redis says of its memory: whether it may evict Ward's keys, and how
//! near it is to its limit. Ward's state is all in Redis; an eviction policy
//! other than `noeviction` lets Redis drop streams, job records and
//! idempotency keys under pressure, which loses jobs and runs others twice.

use super::{QueueError, Store};

/// Redis' memory settings and use, from `INFO memory`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// `maxmemory-policy`.
    pub policy: String,
    /// `maxmemory` in bytes; 0 when there is no limit.
    pub max_bytes: u64,
    /// `used_memory` in bytes.
    pub used_bytes: u64,
}

/// Share of `maxmemory` past which Ward warns.
pub const NEAR_FULL: f64 = 0.9;

impl Memory {
    /// Reads the `INFO memory` text.
    #[must_use]
    pub fn parse(info: &str) -> Memory {
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok()).unwrap_or(0);
        Memory {
            policy: field("maxmemory_policy").unwrap_or("unknown").to_string(),
            max_bytes: number("maxmemory"),
            used_bytes: number("used_memory"),
        }
    }

    /// What an operator must hear about it, one line each; empty when all is well.
    #[must_use]
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.policy != "noeviction" {
            out.push(format!(
                "Redis' maxmemory-policy is {}: under memory pressure Redis may evict Ward's streams, job records and idempotency keys, losing jobs and running others twice; set maxmemory-policy noeviction",
                self.policy
            ));
        }
        #[allow(clippy::cast_precision_loss, reason = "a share, not an amount")]
        let used = self.used_bytes as f64 / self.max_bytes.max(1) as f64;
        if self.max_bytes > 0 && used >= NEAR_FULL {
            out.push(format!(
                "Redis uses {:.0}% of its maxmemory ({} of {} bytes): at 100% it refuses writes, and enqueues and outcomes fail",
                used * 100.0,
                self.used_bytes,
                self.max_bytes
            ));
        }
        out
    }
}

impl super::Queue {
    /// `INFO memory` of the server holding this queue (on a cluster, its
    /// slot's master), read.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn memory(&self) -> Result<Memory, QueueError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("INFO");
        cmd.arg("memory");
        let info = con.on_master_of(&self.keys.jobs, cmd).await?;
        Ok(Memory::parse(
            &redis::from_redis_value::<String>(info).map_err(redis::RedisError::from)?,
        ))
    }
}

impl Store {
    /// `INFO memory`, read.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn memory(&self) -> Result<Memory, QueueError> {
        let mut con = self.con();
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut con)
            .await?;
        Ok(Memory::parse(&info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_evicting_policy_and_a_nearly_full_redis_are_both_told() {
        let m = Memory::parse(
            "# Memory\r\nused_memory:950\r\nmaxmemory:1000\r\nmaxmemory_policy:allkeys-lru\r\n",
        );
        assert_eq!(
            (m.policy.as_str(), m.max_bytes, m.used_bytes),
            ("allkeys-lru", 1000, 950)
        );
        let w = m.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("allkeys-lru") && w[1].contains("95%"),
            "{w:?}"
        );
        let fine =
            Memory::parse("used_memory:10\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n");
        assert!(fine.warnings().is_empty());
    }
}
