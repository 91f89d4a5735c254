//! What follows an attempt, as one type: the [`Transition`] a job makes
//! (decided by [`crate::policy`], or known without running anything), and
//! the [`Completion`] that carries it, with the entry and the outcome, to be
//! recorded. The store encodes a completion for Redis; nothing here knows
//! Redis.

use std::sync::Arc;
use std::time::Duration;

pub use crate::follow_on::FollowOn;
use crate::job::{DeadReason, FailureClass, JobEntry, Outcome};

/// Largest result kept with a job's record when its job type does not say
/// (`[[job]] result_max_bytes`).
pub const DEFAULT_RESULT_MAX_BYTES: usize = 64 << 10;

/// How a success's result is kept with the job's record (`[[job]]
/// result_ttl`, `result_max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultPolicy {
    /// How long the record of a succeeded job, with its result, is kept;
    /// `None`: as long as the queue keeps succeeded records
    /// (`succeeded_ttl`).
    pub ttl: Option<Duration>,
    /// Largest result kept; a larger one is not kept, and the record says
    /// so (`result_note`). 0 keeps none.
    pub max_bytes: usize,
}

impl Default for ResultPolicy {
    fn default() -> Self {
        ResultPolicy {
            ttl: None,
            max_bytes: DEFAULT_RESULT_MAX_BYTES,
        }
    }
}

/// The failure code a job held back by an open circuit breaker is recorded
/// with (nothing ran; see [`Deferral::recorded`]).
pub const BREAKER_OPEN_CODE: &str = "breaker-open";
/// The failure code of a job held back because its job type or its queue
/// is paused (nothing ran; see [`Deferral::recorded`]).
pub const PAUSED_CODE: &str = "paused";
/// The failure code of a job held back because its batch is paused
/// (quarantined, `ward batch pause`; nothing ran).
pub const BATCH_PAUSED_CODE: &str = "batch-paused";
/// The failure code of a job held back because an upstream it calls has no
/// token left, or asked to wait (Retry-After) (nothing ran).
pub const RATE_LIMITED_CODE: &str = "rate-limited";
/// The failure code of a job held back because every slot of an upstream
/// it calls (`[[upstream]] concurrency`) is in use (nothing ran).
pub const UPSTREAM_BUSY_CODE: &str = "upstream-busy";

/// Where a job goes after an attempt, or after a delivery that needed none.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Transition {
    /// It succeeded: acknowledge and record.
    Succeed,
    /// Run it again, as the next attempt, after `delay`.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
    },
    /// Not run: back to the delayed set for `delay`, no attempt spent.
    Defer {
        /// How long to hold it back.
        delay: Duration,
        /// Why it was held back.
        why: Deferral,
    },
    /// Give up: move it to the dead-letter stream.
    DeadLetter(DeadReason),
    /// Cancelled by an operator: recorded as `cancelled`, final (never
    /// retried, never dead-lettered). `ran`: whether an attempt ran and was
    /// interrupted (it counts), or the delivery was cancelled before it ran.
    Cancel {
        /// Whether an attempt ran.
        ran: bool,
    },
    /// Not run: its idempotency key is already owned by job `of` (a second
    /// enqueue), or, with `None`, completed by this very job (a redelivery).
    Duplicate {
        /// The job that owns the key, when it is another one.
        of: Option<String>,
    },
}

impl Transition {
    /// Whether an attempt ran (and so counts): not for a deferral, a
    /// duplicate, a malformed entry or a job type without a plugin.
    #[must_use]
    pub fn ran(&self) -> bool {
        !matches!(
            self,
            Transition::Defer { .. }
                | Transition::Duplicate { .. }
                | Transition::DeadLetter(
                    DeadReason::Malformed | DeadReason::NoPlugin | DeadReason::KeyUnusable
                )
                | Transition::Cancel { ran: false }
        )
    }

    /// How long until the job runs again, for a retry or a deferral.
    #[must_use]
    pub fn delay(&self) -> Option<Duration> {
        match self {
            Transition::Retry { delay } | Transition::Defer { delay, .. } => Some(*delay),
            _ => None,
        }
    }
}

