//! Keeps this daemon's copy of a queue's circuit breakers fresh.

use std::sync::Arc;

use crate::breaker::{Breakers, REFRESH};

use super::Service;
use crate::worker::shutdown::Shutdown;

/// Re-reads the queue's breakers from Redis every [`REFRESH`], so deciding
/// whether to run a job costs no round trip.
pub(crate) struct BreakerRefresh {
    /// The queue's breakers.
    pub(crate) breakers: Arc<Breakers>,
    /// The queue's name (for log lines).
    pub(crate) queue: String,
}

impl Service for BreakerRefresh {
    async fn run(self, mut stop: Shutdown) {
        while !stop.is_shutdown() {
            if let Err(e) = self.breakers.refresh().await {
                tracing::warn!(queue = %self.queue, error = %e, "cannot read the circuit breakers");
            }
            if !stop.sleep(REFRESH).await {
                return;
            }
        }
    }
}
