//! The `ward:plugin/jobs@0.2.0` imports: child jobs an attempt collects (to
//! be enqueued only if it succeeds) and the progress it reports, plus the
//! 0.2.0 `host` imports, which are 0.1.0's under a new name.
//!
//! Children are bounded per attempt ([`MAX_CHILDREN`],
//! [`MAX_CHILDREN_BYTES`]); the host refuses one past a bound with an error
//! the plugin sees, and keeps the ones before it. Progress goes to a
//! [`ProgressSink`] (the worker's writer, which throttles the Redis writes);
//! a plugin of the 0.1.0 world never has one.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::HostState;
use super::bindings::ward::plugin::host as host1;
use super::worlds::v2::ward::plugin::{host, jobs, types};
use crate::cut::truncate;
use crate::follow_on::FollowOn;

/// The most children one attempt may enqueue.
pub const MAX_CHILDREN: usize = 1000;
/// The most payload bytes one attempt's children may hold in all.
pub const MAX_CHILDREN_BYTES: u64 = 8 << 20;
/// The longest idempotency key a child may have, bytes.
pub const MAX_CHILD_KEY: usize = 256;
/// The longest progress message kept, bytes.
pub const MAX_PROGRESS_MESSAGE: usize = 200;

/// Where an attempt's progress reports go. Implemented by the worker, which
/// writes them to the job's record; a report must not wait on Redis.
pub trait ProgressSink: Send + Sync + std::fmt::Debug {
    /// Job `job_id`, in its attempt `attempt`, is `percent` (0–100) done;
    /// `message` says how.
    fn report(&self, job_id: &str, attempt: u32, percent: u8, message: String);
}

/// What a 0.2.0 attempt may hand the host, and what it handed so far.
#[derive(Default)]
pub(super) struct Fanout {
    /// The children collected, in the order the plugin enqueued them.
    pub(super) children: Vec<FollowOn>,
    /// Their payload bytes, in all.
    bytes: u64,
    /// The parent's batch, which a child may join.
    pub(super) batch: Option<String>,
    /// The job types of the parent's queue: the only ones a child may have
    /// (a child runs in its parent's queue). `None` or empty: any
    /// well-formed name. An `Option` so that the state of a 0.1.0 attempt,
    /// which never enqueues, costs no allocation.
    pub(super) job_types: Option<Arc<BTreeSet<String>>>,
    /// Where progress goes.
    pub(super) progress: Option<Arc<dyn ProgressSink>>,
}

impl Fanout {
    /// What a 0.2.0 attempt of a job in `batch` may hand back, under
    /// `sandbox`'s rules, its progress going to `progress`.
    pub(super) fn new(
        sandbox: &super::Sandbox,
        batch: Option<String>,
        progress: Option<Arc<dyn ProgressSink>>,
    ) -> Fanout {
        Fanout {
            batch,
            job_types: Some(sandbox.job_types.clone()),
            progress,
            ..Fanout::default()
        }
    }

    /// Adds `child` to the list, or says why not.
    fn enqueue(&mut self, child: jobs::Child) -> Result<(), jobs::EnqueueError> {
        if self.children.len() >= MAX_CHILDREN {
            return Err(jobs::EnqueueError::TooMany(MAX_CHILDREN as u32));
        }
        let size = child.payload.len() as u64;
        if self.bytes.saturating_add(size) > MAX_CHILDREN_BYTES {
            return Err(jobs::EnqueueError::TooLarge(MAX_CHILDREN_BYTES));
        }
        if let Some(why) = crate::config::check_name(&child.job) {
            return Err(jobs::EnqueueError::Invalid(format!(
                "the job type `{}` {why}",
                child.job.escape_debug()
            )));
        }
        if let Some(types) = &self.job_types
            && !types.is_empty()
            && !types.contains(&child.job)
        {
            return Err(jobs::EnqueueError::Invalid(format!(
                "no job type `{}` in this job's queue; a child runs in its parent's queue",
                child.job
            )));
        }
        if let Some(key) = &child.idempotency_key
            && (key.is_empty() || key.len() > MAX_CHILD_KEY)
        {
            return Err(jobs::EnqueueError::Invalid(format!(
                "an idempotency key must be 1 to {MAX_CHILD_KEY} bytes long, not {}",
                key.len()
            )));
        }
        self.bytes += size;
        self.children.push(FollowOn {
            job_type: child.job,
            payload: child.payload,
            key: child.idempotency_key,
            batch: if child.join_batch {
                self.batch.clone()
            } else {
                None
            },
        });
        Ok(())
    }
}

