//! What happens after an attempt: a pure decision, made without Redis.
//!
//! [`decide`] looks at an attempt's [`Outcome`], where the job stands
//! ([`Progress`]) and its [`RetryPolicy`], and returns the [`Transition`]
//! the job makes; the store *applies* it atomically. Randomness (jitter) comes in as an
//! argument, so a fixed seed makes every decision reproducible.
//!
//! The rules, in order:
//! 1. success → [`Transition::Succeed`]; an attempt an operator cancelled
//!    (class `cancelled`) → [`Transition::Cancel`], whatever the budget;
//! 2. the failure's class is resolved: `timeout` and `crash` are treated as
//!    the policy says (defaults: timeout → transient, crash → permanent);
//! 3. permanent → dead (`permanent`, or `crash` for a crash);
//! 4. `max_attempts` reached → dead (`budget exhausted: attempts`);
//! 5. the delay: the plugin's `retry-after` if it gave one (capped by what is
//!    left of `max_elapsed`), else exponential backoff with jitter from
//!    `initial_delay` (or `recoverable_initial_delay` for recoverable);
//! 6. a retry due past the `max_elapsed` deadline → dead
//!    (`budget exhausted: elapsed`), now rather than later.

use std::time::Duration;

use rand::{Rng, RngExt as _};

use crate::job::{DeadReason, FailureClass, Outcome};
use crate::transition::Transition;

/// How a host-made class (`timeout`, `crash`) is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TreatAs {
    /// Retried with the normal backoff.
    Transient,
    /// Retried, starting from `recoverable_initial_delay`.
    Recoverable,
    /// Never retried.
    Permanent,
}

/// Which randomisation spreads retries out (the AWS Architecture Blog variants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    /// Exactly the exponential delay `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
    /// Uniform in `[initial, 3 × previous delay]`, capped at `max_delay`.
    Decorrelated,
}

/// A job type's retry policy, all fields resolved (defaults applied).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (≥ 1).
    pub max_attempts: u32,
    /// Time from the start of the first attempt after which no attempt starts.
    pub max_elapsed: Duration,
    /// The delay after the first failure.
    pub initial_delay: Duration,
    /// Growth factor per further failure (≥ 1).
    pub multiplier: f64,
    /// The longest computed delay (≥ `initial_delay`).
    pub max_delay: Duration,
    /// How the delay is randomised.
    pub jitter: Jitter,
    /// The delay after the first *recoverable* failure.
    pub recoverable_initial_delay: Duration,
    /// How a timeout is treated.
    pub timeout_as: TreatAs,
    /// How a crash is treated.
    pub crash_as: TreatAs,
    /// Lost leases (the worker died mid-attempt) after which the job is
    /// dead-lettered as a poison pill instead of retried.
    pub max_lease_expiries: u32,
}

impl Default for RetryPolicy {
    /// The defaults of `[defaults.retry]` (docs/configuration.md).
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(600),
            initial_delay: Duration::from_secs(1),
            multiplier: 2.0,
            max_delay: Duration::from_secs(300),
            jitter: Jitter::Full,
            recoverable_initial_delay: Duration::from_secs(30),
            timeout_as: TreatAs::Transient,
            crash_as: TreatAs::Permanent,
            max_lease_expiries: 3,
        }
    }
}

/// Where a job stands when an attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The number of the attempt that just ended (1-based).
    pub attempt: u32,
    /// When the first attempt started, Unix ms.
    pub first_attempt_ms: u64,
    /// Now, Unix ms.
    pub now_ms: u64,
    /// The delay chosen after the previous failure (for decorrelated jitter).
    pub previous_delay: Option<Duration>,
}

