//! The daemon's background loops, one per file, all of one shape: a struct
//! holding what the loop needs, a [`Service::run`] that loops until its
//! [`Shutdown`] is signalled, started as its own task.
//!
//! Per queue: [`heartbeat`] renews this daemon's leases, [`reclaim`] takes
//! over deliveries of daemons that died, [`consumers`] removes their
//! consumers from the group, [`promote`] moves due delayed jobs to the
//! stream, [`retention`] trims the dead letters, [`functions`] puts Ward's
//! Redis Functions back if Redis lost them, [`breakers`] keeps this daemon's
//! copy of the circuit breakers fresh. Per `[[schedule]]`: [`schedules`].

use std::future::Future;

use tokio::task::{JoinHandle, JoinSet};

use super::shutdown::Shutdown;

pub(crate) mod breakers;
pub(crate) mod consumers;
pub(crate) mod functions;
pub(crate) mod heartbeat;
pub(crate) mod promote;
pub(crate) mod reclaim;
pub(crate) mod retention;
pub(crate) mod schedules;

/// A loop of the daemon that runs beside the attempts.
pub(crate) trait Service: Sized + Send + 'static {
    /// Loops until `shutdown` is signalled.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = ()> + Send;

    /// Runs the service as its own task; the handle resolves once it stopped.
    fn start(self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Runs the service as a task of `tasks`, which watches it end.
    fn start_in(self, tasks: &mut JoinSet<()>, shutdown: Shutdown) {
        tasks.spawn(self.run(shutdown));
    }
}
