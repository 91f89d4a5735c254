//! What the end of an attempt asks for.

use std::time::Duration;

use crate::job::{DeadReason, Outcome};

/// The result of one attempt, ready to be applied to Redis.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The delivery being acknowledged.
    pub entry_id: String,
    /// The job's id.
    pub job_id: String,
    /// Job type (empty for a malformed entry).
    pub job: String,
    /// The attempt number that just ended (0 when nothing ran).
    pub attempt: u32,
    /// Start of the attempt, Unix ms.
    pub started_ms: u64,
    /// Start of the job's first attempt, Unix ms (0 when nothing ran).
    pub first_at_ms: u64,
    /// For a retry: how long to wait before the next attempt.
    pub delay_ms: u64,
    /// End of the attempt, Unix ms.
    pub finished_ms: u64,
    /// The payload, kept for retries and dead letters.
    pub payload: Vec<u8>,
    /// For a dead letter: the payload as its entry in `ward:{Q}:dead` shows
    /// it (secrets redacted, a marker for a payload too large; see
    /// [`crate::redact::dead_payload`]). `None`: the payload as it is. The
    /// job record always keeps the original `payload`.
    pub dead_payload: Option<Vec<u8>>,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// What to do next.
    pub action: Action,
    /// sha256 of the plugin that ran (empty when none did).
    pub plugin_digest: std::sync::Arc<str>,
    /// Checkpoint to hand to the next attempt.
    pub checkpoint: Option<Vec<u8>>,
    /// Correlation fields carried from the entry.
    pub extra: Vec<(String, Vec<u8>)>,
    /// The job's idempotency key, if it has one.
    pub idempotency_key: Option<String>,
    /// How long the key's completion is remembered.
    pub idempotency_ttl: Duration,
    /// Lost leases so far, this attempt's included if it was lost.
    pub lease_expiries: u32,
    /// For [`Action::Duplicate`]: the job that owns the idempotency key.
    pub duplicate_of: Option<String>,
}

impl Completion {
    /// A first delivery on its first attempt: no record exists yet, so a
    /// success needs none of the tidying of a retried job.
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        self.attempt == 1 && self.job_id == self.entry_id
    }
}

/// The state change a [`Completion`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Mark succeeded.
    Ack,
    /// Re-enqueue as the next attempt.
    Retry,
    /// Move to the dead-letter stream.
    Dead(DeadReason),
    /// Nothing ran: the job's idempotency key is already owned by the given
    /// job id (a second enqueue), or completed by this very job (a redelivery).
    Duplicate,
}
