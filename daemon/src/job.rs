//! The words of the domain as types: job states, outcome classes, failures,
//! and a stream entry read as a job ([`JobEntry`], or [`Malformed`]).
//!
//! These are plain values shared by the runtime (which produces an
//! [`Outcome`]), the policy (which turns it into a decision) and the queue
//! (which records it). Their string forms are part of Ward's public face:
//! they appear in Redis records, dead-letter entries and `ward job show`.

use std::fmt;
use std::str::FromStr;

/// How an attempt failed, from the policy's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The plugin says: try again soon.
    Transient,
    /// The plugin says: try again later (the upstream needs time).
    Recoverable,
    /// The plugin says: this will never work as it is.
    Permanent,
    /// The host stopped the attempt at its deadline.
    Timeout,
    /// The plugin trapped (panic, unreachable, out of memory, stack overflow).
    Crash,
    /// An operator cancelled the job while the attempt ran; the host
    /// interrupted it. Final: never retried.
    Cancelled,
}

impl FailureClass {
    /// The lower-case name used in records and logs.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Transient => "transient",
            FailureClass::Recoverable => "recoverable",
            FailureClass::Permanent => "permanent",
            FailureClass::Timeout => "timeout",
            FailureClass::Crash => "crash",
            FailureClass::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed attempt, as reported by the plugin or the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Which kind of failure.
    pub class: FailureClass,
    /// Human-readable explanation.
    pub message: String,
    /// Short machine-readable code (`http-503`, `deadline`, `stack`).
    pub code: Option<String>,
    /// The dependency that failed, if the plugin named one.
    pub upstream: Option<String>,
    /// The upstream's own retry hint, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The plugin returned `ok` with these result bytes.
    Success(Vec<u8>),
    /// The plugin returned an error, or the host ended the attempt.
    Failure(Failure),
}

impl Outcome {
    /// A host-made failure with no code, upstream or retry hint yet.
    #[must_use]
    pub fn failure(class: FailureClass, message: impl Into<String>) -> Outcome {
        Outcome::Failure(Failure {
            class,
            message: message.into(),
            code: None,
            upstream: None,
            retry_after_ms: None,
        })
    }

    /// Sets the code of a failure; a success is returned unchanged.
    #[must_use]
    pub fn with_code(mut self, code: &str) -> Outcome {
        if let Outcome::Failure(f) = &mut self {
            f.code = Some(code.to_string());
        }
        self
    }

    /// Sets the upstream of a failure; a success is returned unchanged.
    #[must_use]
    pub fn with_upstream(mut self, upstream: &str) -> Outcome {
        if let Outcome::Failure(f) = &mut self {
            f.upstream = Some(upstream.to_string());
        }
        self
    }
}

/// Where a job is in its life. The string forms are stored in the job record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobState {
    /// In the stream, not yet delivered.
    Queued,
    /// Delivered to a worker; an attempt is under way.
    Running,
    /// An attempt failed and another one is scheduled, or the job is held
    /// back behind an open circuit breaker (no attempt spent) until then.
    Retrying,
    /// An attempt succeeded. Final.
    Succeeded,
    /// Given up and moved to the dead-letter stream. Final until requeued.
    Dead,
    /// Marked "won't retry" by an operator. Final.
    Discarded,
    /// Cancelled by an operator: it never runs (again). Final.
    Cancelled,
    /// Held back, no attempt spent, while its job type or its queue is
    /// paused (`ward pause`); `ward resume` puts it back in the stream.
    Paused,
}

impl JobState {
    /// The lower-case name used in records and output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
            JobState::Paused => "paused",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "retrying" => JobState::Retrying,
            "succeeded" => JobState::Succeeded,
            "dead" => JobState::Dead,
            "discarded" => JobState::Discarded,
            "cancelled" => JobState::Cancelled,
            "paused" => JobState::Paused,
            other => return Err(format!("unknown job state `{other}`")),
        })
    }
}

/// Why a job was given up. The string forms appear in dead-letter entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadReason {
    /// The plugin reported a permanent failure.
    Permanent,
    /// The plugin crashed and crashes are not retried.
    Crash,
    /// The job used up its attempts.
    AttemptsExhausted,
    /// The next attempt would start past the job's `max_elapsed` deadline.
    ElapsedExhausted,
    /// The job's workers vanished mid-attempt too often (a poison pill).
    LeaseExpiries,
    /// No `[[job]]` in this queue has the entry's job type.
    NoPlugin,
    /// The stream entry could not be read as a job (e.g. no `job` field).
    Malformed,
    /// Redis refused to record the attempt's outcome (a key of the wrong
    /// type, say): the APPLY script dead-lettered the job instead, with
    /// Redis' words (see `store/lua/apply.lua`).
    Unrecordable,
    /// The job's idempotency key cannot be claimed: the key holds another
    /// type than Ward writes. The job never ran.
    KeyUnusable,
}

impl DeadReason {
    /// The text stored in the dead-letter entry's `reason` field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Permanent => "permanent",
            DeadReason::Crash => "crash",
            DeadReason::AttemptsExhausted => "budget exhausted: attempts",
            DeadReason::ElapsedExhausted => "budget exhausted: elapsed",
            DeadReason::LeaseExpiries => "budget exhausted: lease expiries",
            DeadReason::NoPlugin => "no plugin for job type",
            DeadReason::Malformed => "malformed entry",
            DeadReason::Unrecordable => "unrecordable",
            DeadReason::KeyUnusable => "idempotency key unusable",
        }
    }
}

impl fmt::Display for DeadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// Its idempotency key was set to this job as its entry was added
    /// (`ward_enqueue`, a follow-on): a first delivery that needs no claim.
    pub key_claimed: bool,
    /// Other fields (correlation ids such as `user_id`), carried along.
    pub extra: Vec<(String, Vec<u8>)>,
}

impl JobEntry {
    /// Whether this is the first delivery of the entry its producer wrote
    /// (a plain `XADD`, `ward enqueue`, `ward_enqueue` without a delay, a
    /// schedule's fire): its job id is its entry id and it is attempt 1.
    /// Entries Ward writes (a retry, a deferral, a promoted delayed job, a
    /// requeue) carry the job's id under their own entry id, so they are not.
    #[must_use]
    pub fn is_first_delivery(&self) -> bool {
        self.attempt == 1 && self.id == self.entry_id
    }

    /// The batch the job is a member of: its `batch` correlation field,
    /// when it names one.
    #[must_use]
    pub fn batch(&self) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == "batch")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|b| !b.is_empty())
    }
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
    /// Its idempotency key, when the entry is a producer's (not one Ward
    /// wrote for a job that already ran): a lease may have claimed the key
    /// for it, and since it never runs it must give the key back
    /// ([`crate::store::Queue::release_keys`]).
    pub unclaimed_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_states_round_trip_through_their_names() {
        for s in [
            JobState::Queued,
            JobState::Running,
            JobState::Retrying,
            JobState::Succeeded,
            JobState::Dead,
            JobState::Discarded,
            JobState::Cancelled,
            JobState::Paused,
        ] {
            assert_eq!(s.as_str().parse::<JobState>(), Ok(s));
        }
        assert!("lost".parse::<JobState>().is_err());
    }
}