/// Decides the next step after an attempt ended with `outcome`: success,
/// a retry or a dead letter (never a deferral or a duplicate; those are
/// known before anything runs).
pub fn decide(
    outcome: &Outcome,
    progress: &Progress,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Transition {
    let failure = match outcome {
        Outcome::Success(_) => return Transition::Succeed,
        Outcome::Failure(f) => f,
    };
    let treat = match failure.class {
        FailureClass::Cancelled => return Transition::Cancel { ran: true },
        FailureClass::Transient => TreatAs::Transient,
        FailureClass::Recoverable => TreatAs::Recoverable,
        FailureClass::Permanent => TreatAs::Permanent,
        FailureClass::Timeout => policy.timeout_as,
        FailureClass::Crash => policy.crash_as,
    };
    if treat == TreatAs::Permanent {
        return Transition::DeadLetter(if failure.class == FailureClass::Crash {
            DeadReason::Crash
        } else {
            DeadReason::Permanent
        });
    }
    if progress.attempt >= policy.max_attempts {
        return Transition::DeadLetter(DeadReason::AttemptsExhausted);
    }
    let deadline = progress
        .first_attempt_ms
        .saturating_add(millis(policy.max_elapsed));
    let left = Duration::from_millis(deadline.saturating_sub(progress.now_ms));
    if left.is_zero() {
        return Transition::DeadLetter(DeadReason::ElapsedExhausted);
    }
    let delay = match failure.retry_after_ms {
        // The upstream knows best when it will be back, but not better than
        // the budget: a Retry-After of years is cut to what is left.
        Some(ms) => Duration::from_millis(ms).min(left),
        None => {
            let d = backoff(policy, treat, progress);
            if d > left {
                return Transition::DeadLetter(DeadReason::ElapsedExhausted);
            }
            jittered(policy, treat, d, progress.previous_delay, rng).min(left)
        }
    };
    Transition::Retry { delay }
}

/// Decides after an attempt that was lost: its worker stopped (killed,
/// crashed host) and its lease expired, so another daemon reclaimed it.
/// The lost attempt counts as an attempt and is treated as transient —
/// unless this job has now lost `max_lease_expiries` leases, which marks a
/// poison pill that takes its workers down with it.
pub fn decide_lost(
    progress: &Progress,
    lease_expiries: u32,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Transition {
    if lease_expiries >= policy.max_lease_expiries {
        return Transition::DeadLetter(DeadReason::LeaseExpiries);
    }
    let lost =
        Outcome::failure(FailureClass::Transient, "lease expired").with_code("lease-expired");
    decide(&lost, progress, policy, rng)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The first delay of a failure treated as `treat`, and the largest
/// computed delay it may grow to.
fn start_and_cap(policy: &RetryPolicy, treat: TreatAs) -> (Duration, Duration) {
    match treat {
        // A recoverable failure starts longer; it may start above max_delay
        // but then never grows further.
        TreatAs::Recoverable => (
            policy.recoverable_initial_delay,
            policy.max_delay.max(policy.recoverable_initial_delay),
        ),
        TreatAs::Transient | TreatAs::Permanent => (policy.initial_delay, policy.max_delay),
    }
}

/// `start × multiplier^(attempt-1)`, capped, before jitter. The upper bound
/// of every jitter variant, so budget checks use it.
#[must_use]
pub fn backoff(policy: &RetryPolicy, treat: TreatAs, progress: &Progress) -> Duration {
    let (start, cap) = start_and_cap(policy, treat);
    let exp = i32::try_from(progress.attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    // Due times are whole milliseconds, so the delay is too.
    let ms = (start.as_secs_f64() * 1000.0 * policy.multiplier.powi(exp)).round();
    if !ms.is_finite() || ms >= cap.as_secs_f64() * 1000.0 {
        cap
    } else {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "finite, non-negative and below the cap"
        )]
        Duration::from_millis(ms.max(0.0) as u64)
    }
}

fn jittered(
    policy: &RetryPolicy,
    treat: TreatAs,
    d: Duration,
    previous: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let d_ms = millis(d);
    let ms = match policy.jitter {
        Jitter::None => d_ms,
        Jitter::Full => rng.random_range(0..=d_ms),
        Jitter::Equal => d_ms / 2 + rng.random_range(0..=d_ms - d_ms / 2),
        Jitter::Decorrelated => {
            let (start, cap) = start_and_cap(policy, treat);
            let low = millis(start);
            let high = millis(previous.unwrap_or(start)).saturating_mul(3).max(low);
            rng.random_range(low..=high).min(millis(cap))
        }
    };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn fail(class: FailureClass) -> Outcome {
        Outcome::failure(class, "x")
    }

    fn at(attempt: u32) -> Progress {
        Progress {
            attempt,
            first_attempt_ms: 1_000_000,
            now_ms: 1_000_000,
            previous_delay: None,
        }
    }

    fn exact() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_millis(1000),
            jitter: Jitter::None,
            ..RetryPolicy::default()
        }
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn decisions_by_class() {
        let p = exact();
        let retry = |ms| Transition::Retry {
            delay: Duration::from_millis(ms),
        };
        let table = [
            (Outcome::Success(vec![]), 1, Transition::Succeed),
            (fail(FailureClass::Transient), 1, retry(100)),
            (fail(FailureClass::Transient), 2, retry(200)),
            (fail(FailureClass::Transient), 4, retry(800)),
            (fail(FailureClass::Timeout), 1, retry(100)),
            (fail(FailureClass::Recoverable), 1, retry(30_000)),
            (
                fail(FailureClass::Transient),
                5,
                Transition::DeadLetter(DeadReason::AttemptsExhausted),
            ),
            (
                fail(FailureClass::Permanent),
                1,
                Transition::DeadLetter(DeadReason::Permanent),
            ),
            (
                fail(FailureClass::Crash),
                1,
                Transition::DeadLetter(DeadReason::Crash),
            ),
            (
                fail(FailureClass::Cancelled),
                1,
                Transition::Cancel { ran: true },
            ),
            // A cancelled attempt is never dead-lettered, budget or not.
            (
                fail(FailureClass::Cancelled),
                5,
                Transition::Cancel { ran: true },
            ),
        ];
        for (outcome, attempt, want) in table {
            assert_eq!(
                decide(&outcome, &at(attempt), &p, &mut rng()),
                want,
                "{outcome:?} at {attempt}"
            );
        }
    }

    #[test]
    fn timeout_and_crash_follow_their_configured_treatment() {
        let p = RetryPolicy {
            timeout_as: TreatAs::Permanent,
            crash_as: TreatAs::Transient,
            ..exact()
        };
        assert_eq!(
            decide(&fail(FailureClass::Timeout), &at(1), &p, &mut rng()),
            Transition::DeadLetter(DeadReason::Permanent)
        );
        assert!(matches!(
            decide(&fail(FailureClass::Crash), &at(1), &p, &mut rng()),
            Transition::Retry { .. }
        ));
    }

    #[test]
    fn a_lost_attempt_is_retried_until_the_lease_budget_runs_out() {
        let p = exact();
        assert!(matches!(
            decide_lost(&at(1), 1, &p, &mut rng()),
            Transition::Retry { .. }
        ));
        assert_eq!(
            decide_lost(&at(1), 3, &p, &mut rng()),
            Transition::DeadLetter(DeadReason::LeaseExpiries)
        );
        assert_eq!(
            decide_lost(&at(5), 1, &p, &mut rng()),
            Transition::DeadLetter(DeadReason::AttemptsExhausted),
            "a lost attempt still counts against max_attempts"
        );
    }

    #[test]
    fn delays_are_capped_at_max_delay() {
        let p = exact();
        assert_eq!(
            backoff(&p, TreatAs::Transient, &at(30)),
            Duration::from_millis(1000)
        );
        assert_eq!(
            backoff(&p, TreatAs::Transient, &at(u32::MAX)),
            Duration::from_millis(1000)
        );
    }

    #[test]
    fn retry_after_is_honoured_over_the_computed_delay() {
        let mut f = fail(FailureClass::Recoverable);
        if let Outcome::Failure(f) = &mut f {
            f.retry_after_ms = Some(1500);
        }
        assert_eq!(
            decide(&f, &at(1), &exact(), &mut rng()),
            Transition::Retry {
                delay: Duration::from_millis(1500)
            }
        );
    }

    #[test]
    fn a_retry_after_of_years_is_cut_to_the_budget() {
        let mut f = fail(FailureClass::Transient);
        if let Outcome::Failure(f) = &mut f {
            f.retry_after_ms = Some(10 * 365 * 24 * 3600 * 1000);
        }
        let p = exact(); // max_elapsed 10 min
        let mut progress = at(1);
        progress.now_ms += 60_000;
        assert_eq!(
            decide(&f, &progress, &p, &mut rng()),
            Transition::Retry {
                delay: Duration::from_secs(540)
            }
        );
    }

    #[test]
    fn a_retry_due_past_max_elapsed_is_dead_now() {
        let p = RetryPolicy {
            max_attempts: 100,
            max_elapsed: Duration::from_millis(1500),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            ..exact()
        };
        // Attempt 1 at t=0: 1 s delay fits in 1.5 s.
        assert!(matches!(
            decide(&fail(FailureClass::Transient), &at(1), &p, &mut rng()),
            Transition::Retry { .. }
        ));
        // Attempt 2 ended at t=1.1 s: a 2 s delay would end past 1.5 s.
        let mut progress = at(2);
        progress.now_ms += 1100;
        assert_eq!(
            decide(&fail(FailureClass::Transient), &progress, &p, &mut rng()),
            Transition::DeadLetter(DeadReason::ElapsedExhausted)
        );
        // And once the deadline has passed, nothing more is scheduled at all.
        progress.now_ms += 10_000;
        assert_eq!(
            decide(&fail(FailureClass::Transient), &progress, &p, &mut rng()),
            Transition::DeadLetter(DeadReason::ElapsedExhausted)
        );
    }

    fn policy_strategy() -> impl Strategy<Value = RetryPolicy> {
        (
            1u32..20,
            1u64..5_000,
            1.0f64..4.0,
            0u64..100_000,
            prop_oneof![
                Just(Jitter::None),
                Just(Jitter::Full),
                Just(Jitter::Equal),
                Just(Jitter::Decorrelated)
            ],
            1u64..60_000,
        )
            .prop_map(
                |(max_attempts, initial, multiplier, extra, jitter, recoverable)| RetryPolicy {
                    max_attempts,
                    max_elapsed: Duration::from_secs(365 * 24 * 3600),
                    initial_delay: Duration::from_millis(initial),
                    multiplier,
                    max_delay: Duration::from_millis(initial + extra),
                    jitter,
                    recoverable_initial_delay: Duration::from_millis(recoverable),
                    timeout_as: TreatAs::Transient,
                    crash_as: TreatAs::Permanent,
                    max_lease_expiries: 3,
                },
            )
    }

    fn class_strategy() -> impl Strategy<Value = FailureClass> {
        prop_oneof![
            Just(FailureClass::Transient),
            Just(FailureClass::Recoverable),
            Just(FailureClass::Timeout)
        ]
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(
            p in policy_strategy(),
            class in class_strategy(),
            attempt in 1u32..40,
            prev in proptest::option::of(0u64..1_000_000),
            seed in any::<u64>(),
        ) {
            let progress = Progress { previous_delay: prev.map(Duration::from_millis), ..at(attempt) };
            let treat = if class == FailureClass::Recoverable { TreatAs::Recoverable } else { TreatAs::Transient };
            let d = backoff(&p, treat, &progress);
            let (_, cap) = start_and_cap(&p, treat);
            prop_assert!(d <= cap);
            match decide(&fail(class), &progress, &p, &mut StdRng::seed_from_u64(seed)) {
                Transition::Retry { delay } => {
                    prop_assert!(delay <= cap, "{:?} > cap {:?}", delay, cap);
                    match p.jitter {
                        Jitter::None => prop_assert_eq!(delay, d),
                        Jitter::Full => prop_assert!(delay <= d),
                        Jitter::Equal => {
                            prop_assert!(delay <= d);
                            prop_assert!(delay >= Duration::from_millis(millis(d) / 2));
                        }
                        Jitter::Decorrelated => {
                            let (start, _) = start_and_cap(&p, treat);
                            let high = millis(prev.map_or(start, Duration::from_millis)).saturating_mul(3).max(millis(start));
                            prop_assert!(delay >= start.min(cap));
                            prop_assert!(millis(delay) <= high);
                        }
                    }
                }
                Transition::DeadLetter(reason) => {
                    prop_assert_eq!(reason, DeadReason::AttemptsExhausted);
                    prop_assert!(attempt >= p.max_attempts);
                }
                other => prop_assert!(false, "a failure only retries or dead-letters: {:?}", other),
            }
        }

        #[test]
        fn the_budget_always_ends_a_job_within_max_attempts(p in policy_strategy(), seed in any::<u64>()) {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut progress = at(1);
            let mut runs = 1;
            loop {
                match decide(&fail(FailureClass::Transient), &progress, &p, &mut rng) {
                    Transition::Retry { delay } => {
                        runs += 1;
                        progress.attempt += 1;
                        progress.now_ms += millis(delay);
                        progress.previous_delay = Some(delay);
                    }
                    Transition::DeadLetter(_) => break,
                    _ => prop_assert!(false),
                }
                prop_assert!(runs <= p.max_attempts);
            }
            prop_assert_eq!(runs, p.max_attempts);
        }

        #[test]
        fn elapsed_budget_is_never_overrun(
            p in policy_strategy(),
            budget_ms in 1u64..20_000,
            retry_after in proptest::option::of(0u64..u64::MAX / 4),
            seed in any::<u64>(),
        ) {
            let p = RetryPolicy { max_attempts: 1000, max_elapsed: Duration::from_millis(budget_ms), ..p };
            let mut rng = StdRng::seed_from_u64(seed);
            let mut progress = at(1);
            let mut f = fail(FailureClass::Transient);
            if let Outcome::Failure(f) = &mut f { f.retry_after_ms = retry_after; }
            for _ in 0..1000 {
                match decide(&f, &progress, &p, &mut rng) {
                    Transition::Retry { delay } => {
                        progress.attempt += 1;
                        progress.now_ms += millis(delay);
                        progress.previous_delay = Some(delay);
                        prop_assert!(progress.now_ms <= progress.first_attempt_ms + budget_ms);
                        // An attempt takes time; without it a zero delay would loop forever.
                        progress.now_ms += 1;
                    }
                    Transition::DeadLetter(_) => break,
                    _ => prop_assert!(false),
                }
            }
        }

        #[test]
        fn decisions_are_deterministic_under_a_fixed_seed(p in policy_strategy(), attempt in 1u32..10, seed in any::<u64>()) {
            let a = decide(&fail(FailureClass::Transient), &at(attempt), &p, &mut StdRng::seed_from_u64(seed));
            let b = decide(&fail(FailureClass::Transient), &at(attempt), &p, &mut StdRng::seed_from_u64(seed));
            prop_assert_eq!(a, b);
        }
    }
}
