//! Puts Ward's Redis Functions back when Redis has lost them.

use std::time::Duration;

use crate::store::Queue;

use super::Service;
use crate::worker::shutdown::Shutdown;

/// How often each queue checks that Redis still has Ward's functions.
const FUNCTIONS_CHECK: Duration = Duration::from_secs(5);

/// Every [`FUNCTIONS_CHECK`], makes sure Redis has `ward_enqueue` and the
/// rest of Ward's library: clients enqueue through it, and a Redis restarted
/// without persistence has forgotten it.
pub(crate) struct FunctionCheck {
    /// The queue it checks for (the library is the same for every queue).
    pub(crate) queue: Queue,
}

impl Service for FunctionCheck {
    async fn run(self, mut stop: Shutdown) {
        while stop.sleep(FUNCTIONS_CHECK).await {
            match self.queue.ensure_functions().await {
                Ok(true) => {
                    tracing::warn!(queue = %self.queue.keys.queue, "Redis had lost Ward's functions (restart without persistence?); loaded them again")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(queue = %self.queue.keys.queue, error = %e, "cannot check Ward's Redis Functions")
                }
            }
        }
    }
}
