//! What happens after an attempt: a pure decision, made without Redis.
//!
//! [`decide`] looks at an attempt's [`Outcome`] and the job's attempt count
//! and returns a [`Decision`]; the queue module *applies* it atomically. The
//! retry policy engine (classes, backoff with jitter, budgets) will replace
//! [`RetryPolicy`] and extend [`Decision`] with due times; callers only see
//! the decision, so that change stays inside this module.

use crate::job::{DeadReason, FailureClass, Outcome};

/// The bounded, immediate retry of the backbone: a failed job runs again
/// right away, up to `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3 }
    }
}

/// What to do with a job after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It succeeded: acknowledge and record.
    Ack,
    /// Run it again as attempt `next_attempt`.
    Retry {
        /// The number of the attempt to come.
        next_attempt: u32,
    },
    /// Give up: move it to the dead-letter stream.
    DeadLetter(DeadReason),
}

/// Decides the next step after attempt number `attempt` ended with `outcome`.
#[must_use]
pub fn decide(outcome: &Outcome, attempt: u32, policy: &RetryPolicy) -> Decision {
    let failure = match outcome {
        Outcome::Success(_) => return Decision::Ack,
        Outcome::Failure(f) => f,
    };
    match failure.class {
        FailureClass::Permanent => Decision::DeadLetter(DeadReason::Permanent),
        FailureClass::Crash => Decision::DeadLetter(DeadReason::Crash),
        FailureClass::Transient | FailureClass::Recoverable | FailureClass::Timeout => {
            if attempt >= policy.max_attempts {
                Decision::DeadLetter(DeadReason::AttemptsExhausted)
            } else {
                Decision::Retry {
                    next_attempt: attempt + 1,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(class: FailureClass) -> Outcome {
        Outcome::failure(class, "x")
    }

    #[test]
    fn decisions_by_class_and_attempt() {
        let p = RetryPolicy::default();
        let table = [
            (Outcome::Success(vec![]), 1, Decision::Ack),
            (Outcome::Success(vec![]), 3, Decision::Ack),
            (
                fail(FailureClass::Transient),
                1,
                Decision::Retry { next_attempt: 2 },
            ),
            (
                fail(FailureClass::Recoverable),
                2,
                Decision::Retry { next_attempt: 3 },
            ),
            (
                fail(FailureClass::Timeout),
                2,
                Decision::Retry { next_attempt: 3 },
            ),
            (
                fail(FailureClass::Transient),
                3,
                Decision::DeadLetter(DeadReason::AttemptsExhausted),
            ),
            (
                fail(FailureClass::Transient),
                9,
                Decision::DeadLetter(DeadReason::AttemptsExhausted),
            ),
            (
                fail(FailureClass::Permanent),
                1,
                Decision::DeadLetter(DeadReason::Permanent),
            ),
            (
                fail(FailureClass::Crash),
                1,
                Decision::DeadLetter(DeadReason::Crash),
            ),
        ];
        for (outcome, attempt, want) in table {
            assert_eq!(
                decide(&outcome, attempt, &p),
                want,
                "{outcome:?} at attempt {attempt}"
            );
        }
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        let p = RetryPolicy { max_attempts: 1 };
        assert_eq!(
            decide(&fail(FailureClass::Transient), 1, &p),
            Decision::DeadLetter(DeadReason::AttemptsExhausted)
        );
    }
}
