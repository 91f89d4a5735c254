//! Moves due delayed jobs to the stream.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::store::{Queue, Wake};

use super::Service;
use crate::worker::shutdown::Shutdown;

/// Most delayed jobs promoted in one script call.
const MAX_PROMOTE: usize = 512;
/// The longest the promoter sleeps without looking at the delayed set: a
/// safety net for a lost wake-up message, not the normal path.
const PROMOTE_IDLE: Duration = Duration::from_secs(1);
/// After a promotion Redis refused: how long to wait before the next.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Moves due jobs from `ward:{Q}:delayed` back to the stream.
///
/// It sleeps until the earliest due time (measured in the Redis server's
/// clock, so host clock skew cannot make a job early), and is woken sooner
/// through pub/sub on `ward:{Q}:wake` whenever any daemon or client schedules
/// a job. Promotion is one script, so several daemons can run this at once.
pub(crate) struct Promote {
    /// The queue whose delayed set it promotes.
    pub(crate) queue: Queue,
    /// The Redis URL, for the pub/sub connection of wake-ups.
    pub(crate) url: String,
}

impl Service for Promote {
    async fn run(self, mut stop: Shutdown) {
        let queue = &self.queue;
        let mut wake: Option<Wake> = None;
        let mut backoff = RETRY;
        while !stop.is_shutdown() {
            if wake.is_none() {
                wake = subscribe(&self.url, queue).await;
            }
            let sleep_for = match queue.promote_due(MAX_PROMOTE).await {
                Ok(p) => {
                    backoff.reset();
                    for id in &p.missing {
                        tracing::error!(queue = %queue.keys.queue, job_id = %id, "delayed job has no record; it cannot be run (was its key deleted by hand?)");
                    }
                    if p.moved > 0 {
                        tracing::debug!(queue = %queue.keys.queue, moved = p.moved, "promoted due jobs");
                    }
                    if p.moved >= MAX_PROMOTE {
                        continue;
                    }
                    p.next_due_ms
                        .map_or(PROMOTE_IDLE, |due| {
                            Duration::from_millis(due.saturating_sub(p.now_ms))
                        })
                        .min(PROMOTE_IDLE)
                }
                Err(e) => {
                    let delay = backoff.next();
                    tracing::error!(queue = %queue.keys.queue, error = %e, retry_in = ?delay, "cannot promote delayed jobs; retrying");
                    delay
                }
            };
            if sleep_for.is_zero() {
                continue;
            }
            let lost_wake = {
                let message = async {
                    match wake.as_mut() {
                        Some(w) => !w.next().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(sleep_for) => false,
                    lost = message => lost,
                    () = stop.recv() => false,
                }
            };
            if lost_wake {
                wake = None;
            }
        }
    }
}

/// The queue's wake-ups, or `None` (said in a warning) when Redis refuses;
/// the promoter then looks every second.
async fn subscribe(url: &str, queue: &Queue) -> Option<Wake> {
    match Wake::subscribe(url, &queue.keys).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(queue = %queue.keys.queue, error = %e, "cannot subscribe to wake-ups; delayed jobs may start up to 1s late");
            None
        }
    }
}
