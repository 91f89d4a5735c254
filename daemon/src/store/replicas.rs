//! Waiting for replicas: `WAIT` on the connection that wrote, so that a
//! queue can count an outcome as recorded only once replicas have it (and
//! a failover cannot forget it).

use std::time::Duration;

use super::{Queue, QueueError};

impl Queue {
    /// `WAIT n timeout` on the master holding this queue: how many replicas
    /// have every write this queue's connection made so far (at most after
    /// `timeout`; fewer than `n` when they did not catch up in time).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn wait_replicas(&self, n: u32, timeout: Duration) -> Result<u32, QueueError> {
        let mut con = self.con.clone();
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(n)
            .arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        let reply = con.on_master_of(&self.keys.jobs, cmd).await?;
        Ok(redis::from_redis_value(reply).map_err(redis::RedisError::from)?)
    }
}
