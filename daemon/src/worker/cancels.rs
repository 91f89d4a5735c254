//! The cancel requests one queue's daemon knows of, and the attempts it
//! runs that they may concern: the meeting point of the control service
//! (which learns of requests, by pub/sub or by polling `ward:{Q}:cancels`)
//! and the reader (which starts attempts and triages deliveries).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use foldhash::fast::RandomState;

use crate::runtime::Cancel;

/// One queue's cancel requests and running attempts, by job id.
#[derive(Debug, Default)]
pub(crate) struct Cancels {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The cancel signal of each attempt running here that has waited (an
    /// insert and a remove for each: see `foldhash` in Cargo.toml).
    running: HashMap<String, Arc<Cancel>, RandomState>,
    /// Jobs with a cancel request (as last seen in Redis, plus those
    /// announced since).
    requested: HashSet<String, RandomState>,
}

impl Cancels {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map holds no invariant a panicking holder could break.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether job `id` has a cancel request: such a delivery is not run.
    pub(crate) fn is_requested(&self, id: &str) -> bool {
        let inner = self.inner();
        !inner.requested.is_empty() && inner.requested.contains(id)
    }

    /// The cancel signal of an attempt of job `id` about to start: already
    /// set when a request came in since the delivery was triaged. The
    /// attempt is not yet listed where requests look for it: most attempts
    /// end on their first poll, and only one that waits is listed
    /// ([`Cancels::list`]), which spares every other an insert and a remove.
    pub(crate) fn signal(&self, id: &str) -> Arc<Cancel> {
        let cancel = Arc::new(Cancel::default());
        if self.is_requested(id) {
            cancel.cancel();
        }
        cancel
    }

    /// The attempt of job `id` with signal `cancel` waits: a request from
    /// now on interrupts it, and one that came in since its signal was
    /// made sets the signal now.
    pub(crate) fn list(&self, id: &str, cancel: &Arc<Cancel>) {
        let mut inner = self.inner();
        if inner.requested.contains(id) {
            cancel.cancel();
        }
        inner.running.insert(id.to_string(), cancel.clone());
    }

    /// The attempt of job `id` ended.
    pub(crate) fn finish(&self, id: &str) {
        self.inner().running.remove(id);
    }

    /// The attempt whose signal is `cancel` ended without saying which job
    /// it ran (it panicked): found by its signal, a scan of the attempts
    /// running here.
    pub(crate) fn finish_signal(&self, cancel: &Arc<Cancel>) {
        self.inner().running.retain(|_, c| !Arc::ptr_eq(c, cancel));
    }

    /// Job `id` was cancelled: its attempt here, if any, is interrupted.
    /// Returns whether one was.
    pub(crate) fn request(&self, id: &str) -> bool {
        let mut inner = self.inner();
        inner.requested.insert(id.to_string());
        inner.running.get(id).map(|c| c.cancel()).is_some()
    }

    /// The requests as Redis now holds them (a poll): interrupts the
    /// attempts here they concern; returns how many it interrupted that
    /// were not already.
    pub(crate) fn replace(&self, ids: Vec<String>) -> usize {
        let mut inner = self.inner();
        let mut interrupted = 0;
        for id in &ids {
            if let Some(c) = inner.running.get(id)
                && !c.is_cancelled()
            {
                c.cancel();
                interrupted += 1;
            }
        }
        inner.requested = ids.into_iter().collect();
        interrupted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attempt of `id` that has started and waits.
    fn waiting(c: &Cancels, id: &str) -> Arc<Cancel> {
        let signal = c.signal(id);
        c.list(id, &signal);
        signal
    }

    #[test]
    fn a_request_interrupts_only_its_own_attempt() {
        let c = Cancels::default();
        let a = waiting(&c, "a");
        let b = waiting(&c, "b");
        assert!(c.request("a"));
        assert!(a.is_cancelled());
        assert!(!b.is_cancelled());
        assert!(c.is_requested("a") && !c.is_requested("b"));
        // A request for a job not running here only marks it.
        assert!(!c.request("z"));
        assert!(waiting(&c, "z").is_cancelled());
    }

    #[test]
    fn a_poll_replaces_the_requests_and_catches_missed_ones() {
        let c = Cancels::default();
        c.request("old");
        let b = waiting(&c, "b");
        assert_eq!(c.replace(vec!["b".into()]), 1);
        assert!(b.is_cancelled());
        assert!(!c.is_requested("old"));
        c.finish("b");
        assert_eq!(c.replace(vec!["b".into()]), 0);
    }

    #[test]
    fn an_attempt_that_panicked_is_found_by_its_signal() {
        let c = Cancels::default();
        let a = waiting(&c, "a");
        let b = waiting(&c, "b");
        c.finish_signal(&a);
        assert!(!c.request("a"), "a's attempt is gone");
        assert!(c.request("b"), "b's is still running");
        assert!(b.is_cancelled());
    }

    #[test]
    fn a_request_before_an_attempt_waits_sets_its_signal_as_it_is_listed() {
        let c = Cancels::default();
        let signal = c.signal("a");
        assert!(!signal.is_cancelled());
        assert!(!c.request("a"), "not listed yet: nothing to interrupt");
        assert!(!signal.is_cancelled());
        c.list("a", &signal);
        assert!(signal.is_cancelled(), "the request is seen as it is listed");
        // A request before the attempt starts sets its signal at once.
        assert!(c.signal("a").is_cancelled());
    }
}
