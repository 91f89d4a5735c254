//! Removes the consumers of stopped daemons from a queue's group.

use std::time::Duration;

use crate::store::Queue;

use super::Service;
use crate::worker::shutdown::Shutdown;

/// How often a daemon looks for consumers of stopped daemons to remove.
const CONSUMER_SWEEP: Duration = Duration::from_secs(300);
/// A consumer with nothing pending that has not read for this long belongs
/// to a daemon that is gone (each daemon reads every few seconds).
const CONSUMER_IDLE: Duration = Duration::from_secs(3600);

/// Every [`CONSUMER_SWEEP`], removes the group's consumers that hold nothing
/// and have been idle for [`CONSUMER_IDLE`]: each daemon run adds one, and
/// the group would otherwise list every daemon that ever ran.
pub(crate) struct ConsumerSweep {
    /// The queue whose group it sweeps.
    pub(crate) queue: Queue,
    /// This daemon's consumer name, never removed.
    pub(crate) consumer: String,
}

impl Service for ConsumerSweep {
    async fn run(self, mut stop: Shutdown) {
        while stop.sleep(CONSUMER_SWEEP).await {
            match self
                .queue
                .forget_idle_consumers(&self.consumer, CONSUMER_IDLE)
                .await
            {
                Ok(gone) if !gone.is_empty() => {
                    tracing::info!(queue = %self.queue.keys.queue, consumers = ?gone, "removed idle consumers of stopped daemons (no pending deliveries)");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot list the group's consumers")
                }
            }
        }
    }
}
