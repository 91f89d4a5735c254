//! `[defaults.breaker]`: when an upstream's circuit breaker opens.

use std::ops::Range;

use toml::Spanned;

use crate::config::BreakerPolicy;
use crate::config::defaults::MIN_BREAKER_PERIOD;
use crate::config::raw::RawBreaker;

/// The breaker policy: built-in defaults with the table's values over them.
/// Problems are reported at the table's line.
pub(super) fn breaker(
    raw: Option<&Spanned<RawBreaker>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> BreakerPolicy {
    let mut breaker = BreakerPolicy::default();
    let Some(b) = raw else {
        return breaker;
    };
    let r = b.get_ref();
    if let Some(f) = r.failures {
        match u32::try_from(f) {
            Ok(f) if f >= 1 => breaker.failures = f,
            _ => problem(
                b.span(),
                format!("[defaults.breaker]: failures {f} is out of range; use 1 or more"),
            ),
        }
    }
    if let Some(w) = r.window {
        breaker.window = w;
    }
    if let Some(o) = r.open_for {
        breaker.open_for = o;
    }
    if breaker.window < MIN_BREAKER_PERIOD || breaker.open_for < MIN_BREAKER_PERIOD {
        problem(
            b.span(),
            "[defaults.breaker]: window and open_for must be at least 100ms".to_string(),
        );
    }
    breaker
}
