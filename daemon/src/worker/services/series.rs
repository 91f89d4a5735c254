//! Flushes a queue's per-minute counts of finished jobs (tallied in memory
//! by its completer) to Redis every few seconds, for the web screen's
//! charts.

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::series::Tally;
use crate::store::Queue;

use super::Service;
use crate::worker::shutdown::Shutdown;

/// How often the counts are written: one transaction per queue per period
/// whatever the throughput, and a chart at most this far behind.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_secs(5);
/// After a flush Redis refused: how long until the next try.
const FLUSH_RETRY: Backoff = Backoff::new(FLUSH_EVERY, Duration::from_secs(60));

/// Writes the tally every [`FLUSH_EVERY`], and once more when stopped
/// (its own signal, pulled after the completer recorded its last batch).
/// What Redis refuses goes back into the tally for the next try; nothing
/// waits on it (a chart is worth less than a job's outcome).
pub(crate) struct SeriesFlush {
    /// The queue whose counts it writes.
    pub(crate) queue: Queue,
    /// The counts, shared with the completer.
    pub(crate) tally: Arc<Tally>,
}

impl SeriesFlush {
    /// Writes what was counted; `false` when Redis refused (kept for later).
    async fn flush(&self) -> bool {
        let buckets = self.tally.take();
        if buckets.is_empty() {
            return true;
        }
        match self.queue.add_series(&buckets).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(queue = %self.queue.keys.queue, error = %e, "cannot write the per-minute job counts; keeping them for the next try");
                self.tally.put_back(buckets, crate::clock::now_ms());
                false
            }
        }
    }
}

impl Service for SeriesFlush {
    async fn run(self, mut stop: Shutdown) {
        let mut backoff = FLUSH_RETRY;
        let mut wait = FLUSH_EVERY;
        loop {
            let go_on = stop.sleep(wait).await;
            if self.flush().await {
                backoff.reset();
                wait = FLUSH_EVERY;
            } else {
                wait = backoff.next();
            }
            if !go_on {
                break;
            }
        }
    }
}
