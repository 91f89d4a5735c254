//! Keeps this daemon's view of a queue's upstreams fresh (Retry-After
//! holds, the `ward_upstream_*` gauges) and renews the leases of the
//! upstream slots its attempts hold.

use std::sync::Arc;
use std::time::Instant;

use crate::upstream::{REFRESH, Upstreams};

use super::Service;
use crate::worker::shutdown::Shutdown;

/// Re-reads the queue's upstreams every [`REFRESH`]; renews the slots this
/// daemon holds every third of their lease, like the heartbeat renews its
/// deliveries. (On shutdown it stops; the slots of attempts still running
/// then last one lease, and are given back when they finish.)
pub(crate) struct UpstreamRefresh {
    /// The queue's upstreams.
    pub(crate) upstreams: Arc<Upstreams>,
    /// The queue's name (for log lines).
    pub(crate) queue: String,
}

impl Service for UpstreamRefresh {
    async fn run(self, mut stop: Shutdown) {
        let mut renewed = Instant::now();
        while !stop.is_shutdown() {
            if let Err(e) = self.upstreams.refresh().await {
                tracing::warn!(queue = %self.queue, error = %e, "cannot read the upstreams' limits and holds");
            }
            if renewed.elapsed() >= self.upstreams.lease() / 3 {
                renewed = Instant::now();
                if let Err(e) = self.upstreams.renew().await {
                    tracing::error!(queue = %self.queue, error = %e, "cannot renew upstream slots; retrying");
                }
            }
            if !stop.sleep(REFRESH).await {
                return;
            }
        }
    }
}