/// Why a job was held back without running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deferral {
    /// The circuit breaker of an upstream its job type calls is open.
    BreakerOpen {
        /// The upstream.
        upstream: String,
    },
    /// An operator paused the job's type, or its whole queue (`ward
    /// pause`): the job is held (`ward:{Q}:held`) until a resume, however
    /// long that takes; its `delay` means nothing.
    Paused {
        /// The whole queue is paused, not only the job's type.
        queue: bool,
    },
    /// An operator paused (quarantined) the job's batch (`ward batch
    /// pause`): held like a paused job type's job (`ward:{Q}:held`) until
    /// `ward batch resume`.
    BatchPaused {
        /// The batch.
        batch: String,
    },
    /// An upstream its job type calls has no token left in its bucket
    /// (`[[upstream]] rate`), or holds every job until its Retry-After.
    RateLimited {
        /// The upstream.
        upstream: String,
        /// Held by a Retry-After, not by the bucket.
        retry_after: bool,
    },
    /// Every slot of an upstream its job type calls is in use
    /// (`[[upstream]] concurrency`).
    UpstreamBusy {
        /// The upstream.
        upstream: String,
    },
    /// Its group (tenant) has `group_concurrency` attempts in flight
    /// already (see [`crate::fairness`]).
    GroupBusy {
        /// The group (the value of the job type's `group_by` field).
        group: String,
    },
}

impl Deferral {
    /// What the job's record and history show for it, with `wait` (the time
    /// the breaker stays open): a transient failure with the code
    /// [`BREAKER_OPEN_CODE`], though nothing ran.
    pub fn recorded(&self, wait: Duration) -> Outcome {
        match self {
            Deferral::BreakerOpen { upstream } => {
                let message = format!(
                    "not run: the circuit breaker of upstream `{upstream}` is open for another {}",
                    humantime::format_duration(Duration::from_millis(
                        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX)
                    ))
                );
                Outcome::failure(FailureClass::Transient, message)
                    .with_code(BREAKER_OPEN_CODE)
                    .with_upstream(upstream)
            }
            Deferral::RateLimited {
                upstream,
                retry_after,
            } => {
                let message = if *retry_after {
                    format!(
                        "not run: upstream `{upstream}` asked to wait (Retry-After) for another {}",
                        shown(wait)
                    )
                } else {
                    format!(
                        "not run: upstream `{upstream}` is at its rate limit; its next free token is in {}",
                        shown(wait)
                    )
                };
                Outcome::failure(FailureClass::Transient, message)
                    .with_code(RATE_LIMITED_CODE)
                    .with_upstream(upstream)
            }
            Deferral::UpstreamBusy { upstream } => {
                let message = format!(
                    "not run: every slot of upstream `{upstream}` is in use; looked at again in {}",
                    shown(wait)
                );
                Outcome::failure(FailureClass::Transient, message)
                    .with_code(UPSTREAM_BUSY_CODE)
                    .with_upstream(upstream)
            }
            Deferral::Paused { queue } => {
                let what = if *queue { "its queue" } else { "its job type" };
                let message = format!("not run: {what} is paused; held until `ward resume`");
                Outcome::failure(FailureClass::Transient, message).with_code(PAUSED_CODE)
            }
            Deferral::BatchPaused { batch } => {
                let message = format!(
                    "not run: its batch `{batch}` is paused; held until `ward batch resume`"
                );
                Outcome::failure(FailureClass::Transient, message).with_code(BATCH_PAUSED_CODE)
            }
            Deferral::GroupBusy { group } => {
                let message = format!(
                    "not run: group `{group}` has as many attempts in flight as its group_concurrency; waiting for one of them to end"
                );
                Outcome::failure(FailureClass::Transient, message)
                    .with_code(crate::fairness::GROUP_BUSY_CODE)
            }
        }
    }
}

