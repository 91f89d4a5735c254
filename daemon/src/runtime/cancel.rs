//! The cancel signal of one attempt: set once, by whoever learns that an
//! operator cancelled the job, and seen by the attempt both where wasm runs
//! (the epoch callback reads the flag every tick) and where it waits in an
//! async host call (a sleep, an HTTP request: the attempt's future races
//! [`Cancel::cancelled`]).

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

/// One attempt's cancel signal. Cheap to check; shared as an `Arc`.
#[derive(Debug, Default)]
pub struct Cancel {
    /// Set once the attempt is to end; never cleared.
    flag: AtomicBool,
    /// Wakes an attempt parked in a host call.
    notify: Notify,
}

impl Cancel {
    /// Tells the attempt to end as `cancelled`. Idempotent.
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether [`Cancel::cancel`] was called.
    #[must_use]
    pub fn is_cancelled(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Resolves once the attempt is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        // A `Notified` receives `notify_waiters` from its creation on, so
        // creating it before reading the flag loses no wake-up.
        let notified = self.notify.notified();
        if self.is_cancelled() {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiting_attempt_wakes_when_cancelled() {
        let c = Arc::new(Cancel::default());
        assert!(!c.is_cancelled());
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.cancelled().await }
        });
        tokio::task::yield_now().await;
        c.cancel();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert!(c.is_cancelled());
        // Already cancelled: resolves at once.
        tokio::time::timeout(Duration::from_millis(10), c.cancelled())
            .await
            .expect("at once");
    }
}
