//! Jobs a success brings with it: enqueued in the same atomic step that
//! records the success, never for an attempt that failed.

/// A job to enqueue when its parent's success is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowOn {
    /// Its job type.
    pub job_type: String,
    /// Its payload bytes.
    pub payload: Vec<u8>,
    /// Its idempotency key, if it has its own.
    pub key: Option<String>,
    /// The batch it joins (the parent's), if any.
    pub batch: Option<String>,
}
