//! Retry policies: `[defaults.retry]` over the built-in defaults, then each
//! job's `retry = {..}` over that, field by field.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::raw::RawRetry;
use crate::policy::RetryPolicy;

/// The policy every job type inherits: built-in defaults, then `[defaults.retry]`.
pub(super) fn defaults(
    raw: Option<&Spanned<RawRetry>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> RetryPolicy {
    resolve(raw, RetryPolicy::default(), "[defaults.retry]", problem)
}

/// A job's policy: its own `retry` table over `base` (the defaults).
pub(super) fn job(
    raw: Option<&Spanned<RawRetry>>,
    base: RetryPolicy,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> RetryPolicy {
    resolve(raw, base, &format!("job `{name}`: retry"), problem)
}

/// `raw` over `base`, each problem of the result reported at the table,
/// prefixed with `at`.
fn resolve(
    raw: Option<&Spanned<RawRetry>>,
    base: RetryPolicy,
    at: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> RetryPolicy {
    let Some(table) = raw else {
        return base;
    };
    let policy = over(table.get_ref(), base);
    for msg in check_retry(&policy) {
        problem(table.span(), format!("{at}: {msg}"));
    }
    policy
}

/// `base` with every field `raw` sets replaced.
fn over(raw: &RawRetry, base: RetryPolicy) -> RetryPolicy {
    let d = |v: &Option<Spanned<Duration>>, b: Duration| v.as_ref().map_or(b, |s| *s.get_ref());
    RetryPolicy {
        max_attempts: raw.max_attempts.unwrap_or(base.max_attempts),
        max_elapsed: d(&raw.max_elapsed, base.max_elapsed),
        initial_delay: d(&raw.initial_delay, base.initial_delay),
        multiplier: raw.multiplier.unwrap_or(base.multiplier),
        max_delay: d(&raw.max_delay, base.max_delay),
        jitter: raw.jitter.unwrap_or(base.jitter),
        recoverable_initial_delay: d(
            &raw.recoverable_initial_delay,
            base.recoverable_initial_delay,
        ),
        timeout_as: raw.on_timeout.unwrap_or(base.timeout_as),
        crash_as: raw.on_crash.unwrap_or(base.crash_as),
        max_lease_expiries: raw.max_lease_expiries.unwrap_or(base.max_lease_expiries),
    }
}

/// What is wrong with a resolved retry policy, one message per problem.
#[must_use]
pub fn check_retry(p: &RetryPolicy) -> Vec<String> {
    let mut out = Vec::new();
    if p.max_attempts == 0 {
        out.push(
            "max_attempts is 0; it counts the first attempt too, so use at least 1".to_string(),
        );
    }
    if !p.multiplier.is_finite() || p.multiplier < 1.0 {
        out.push(format!(
            "multiplier {} would shrink the delays; use 1.0 (constant) or more",
            p.multiplier
        ));
    }
    if p.max_delay < p.initial_delay {
        out.push(format!(
            "max_delay {} is less than initial_delay {}; raise max_delay or lower initial_delay",
            humantime::format_duration(p.max_delay),
            humantime::format_duration(p.initial_delay)
        ));
    }
    if p.max_lease_expiries == 0 {
        out.push("max_lease_expiries is 0; use at least 1".to_string());
    }
    if p.max_elapsed.is_zero() {
        out.push("max_elapsed is 0; no retry could ever fit, use e.g. \"10m\"".to_string());
    }
    out
}
