//! Renews the leases of the deliveries this daemon holds.

use std::time::Duration;

use crate::store::{DaemonBeat, Queue};

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

impl Heartbeat {
    /// Says this daemon is alive, and which version it runs, for the admin
    /// API's list of daemons (the group itself records neither); the hash
    /// expires after three missed beats.
    async fn beat(&self, started_ms: u64) {
        let beat = DaemonBeat {
            version: env!("CARGO_PKG_VERSION").to_string(),
            last_seen_ms: crate::clock::now_ms(),
            started_ms,
        };
        if let Err(e) = self
            .queue
            .record_beat(&self.consumer, &beat, self.lease * 3)
            .await
        {
            tracing::debug!(queue = %self.queue.keys.queue, error = %e, "cannot record the daemon's beat");
        }
    }
}

impl Service for Heartbeat {
    async fn run(self, mut stop: Shutdown) {
        let every = self.lease / 3;
        let started_ms = crate::clock::now_ms();
        self.beat(started_ms).await;
        while stop.sleep(every).await {
            self.beat(started_ms).await;
            let ids = self.in_flight.entry_ids();
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