/// `wait` as a log or record shows it, to the millisecond.
fn shown(wait: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    ))
}

/// What a [`Completion`] records beside its entry, outcome and transition:
/// when and with what the attempt ran (or, when nothing ran, the job type it
/// would have run).
#[derive(Debug, Clone, Default)]
pub struct Ran {
    /// sha256 of the job type's plugin (empty without a job type).
    pub plugin_digest: Arc<str>,
    /// How long the job's idempotency key's completion is remembered.
    pub idempotency_ttl: Duration,
    /// Start of the attempt, Unix ms (0 when nothing ran).
    pub started_ms: u64,
    /// Start of the job's first attempt, Unix ms (0 when none is known).
    pub first_at_ms: u64,
    /// End of the attempt, Unix ms.
    pub finished_ms: u64,
    /// A checkpoint the attempt left; `None` keeps the entry's.
    pub checkpoint: Option<Vec<u8>>,
    /// Whether the attempt was lost with its worker (one more lost lease).
    pub lost: bool,
    /// For a dead letter: the payload as its entry in `ward:{Q}:dead` shows
    /// it (secrets redacted, a marker for a payload too large; see
    /// [`crate::redact::dead_payload`]). `None`: the payload as it is.
    pub dead_payload: Option<Vec<u8>>,
    /// How a success's result is kept.
    pub results: ResultPolicy,
}

/// The end of one delivery, ready to be recorded: built once, whole, from
/// its entry, its outcome, its transition and how it ran.
#[derive(Debug, Clone)]
pub struct Completion {
    entry_id: String,
    job_id: String,
    job: String,
    attempt: u32,
    started_ms: u64,
    first_at_ms: u64,
    finished_ms: u64,
    payload: Vec<u8>,
    // Boxed slices and whole ms: kept small, so that the completion stays
    // within clippy's bound on the size difference of `Work`'s variants.
    dead_payload: Option<Box<[u8]>>,
    outcome: Outcome,
    transition: Transition,
    plugin_digest: Arc<str>,
    checkpoint: Option<Vec<u8>>,
    extra: Vec<(String, Vec<u8>)>,
    idempotency_key: Option<String>,
    idempotency_ttl_ms: u64,
    lease_expiries: u32,
    /// [`ResultPolicy::ttl`] in whole seconds (0: none) and
    /// [`ResultPolicy::max_bytes`], packed: every attempt carries a
    /// completion, and a small one moves cheaply between the tasks.
    result_ttl_s: u32,
    result_max: u32,
    /// Jobs to enqueue if this completion records a success, atomically
    /// with its acknowledgement (empty: none, and no cost).
    pub follow_ons: Vec<FollowOn>,
}

impl Completion {
    /// The completion of `entry`, whose attempt ended with `outcome` and
    /// `ran` as described, taking `transition`. An attempt that did not run
    /// (see [`Transition::ran`]) is not spent: the completion carries the
    /// attempt before it.
    pub fn new(entry: JobEntry, outcome: Outcome, transition: Transition, ran: Ran) -> Completion {
        let attempt = if transition.ran() {
            entry.attempt
        } else {
            entry.attempt.saturating_sub(1)
        };
        Completion {
            entry_id: entry.entry_id,
            job_id: entry.id,
            job: entry.job,
            attempt,
            started_ms: ran.started_ms,
            first_at_ms: ran.first_at_ms,
            finished_ms: ran.finished_ms,
            payload: entry.payload,
            dead_payload: ran.dead_payload.map(Vec::into_boxed_slice),
            outcome,
            transition,
            plugin_digest: ran.plugin_digest,
            checkpoint: ran.checkpoint.or(entry.checkpoint),
            extra: entry.extra,
            idempotency_key: entry.idempotency_key,
            idempotency_ttl_ms: u64::try_from(ran.idempotency_ttl.as_millis()).unwrap_or(u64::MAX),
            // Saturating: the count comes from Redis, where anyone may write.
            lease_expiries: entry.lease_expiries.saturating_add(u32::from(ran.lost)),
            // Validation bounds both far below u32::MAX (3650 days, 16 MiB).
            result_ttl_s: ran
                .results
                .ttl
                .map_or(0, |t| u32::try_from(t.as_secs()).unwrap_or(u32::MAX)),
            result_max: u32::try_from(ran.results.max_bytes).unwrap_or(u32::MAX),
            follow_ons: Vec::new(),
        }
    }

