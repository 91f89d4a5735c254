//! Upper bounds of every duration and size in the file.
//!
//! Each section checks the lower bounds that make sense for its keys; the
//! upper bound is the same for all of them and comes from what Ward hands the
//! values to: Redis takes expiries and idle times as milliseconds in an i64
//! (added to the current time), tokio adds timeouts and sleeps to an
//! `Instant`. A value either cannot hold would pass `config check` and then
//! fail every attempt, expiry or sleep at run time, so it is refused here, at
//! its line, by the key's name.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::defaults::{MAX_DEAD_PAYLOAD_MAX, MAX_DURATION};
use crate::config::observability::{RawAlerts, RawMetrics};
use crate::config::raw::{RawConfig, RawRetry};

/// Checks one duration key: `(where, key, value)`.
type Long<'a> = dyn FnMut(&str, &str, Option<&Spanned<Duration>>) + 'a;

/// Reports every duration over [`MAX_DURATION`] and every size over its
/// bound, each at its own line (or its table's, for keys without a span).
pub(super) fn check(raw: &RawConfig, problem: &mut dyn FnMut(Range<usize>, String)) {
    {
        let mut long = |at: &str, key: &str, value: Option<&Spanned<Duration>>| {
            if let Some(v) = value.filter(|v| *v.get_ref() > MAX_DURATION) {
                problem(v.span(), too_long(at, key, *v.get_ref()));
            }
        };
        if let Some(r) = &raw.defaults.retry {
            retry(r.get_ref(), "[defaults.retry]", &mut long);
        }
        for q in &raw.queues {
            let at = format!("queue `{}`", q.name.get_ref());
            long(&at, "lease", q.lease.as_ref());
            long(&at, "succeeded_ttl", q.succeeded_ttl.as_ref());
            long(&at, "batch_retention", q.batch_retention.as_ref());
            long(&at, "dead_max_age", q.dead_max_age.as_ref());
            long(&at, "dead_trim_interval", q.dead_trim_interval.as_ref());
        }
        for j in &raw.jobs {
            let at = format!("job `{}`", j.name.get_ref());
            long(&at, "timeout", j.timeout.as_ref());
            long(&at, "idempotency_ttl", j.idempotency_ttl.as_ref());
            long(&at, "result_ttl", j.result_ttl.as_ref());
            if let Some(r) = &j.retry {
                retry(r.get_ref(), &format!("{at}: retry"), &mut long);
            }
            if let Some(h) = &j.http {
                long(&at, "http.timeout", h.get_ref().timeout.as_ref());
            }
        }
        observability(&raw.metrics, &raw.alerts, &mut long);
    }
    if let Some(b) = &raw.defaults.breaker {
        let r = b.get_ref();
        for (key, value) in [("window", r.window), ("open_for", r.open_for)] {
            if let Some(v) = value.filter(|v| *v > MAX_DURATION) {
                problem(b.span(), too_long("[defaults.breaker]", key, v));
            }
        }
    }
    payload_max(raw, problem);
}

/// The durations of a retry table (`[defaults.retry]` or a job's).
fn retry(r: &RawRetry, at: &str, long: &mut Long<'_>) {
    long(at, "max_elapsed", r.max_elapsed.as_ref());
    long(at, "initial_delay", r.initial_delay.as_ref());
    long(at, "max_delay", r.max_delay.as_ref());
    long(
        at,
        "recoverable_initial_delay",
        r.recoverable_initial_delay.as_ref(),
    );
}

/// The durations of `[metrics]`, `[alerts]` and each `[[alerts.webhook]]`.
fn observability(metrics: &RawMetrics, alerts: &RawAlerts, long: &mut Long<'_>) {
    long(
        "[metrics]",
        "sample_interval",
        metrics.sample_interval.as_ref(),
    );
    long("[alerts]", "window", alerts.window.as_ref());
    long("[alerts]", "cooldown", alerts.cooldown.as_ref());
    long("[alerts]", "group_wait", alerts.group_wait.as_ref());
    for hook in &alerts.webhook {
        long("[[alerts.webhook]]", "timeout", hook.timeout.as_ref());
    }
}

/// `dead_payload_max`, in `[defaults]` and each queue: a dead letter is one
/// Redis string field, which Redis caps at 512 MB.
fn payload_max(raw: &RawConfig, problem: &mut dyn FnMut(Range<usize>, String)) {
    let queues = raw
        .queues
        .iter()
        .map(|q| (format!("queue `{}`", q.name.get_ref()), &q.dead_payload_max));
    let all =
        std::iter::once(("[defaults]".to_string(), &raw.defaults.dead_payload_max)).chain(queues);
    for (at, value) in all {
        if let Some(m) = value
            .as_ref()
            .filter(|m| usize::try_from(*m.get_ref()).is_ok_and(|n| n > MAX_DEAD_PAYLOAD_MAX))
        {
            problem(
                m.span(),
                format!(
                    "{at}: dead_payload_max {} is more than Redis can store in one field; use at most {MAX_DEAD_PAYLOAD_MAX}",
                    m.get_ref()
                ),
            );
        }
    }
}

/// The message for a duration over [`MAX_DURATION`].
fn too_long(at: &str, key: &str, value: Duration) -> String {
    format!(
        "{at}: {key} {} is longer than Redis and the timer can represent; use at most \"{}d\"",
        humantime::format_duration(value),
        MAX_DURATION.as_secs() / 86_400
    )
}
