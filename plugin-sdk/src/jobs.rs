//! Child jobs and progress (`ward:plugin/jobs`, new in 0.2.0).
//!
//! A plugin can fan out: each [`enqueue`] adds a child to the attempt's
//! list, and the host enqueues the whole list only if the attempt succeeds,
//! in the same atomic step that records the success. A failed attempt's
//! children are dropped; its retry enqueues them again, and a parent that
//! runs again after a success never enqueues them twice.
//!
//! ```no_run
//! use ward_plugin_sdk::{Failure, Job, jobs};
//!
//! fn handle(job: Job) -> Result<Vec<u8>, Failure> {
//!     let rows: Vec<String> = job.json()?;
//!     for (i, row) in rows.iter().enumerate() {
//!         jobs::enqueue(jobs::Child::new("import-row", row.as_bytes()).join_batch())?;
//!         jobs::progress((i * 100 / rows.len()) as u8, &format!("{i} of {} rows", rows.len()));
//!     }
//!     Ok(Vec::new())
//! }
//! # ward_plugin_sdk::plugin!(handle);
//! # fn main() {}
//! ```

use std::fmt;

use crate::Failure;
use crate::bindings::ward::plugin::jobs as wit;

/// A job to enqueue if this attempt succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Child {
    job: String,
    payload: Vec<u8>,
    key: Option<String>,
    join_batch: bool,
}

impl Child {
    /// A child of job type `job` (one configured in the parent's queue,
    /// where it runs) with `payload`.
    pub fn new(job: impl Into<String>, payload: impl Into<Vec<u8>>) -> Child {
        Child {
            job: job.into(),
            payload: payload.into(),
            key: None,
            join_batch: false,
        }
    }

    /// Gives the child an idempotency key of its own (1 to 256 bytes). Without
    /// one, the host derives one from the parent's id and the child's place.
    pub fn key(mut self, key: impl Into<String>) -> Child {
        self.key = Some(key.into());
        self
    }

    /// Makes the child a member of the parent's batch, when the parent has one.
    pub fn join_batch(mut self) -> Child {
        self.join_batch = true;
        self
    }
}

/// Why the host refused a child; the children before it are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EnqueueError {
    /// The attempt holds this many children already, the most it may.
    TooMany(u32),
    /// The children's payloads would pass this many bytes in all.
    TooLarge(u64),
    /// The job type or key is not acceptable; the message says why.
    Invalid(String),
}

impl fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnqueueError::TooMany(n) => {
                write!(f, "an attempt may enqueue at most {n} child jobs")
            }
            EnqueueError::TooLarge(n) => {
                write!(
                    f,
                    "an attempt's child jobs may hold at most {n} payload bytes in all"
                )
            }
            EnqueueError::Invalid(why) => write!(f, "child job refused: {why}"),
        }
    }
}

impl std::error::Error for EnqueueError {}

/// A refused child fails the attempt permanently (code `child-refused`):
/// running it again would be refused again. Map it yourself for another
/// choice.
impl From<EnqueueError> for Failure {
    fn from(e: EnqueueError) -> Failure {
        Failure::permanent(e.to_string()).code("child-refused")
    }
}

impl From<wit::EnqueueError> for EnqueueError {
    fn from(e: wit::EnqueueError) -> EnqueueError {
        match e {
            wit::EnqueueError::TooMany(n) => EnqueueError::TooMany(n),
            wit::EnqueueError::TooLarge(n) => EnqueueError::TooLarge(n),
            wit::EnqueueError::Invalid(why) => EnqueueError::Invalid(why),
        }
    }
}

/// Adds `child` to this attempt's children, enqueued only if it succeeds.
///
/// # Errors
/// [`EnqueueError`] when the host refuses it (too many, too large, an
/// unknown job type or a bad key); the attempt goes on either way.
pub fn enqueue(child: Child) -> Result<(), EnqueueError> {
    wit::enqueue(&wit::Child {
        job: child.job,
        payload: child.payload,
        idempotency_key: child.key,
        join_batch: child.join_batch,
    })
    .map_err(EnqueueError::from)
}

/// Reports how far the attempt is: `percent` (0 to 100; more counts as 100)
/// and a short message (cut to 200 bytes). `ward job show` and the admin API
/// show the last one; the host writes at most about four a second, so
/// calling it in a loop is fine.
pub fn progress(percent: u8, message: &str) {
    wit::progress(percent, message);
}
