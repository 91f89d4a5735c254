//! Applies a queue's batch ledger retention (`[[queue]] batch_retention`):
//! a finished batch's ledger is removed once it finished that long ago.

use std::time::Duration;

use crate::store::Queue;

use super::Service;
use crate::worker::shutdown::Shutdown;

/// How often retention looks for ledgers to remove: they are kept for
/// days, so a minute late costs nothing.
const EVERY: Duration = Duration::from_secs(60);

/// Removes the ledgers of batches that finished more than `keep` ago,
/// every [`EVERY`]. Each call is one script per chunk, so several daemons
/// may run it at once.
pub(crate) struct BatchRetention {
    /// The queue whose batch ledgers it removes.
    pub(crate) queue: Queue,
    /// How long a finished batch's ledger is kept.
    pub(crate) keep: Duration,
}

impl Service for BatchRetention {
    async fn run(self, mut stop: Shutdown) {
        let keep_ms = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
        while !stop.is_shutdown() {
            let cut = crate::clock::now_ms().saturating_sub(keep_ms);
            match self.queue.expire_batches(cut).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(queue = %self.queue.keys.queue, removed = n, keep = %humantime::format_duration(self.keep), "removed the ledgers of batches finished longer ago than batch_retention");
                }
                Err(e) => {
                    tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot apply batch ledger retention; trying again later");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                () = stop.recv() => {}
            }
        }
    }
}