/// `children` with every granted secret's value redacted from their
/// payloads: they are stored in Redis like a result.
pub(super) fn redacted(children: Vec<FollowOn>, sandbox: &super::Sandbox) -> Vec<FollowOn> {
    if sandbox.secrets.is_empty() {
        return children;
    }
    children
        .into_iter()
        .map(|mut c| {
            c.payload = super::redact_bytes(c.payload, &sandbox.secrets);
            c
        })
        .collect()
}

impl jobs::Host for HostState {
    fn enqueue(&mut self, child: jobs::Child) -> Result<(), jobs::EnqueueError> {
        let result = self.fanout.enqueue(child);
        if let Err(e) = &result {
            let span = self.span();
            let _entered = span.enter();
            tracing::debug!(job_id = %self.ident.job_id, error = ?e, "child refused");
        }
        result
    }

    fn progress(&mut self, percent: u8, message: String) {
        let Some(sink) = &self.fanout.progress else {
            return;
        };
        let mut message = super::redact(&message, &self.secrets);
        truncate(&mut message, MAX_PROGRESS_MESSAGE);
        sink.report(
            &self.ident.job_id,
            self.ident.attempt,
            percent.min(100),
            message,
        );
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => host1::Level::Trace,
            host::Level::Debug => host1::Level::Debug,
            host::Level::Info => host1::Level::Info,
            host::Level::Warn => host1::Level::Warn,
            host::Level::Error => host1::Level::Error,
        };
        host1::Host::log(self, level, message);
    }

    fn save_checkpoint(&mut self, data: Vec<u8>) {
        host1::Host::save_checkpoint(self, data);
    }

    fn secret(&mut self, name: String) -> Option<String> {
        host1::Host::secret(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(job: &str, payload: usize) -> jobs::Child {
        jobs::Child {
            job: job.into(),
            payload: vec![7; payload],
            idempotency_key: None,
            join_batch: true,
        }
    }

    #[test]
    fn children_past_a_bound_are_refused_and_the_ones_before_kept() {
        let mut f = Fanout::default();
        for _ in 0..MAX_CHILDREN {
            f.enqueue(child("next", 1)).unwrap();
        }
        assert_eq!(
            f.enqueue(child("next", 1)),
            Err(jobs::EnqueueError::TooMany(MAX_CHILDREN as u32))
        );
        assert_eq!(f.children.len(), MAX_CHILDREN);

        let mut f = Fanout::default();
        let half = usize::try_from(MAX_CHILDREN_BYTES / 2).unwrap();
        f.enqueue(child("next", half)).unwrap();
        f.enqueue(child("next", half)).unwrap();
        assert_eq!(
            f.enqueue(child("next", 1)),
            Err(jobs::EnqueueError::TooLarge(MAX_CHILDREN_BYTES))
        );
        assert_eq!(f.children.len(), 2);
    }

    #[test]
    fn a_child_must_name_a_job_type_of_its_queue_and_a_sane_key() {
        let mut f = Fanout {
            job_types: Some(Arc::new(["next".to_string()].into())),
            batch: Some("b1".into()),
            ..Fanout::default()
        };
        let Err(jobs::EnqueueError::Invalid(why)) = f.enqueue(child("other", 1)) else {
            panic!("a job type of another queue is refused");
        };
        assert!(why.contains("no job type `other`"), "{why}");
        assert!(matches!(
            f.enqueue(child("", 1)),
            Err(jobs::EnqueueError::Invalid(_))
        ));
        let keyed = jobs::Child {
            idempotency_key: Some("k".repeat(MAX_CHILD_KEY + 1)),
            ..child("next", 1)
        };
        assert!(matches!(
            f.enqueue(keyed),
            Err(jobs::EnqueueError::Invalid(_))
        ));
        f.enqueue(child("next", 3)).unwrap();
        f.enqueue(jobs::Child {
            join_batch: false,
            idempotency_key: Some("row-1".into()),
            ..child("next", 0)
        })
        .unwrap();
        assert_eq!(
            f.children,
            [
                FollowOn {
                    job_type: "next".into(),
                    payload: vec![7; 3],
                    key: None,
                    batch: Some("b1".into()),
                },
                FollowOn {
                    job_type: "next".into(),
                    payload: Vec::new(),
                    key: Some("row-1".into()),
                    batch: None,
                },
            ]
        );
    }
}
