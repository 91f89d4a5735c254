//! One shutdown signal for every loop of the daemon.
//!
//! The daemon's [`Trigger`] is pulled once, when the daemon is told to stop;
//! every loop holds a [`Shutdown`] and either checks it between rounds or
//! waits on it next to its timer. A loop that must outlive the others (the
//! heartbeat renews leases until the last attempt is recorded) gets its own
//! pair, pulled later.

use std::time::Duration;

use tokio::sync::watch;

/// Tells every [`Shutdown`] made with it to stop.
#[derive(Debug)]
pub(crate) struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// Signals shutdown to every holder of a [`Shutdown`] of this trigger.
    pub(crate) fn pull(&self) {
        let _ = self.0.send(true);
    }
}

/// A loop's view of the shutdown signal; clone it for each loop.
#[derive(Debug, Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A new signal, not yet given.
    pub(crate) fn new() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Shutdown(rx))
    }

    /// Whether shutdown has been signalled.
    pub(crate) fn is_shutdown(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves when the signal changes after this receiver last looked
    /// (or at once if it already has), and when the trigger is gone.
    pub(crate) async fn recv(&mut self) {
        let _ = self.0.changed().await;
    }

    /// Sleeps for `period` unless shutdown comes first: `true` when the
    /// whole period passed, `false` when it was cut short (see [`recv`](Self::recv)).
    #[must_use]
    pub(crate) async fn sleep(&mut self, period: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(period) => true,
            () = self.recv() => false,
        }
    }

    /// The signal as a plain `watch` receiver, for loops outside the worker
    /// that take one (the observability sampler).
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}
