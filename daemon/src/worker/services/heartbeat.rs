//! Renews the leases of the deliveries this daemon holds.

use std::time::Duration;

use crate::store::Queue;

use super::Service;
use crate::worker::InFlight;
use crate::worker::shutdown::Shutdown;

/// Renews the leases of this daemon's deliveries every third of the lease,
/// in one script for all of them, until told to stop (after the last
/// attempt in flight has been recorded, so its own shutdown signal).
pub(crate) struct Heartbeat {
    /// The queue whose deliveries it renews.
    pub(crate) queue: Queue,
    /// This daemon's consumer name in the group.
    pub(crate) consumer: String,
    /// The queue's lease.
    pub(crate) lease: Duration,
    /// The deliveries to renew: leased and not yet recorded.
    pub(crate) in_flight: InFlight,
}

impl Service for Heartbeat {
    async fn run(self, mut stop: Shutdown) {
        let every = self.lease / 3;
        while stop.sleep(every).await {
            let ids: Vec<String> = match self.in_flight.lock() {
                Ok(set) => set.iter().cloned().collect(),
                Err(_) => continue,
            };
            match self.queue.renew(&self.consumer, &ids).await {
                Ok(lost) => {
                    for entry in lost {
                        tracing::warn!(queue = %self.queue.keys.queue, entry = %entry, "a delivery this daemon is running was reclaimed by another (its lease expired); its outcome will be ignored if the other daemon records first");
                    }
                }
                Err(e) => {
                    tracing::error!(queue = %self.queue.keys.queue, error = %e, "cannot renew leases; retrying")
                }
            }
        }
    }
}
