//! Opt-in reuse of a job type's instances (`[[job]] reuse_instance = N`).
//!
//! A fresh instance per attempt is the default and costs little for a
//! small plugin (a few µs), but an interpreter (componentize-py,
//! componentize-js) pays hundreds of µs per instance to fault in and reset
//! the pages of its heap. A job type that opts in keeps an instance after a
//! clean success and gives it to the next attempt of the same job type, up
//! to N attempts in all.
//!
//! What it keeps and what it does not:
//! - An instance is kept only after a success; a trap, a timeout, a cancel
//!   or any failure discards it, as does an attempt that leaves outbound
//!   HTTP resources (a response, a body) open in its table.
//! - It is kept per job type (the [`Reuse`] lives in the job type's
//!   [`Sandbox`](super::Sandbox)) and checked against the plugin it came
//!   from, so it never serves another job type or another plugin version.
//! - The host state that belongs to an attempt starts over each time
//!   (`HostState::renew`): job identity, deadline, the checkpoint saved,
//!   HTTP hooks, the memory limiter's verdict, fuel and the cancel signal.
//!   The checkpoint and payload reach the plugin as arguments of `handle`.
//! - What persists is the guest's own state: its globals, its heap, what
//!   its interpreter cached. A plugin that keeps something of a job in a
//!   global lets the next job of the same type see it.

use std::sync::{Arc, Mutex, PoisonError};

use wasmtime::Store;

use super::HostState;
use super::worlds::Instance;

/// A live instance between two attempts, with its store.
pub(super) struct Warm {
    /// The store, holding the instance's memories and host state.
    pub(super) store: Store<HostState>,
    /// The instance's exports.
    pub(super) instance: Instance,
    /// Attempts it has served so far.
    pub(super) served: u32,
    /// The plugin it was made from (its digest, by pointer): a reload
    /// that changes the plugin never gets an instance of the old one.
    pub(super) plugin: Arc<str>,
}

/// The kept instances of one job type.
pub struct Reuse {
    /// Most attempts one instance serves.
    limit: u32,
    /// Instances waiting for the next attempt; at most one per attempt in
    /// flight, so never more than the queue's concurrency.
    idle: Mutex<Vec<Warm>>,
}

impl std::fmt::Debug for Reuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reuse")
            .field("limit", &self.limit)
            .field("idle", &self.idle().len())
            .finish()
    }
}

impl Reuse {
    /// Reuse for up to `limit` attempts per instance; `None` for a limit
    /// of 0 or 1, which means a fresh instance for every attempt.
    #[must_use]
    pub fn new(limit: u32) -> Option<Arc<Reuse>> {
        (limit > 1).then(|| {
            Arc::new(Reuse {
                limit,
                idle: Mutex::new(Vec::new()),
            })
        })
    }

    /// How many instances are waiting for an attempt.
    #[must_use]
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        // The lock only guards pushes and pops, which cannot leave the
        // list half changed; a panic elsewhere while it was held is moot.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An instance of `plugin` to run the next attempt in, if one is kept.
    pub(super) fn take(&self, plugin: &Arc<str>) -> Option<Warm> {
        let mut idle = self.idle();
        while let Some(warm) = idle.pop() {
            if Arc::ptr_eq(&warm.plugin, plugin) {
                return Some(warm);
            }
        }
        None
    }

    /// Keeps `warm` for a later attempt if it may serve another one;
    /// drops it (returning its slot to the pool) otherwise.
    pub(super) fn keep(&self, mut warm: Warm) {
        warm.served += 1;
        if warm.served < self.limit {
            self.idle().push(warm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_of_one_or_less_means_no_reuse() {
        assert!(Reuse::new(0).is_none());
        assert!(Reuse::new(1).is_none());
        let reuse = Reuse::new(2).expect("2 attempts per instance is reuse");
        assert_eq!(reuse.limit, 2);
        assert_eq!(reuse.idle_count(), 0);
    }
}
