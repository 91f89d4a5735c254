//! `[[upstream]]` tables: a token bucket, a fleet-wide cap on attempts in
//! flight, and the breaker settings of one upstream.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::config::defaults::{MAX_CONCURRENCY, MAX_DURATION, MIN_BREAKER_PERIOD};
use crate::config::raw::RawUpstream;
use crate::config::{BreakerPolicy, RateLimit, UpstreamConfig};

/// Most tokens a bucket may add per period.
const MAX_RATE: i64 = 1_000_000;
/// The shortest `per`: Redis' clock is read in milliseconds.
const MIN_PER: Duration = Duration::from_millis(1);

/// The upstream tables by name; one defined twice is reported and kept once.
pub(super) fn upstreams(
    raw: Vec<Spanned<RawUpstream>>,
    defaults: BreakerPolicy,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> BTreeMap<String, UpstreamConfig> {
    let mut out = BTreeMap::new();
    for u in raw {
        let span = u.span();
        let u = u.into_inner();
        let name = u.name.get_ref().clone();
        if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') {
            problem(
                u.name.span(),
                format!(
                    "[[upstream]] name `{name}` must be non-empty, without whitespace or braces"
                ),
            );
            continue;
        }
        if out.contains_key(&name) {
            problem(u.name.span(), format!("upstream `{name}` is defined twice"));
            continue;
        }
        let at = format!("upstream `{name}`");
        let mut report = |message: String| problem(span.clone(), format!("{at}: {message}"));
        let rate = rate(&u, &mut report);
        let concurrency = u.concurrency.and_then(|c| match u32::try_from(c) {
            Ok(c) if (1..=MAX_CONCURRENCY).contains(&c) => Some(c),
            _ => {
                report(format!(
                    "concurrency {c} is out of range; use 1 to {MAX_CONCURRENCY}"
                ));
                None
            }
        });
        let breaker = breaker(&u, defaults, &mut report);
        out.insert(
            name.clone(),
            UpstreamConfig {
                name,
                rate,
                concurrency,
                breaker,
            },
        );
    }
    out
}

/// The token bucket, when `rate` is set; `per` and `burst` need it.
fn rate(u: &RawUpstream, report: &mut dyn FnMut(String)) -> Option<RateLimit> {
    let Some(rate) = u.rate else {
        if u.per.is_some() || u.burst.is_some() {
            report("per and burst need a rate, e.g. rate = 100".into());
        }
        return None;
    };
    if !(1..=MAX_RATE).contains(&rate) {
        report(format!("rate {rate} is out of range; use 1 to {MAX_RATE}"));
        return None;
    }
    let per = u.per.unwrap_or(Duration::from_secs(1));
    if per < MIN_PER || per > MAX_DURATION {
        report(format!(
            "per must be from 1ms to {}",
            humantime::format_duration(MAX_DURATION)
        ));
        return None;
    }
    let burst = u.burst.unwrap_or(rate);
    if !(1..=MAX_RATE).contains(&burst) {
        report(format!(
            "burst {burst} is out of range; use 1 to {MAX_RATE}"
        ));
        return None;
    }
    // Both are within 1..=MAX_RATE, checked above.
    let (rate, burst) = (u32::try_from(rate).ok()?, u32::try_from(burst).ok()?);
    Some(RateLimit { rate, per, burst })
}

/// `[defaults.breaker]` with the table's overrides.
fn breaker(
    u: &RawUpstream,
    defaults: BreakerPolicy,
    report: &mut dyn FnMut(String),
) -> BreakerPolicy {
    let mut b = defaults;
    if let Some(f) = u.failures {
        match u32::try_from(f) {
            Ok(f) if f >= 1 => b.failures = f,
            _ => report(format!("failures {f} is out of range; use 1 or more")),
        }
    }
    for (key, value, slot) in [
        ("window", u.window, &mut b.window),
        ("open_for", u.open_for, &mut b.open_for),
    ] {
        if let Some(v) = value {
            if v < MIN_BREAKER_PERIOD || v > MAX_DURATION {
                report(format!(
                    "{key} must be from 100ms to {}",
                    humantime::format_duration(MAX_DURATION)
                ));
            } else {
                *slot = v;
            }
        }
    }
    b
}
