//! The daemon's background loops, one per file, all of one shape: a struct
//! holding what the loop needs, a [`Service::run`] that loops until its
//! [`Shutdown`] is signalled, started as its own task.
//!
//! Per queue: [`heartbeat`] renews this daemon's leases, [`reclaim`] takes
//! over deliveries of daemons that died, [`consumers`] removes their
//! consumers from the group, [`promote`] moves due delayed jobs to the
//! stream, [`retention`] trims the dead letters, [`batch_retention`]
//! removes old finished batches' ledgers, [`functions`] puts Ward's
//! Redis Functions back if Redis lost them, [`breakers`] keeps this daemon's
//! copy of the circuit breakers fresh, [`control`] hears of cancel
//! requests and interrupts the attempts they concern, [`pause`] keeps its
//! view of the queue's pauses (and releases held jobs when one ends),
//! [`upstreams`] its view of the upstreams' holds and its slots' leases,
//! [`series`] writes the per-minute counts of finished jobs. Per
//! `[[schedule]]`:
//! [`schedules`].

use std::future::Future;

use futures_util::FutureExt as _;

use tokio::task::{JoinHandle, JoinSet};

use super::shutdown::Shutdown;

pub(crate) mod batch_retention;
pub(crate) mod breakers;
pub(crate) mod consumers;
pub(crate) mod control;
pub(crate) mod functions;
pub(crate) mod heartbeat;
pub(crate) mod pause;
pub(crate) mod promote;
pub(crate) mod reclaim;
pub(crate) mod retention;
pub(crate) mod schedules;
pub(crate) mod series;
pub(crate) mod upstreams;

/// A loop of the daemon that runs beside the attempts.
pub(crate) trait Service: Sized + Send + 'static {
    /// Loops until `shutdown` is signalled.
    fn run(self, shutdown: Shutdown) -> impl Future<Output = ()> + Send;

    /// Runs the service as its own task; the handle resolves once it stopped.
    fn start(self, shutdown: Shutdown) -> JoinHandle<()> {
        tokio::spawn(supervised::<Self>(self.run(shutdown)))
    }

    /// Runs the service as a task of `tasks`, which watches it end.
    fn start_in(self, tasks: &mut JoinSet<()>, shutdown: Shutdown) {
        tasks.spawn(supervised::<Self>(self.run(shutdown)));
    }
}

/// Exit status of a daemon whose background service panicked (EX_SOFTWARE).
const PANICKED: i32 = 70;

/// `run`, with a panic made loud and final: a service that died quietly
/// (a reclaimer, a heartbeat) would leave the daemon running without it,
/// reclaiming or renewing nothing, for good. The daemon says which service
/// and why, and exits so its supervisor starts it afresh; deliveries it held
/// stay pending and are reclaimed once their lease expires.
async fn supervised<S>(run: impl Future<Output = ()>) {
    if let Err(panic) = std::panic::AssertUnwindSafe(run).catch_unwind().await {
        tracing::error!(
            service = std::any::type_name::<S>(),
            panic = panic_message(panic.as_ref()),
            "a background service panicked; the daemon exits to be restarted"
        );
        std::process::exit(PANICKED);
    }
}

/// What a panic said, when it said it as text.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}