    /// How a success's result is kept.
    #[must_use]
    pub fn results(&self) -> ResultPolicy {
        ResultPolicy {
            ttl: (self.result_ttl_s > 0).then(|| Duration::from_secs(self.result_ttl_s.into())),
            max_bytes: self.result_max as usize,
        }
    }

    /// The result a success keeps with its record, and, when it keeps none
    /// though there was one, why (a note for the record): `None` for a
    /// failure.
    #[must_use]
    pub fn kept_result(&self) -> Option<(&[u8], Option<String>)> {
        let Outcome::Success(out) = &self.outcome else {
            return None;
        };
        let max = self.result_max as usize;
        if out.len() <= max {
            return Some((out, None));
        }
        // 0 is a choice (keep none), not a limit to report.
        let note = (max > 0).then(|| {
            format!(
                "result not kept: {} bytes, over this job type's result_max_bytes of {max}",
                out.len()
            )
        });
        Some((&[], note))
    }

    /// A first delivery on its first attempt: no record exists yet, so a
    /// success needs none of the tidying of a retried job.
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        self.attempt == 1 && self.job_id == self.entry_id
    }

    /// The delivery being acknowledged.
    #[must_use]
    pub fn entry_id(&self) -> &str {
        &self.entry_id
    }

    /// The job's id.
    #[must_use]
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Job type (empty for a malformed entry).
    #[must_use]
    pub fn job(&self) -> &str {
        &self.job
    }

    /// The attempt number that just ended (the one before, when nothing ran).
    #[must_use]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Start of the attempt, Unix ms (0 when nothing ran).
    #[must_use]
    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// Start of the job's first attempt, Unix ms (0 when none is known).
    #[must_use]
    pub fn first_at_ms(&self) -> u64 {
        self.first_at_ms
    }

    /// End of the attempt, Unix ms.
    #[must_use]
    pub fn finished_ms(&self) -> u64 {
        self.finished_ms
    }

    /// The payload, kept for retries and dead letters.
    #[must_use]
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// For a dead letter: the payload as its dead-letter entry shows it
    /// (see [`Ran::dead_payload`]). The job record keeps [`Self::payload`].
    #[must_use]
    pub fn dead_payload(&self) -> &[u8] {
        self.dead_payload.as_deref().unwrap_or(&self.payload)
    }

    /// How the attempt ended.
    #[must_use]
    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    /// Where the job goes.
    pub fn transition(&self) -> &Transition {
        &self.transition
    }

    /// sha256 of the plugin that ran (empty when none did).
    #[must_use]
    pub fn plugin_digest(&self) -> &str {
        &self.plugin_digest
    }

    /// Checkpoint to hand to the next attempt.
    #[must_use]
    pub fn checkpoint(&self) -> Option<&[u8]> {
        self.checkpoint.as_deref()
    }

    /// Correlation fields carried from the entry.
    #[must_use]
    pub fn extra(&self) -> &[(String, Vec<u8>)] {
        &self.extra
    }

    /// The batch the job is a member of: its `batch` correlation field
    /// (carried to every retry), when it names one.
    #[must_use]
    pub fn batch(&self) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == "batch")
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .filter(|b| !b.is_empty())
    }

    /// The job's idempotency key, if it has one.
    #[must_use]
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// How long the key's completion is remembered.
    #[must_use]
    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_millis(self.idempotency_ttl_ms)
    }

    /// Lost leases so far, this attempt's included if it was lost.
    #[must_use]
    pub fn lease_expiries(&self) -> u32 {
        self.lease_expiries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempt: u32) -> JobEntry {
        JobEntry {
            entry_id: "2-0".into(),
            id: "1-0".into(),
            job: "send".into(),
            payload: b"p".to_vec(),
            attempt,
            idempotency_key: None,
            checkpoint: Some(b"old".to_vec()),
            first_at: Some(5),
            last_delay_ms: None,
            lease_expiries: 1,
            key_claimed: false,
            extra: Vec::new(),
        }
    }

    #[test]
    fn only_attempts_that_ran_are_spent() {
        let deferral = Transition::Defer {
            delay: Duration::from_secs(1),
            why: Deferral::BreakerOpen {
                upstream: "u".into(),
            },
        };
        for (t, attempt) in [
            (Transition::Succeed, 3),
            (
                Transition::Retry {
                    delay: Duration::ZERO,
                },
                3,
            ),
            (Transition::DeadLetter(DeadReason::Permanent), 3),
            (deferral, 2),
            (Transition::Duplicate { of: None }, 2),
            (Transition::DeadLetter(DeadReason::NoPlugin), 2),
            (Transition::DeadLetter(DeadReason::Malformed), 2),
            (Transition::Cancel { ran: true }, 3),
            (Transition::Cancel { ran: false }, 2),
        ] {
            let c = Completion::new(entry(3), Outcome::Success(Vec::new()), t, Ran::default());
            assert_eq!(c.attempt(), attempt, "{:?}", c.transition());
        }
    }

    #[test]
    fn a_new_checkpoint_replaces_the_old_and_a_lost_lease_counts() {
        let t = || Transition::Succeed;
        let ok = || Outcome::Success(Vec::new());
        let kept = Completion::new(entry(1), ok(), t(), Ran::default());
        assert_eq!(kept.checkpoint(), Some(&b"old"[..]));
        assert_eq!(kept.lease_expiries(), 1);
        let ran = Ran {
            checkpoint: Some(b"new".to_vec()),
            lost: true,
            ..Ran::default()
        };
        let new = Completion::new(entry(1), ok(), t(), ran);
        assert_eq!(new.checkpoint(), Some(&b"new"[..]));
        assert_eq!(new.lease_expiries(), 2);
    }

    #[test]
    fn an_upstream_deferral_says_which_limit_held_it() {
        let wait = Duration::from_millis(250);
        for (why, code, says) in [
            (
                Deferral::RateLimited {
                    upstream: "pay".into(),
                    retry_after: false,
                },
                RATE_LIMITED_CODE,
                "at its rate limit; its next free token is in 250ms",
            ),
            (
                Deferral::RateLimited {
                    upstream: "pay".into(),
                    retry_after: true,
                },
                RATE_LIMITED_CODE,
                "asked to wait (Retry-After) for another 250ms",
            ),
            (
                Deferral::UpstreamBusy {
                    upstream: "pay".into(),
                },
                UPSTREAM_BUSY_CODE,
                "every slot of upstream `pay` is in use",
            ),
        ] {
            let Outcome::Failure(f) = why.recorded(wait) else {
                panic!("a deferral is recorded as a failure");
            };
            assert_eq!(f.class, FailureClass::Transient);
            assert_eq!(f.code.as_deref(), Some(code));
            assert_eq!(f.upstream.as_deref(), Some("pay"));
            assert!(f.message.contains(says), "{}", f.message);
        }
    }

    #[test]
    fn a_deferral_is_recorded_as_a_transient_breaker_open_failure() {
        let why = Deferral::BreakerOpen {
            upstream: "pay".into(),
        };
        let Outcome::Failure(f) = why.recorded(Duration::from_millis(1500)) else {
            panic!("a deferral is recorded as a failure");
        };
        assert_eq!(f.class, FailureClass::Transient);
        assert_eq!(f.code.as_deref(), Some(BREAKER_OPEN_CODE));
        assert_eq!(f.upstream.as_deref(), Some("pay"));
        assert_eq!(
            f.message,
            "not run: the circuit breaker of upstream `pay` is open for another 1s 500ms"
        );
    }
}
