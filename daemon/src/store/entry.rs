//! What a stream entry carries and what the end of an attempt asks for: the
//! domain side of the store's hand-offs (to move out of `store` later).

use std::time::Duration;

use crate::job::{DeadReason, Outcome};

/// A raw stream entry as delivered by `XREADGROUP`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id.
    pub entry_id: String,
    /// Field/value pairs, as bytes.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A delivery read as a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    /// The stream entry this attempt was delivered from.
    pub entry_id: String,
    /// The job's id: the `id` field, or the entry id for a first enqueue.
    pub id: String,
    /// Job type.
    pub job: String,
    /// Payload bytes (empty when the entry has no `payload` field).
    pub payload: Vec<u8>,
    /// 1-based attempt number of this delivery.
    pub attempt: u32,
    /// The idempotency key, from an `idempotency_key` field.
    pub idempotency_key: Option<String>,
    /// Checkpoint carried from the previous attempt.
    pub checkpoint: Option<Vec<u8>>,
    /// When the first attempt started (Unix ms); absent on a first delivery.
    pub first_at: Option<u64>,
    /// The delay chosen after the previous failure, in ms.
    pub last_delay_ms: Option<u64>,
    /// How many times an attempt of this job was lost with its worker.
    pub lease_expiries: u32,
    /// Other fields (correlation ids such as `user_id`), carried along.
    pub extra: Vec<(String, Vec<u8>)>,
}

/// Why an entry could not be read as a job, with what it did carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// The stream entry.
    pub entry_id: String,
    /// What is wrong with it.
    pub why: String,
    /// The payload field, if there was one.
    pub payload: Vec<u8>,
    /// Every other field whose name is text, so nothing it carried is lost.
    pub extra: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    /// Reads the entry as a job (see [`super::fields`] for which fields
    /// are whose).
    ///
    /// # Errors
    /// [`Malformed`] when the `job` field is missing or not UTF-8, a field
    /// uses the reserved prefix `ward:` on a producer's entry, or Ward's
    /// `ward:attempt` field is not a positive number.
    pub fn parse(self) -> Result<JobEntry, Malformed> {
        super::fields::parse(self)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&[u8], &[u8])]) -> Delivery {
        Delivery {
            entry_id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_plain_xadd_entry_is_a_first_attempt_with_the_entry_id_as_job_id() {
        let j = delivery(&[
            (b"job", b"send"),
            (b"payload", b"\xff\x00"),
            (b"user_id", b"7"),
        ])
        .parse()
        .unwrap();
        assert_eq!(j.id, "1-0");
        assert_eq!(j.attempt, 1);
        assert_eq!(j.payload, b"\xff\x00");
        assert_eq!(j.extra, vec![("user_id".to_string(), b"7".to_vec())]);
    }

    #[test]
    fn a_retry_entry_keeps_its_job_id_and_attempt() {
        let j = delivery(&[
            (b"id", b"5-1"),
            (b"job", b"send"),
            (b"attempt", b"3"),
            (b"checkpoint", b"c"),
        ])
        .parse()
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("5-1", 3));
        assert_eq!(j.checkpoint.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn entries_without_a_job_are_malformed_and_keep_their_fields() {
        let m = delivery(&[(b"payload", b"p"), (b"order_id", b"9")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("no `job` field"), "{}", m.why);
        assert_eq!(m.payload, b"p");
        assert_eq!(m.extra, vec![("order_id".to_string(), b"9".to_vec())]);
    }

    #[test]
    fn a_bad_attempt_number_is_malformed() {
        let m = delivery(&[
            (b"job", b"a"),
            (b"ward:id", b"1-0"),
            (b"ward:attempt", b"zero"),
        ])
        .parse()
        .unwrap_err();
        assert!(m.why.contains("`ward:attempt`"), "{}", m.why);
    }
}
