//! Guessing tokens, slowed down: an address that fails to authenticate
//! `[admin] failed_auth_limit` times within a minute is refused (429, with
//! `Retry-After`) until that minute is over, whatever token it sends then,
//! so that a wrong guess and a right one look the same to it. A success
//! before the limit clears the address's count (a mistyped token is not
//! held against its owner). A request without any token is no guess and
//! is not counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures are counted from an address's first failure, and how
/// long it is refused once over the limit.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most addresses tracked at once: past it, those whose window is over
/// are forgotten first, then any, so memory stays bounded under a flood of
/// addresses (which can each try only `limit` tokens a minute anyway).
const MAX_TRACKED: usize = 10_000;

/// One address's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Tally {
    since: Instant,
    failures: u32,
}

/// Why a token was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// None of `[[admin.token]]` has it.
    Unknown,
    /// The address failed too often; refused for this much longer.
    Throttled(Duration),
}

impl Refused {
    /// Whole seconds for `Retry-After` (at least 1).
    #[must_use]
    pub fn retry_after_secs(wait: Duration) -> u64 {
        wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
    }
}

/// The failed authentications per client address.
#[derive(Debug, Default)]
pub struct Failures {
    by_addr: Mutex<HashMap<IpAddr, Tally>>,
}

impl Failures {
    /// `Err(wait)` when `addr` is over `limit` (0: no limit) at `now`: it
    /// must be refused for `wait` more.
    ///
    /// # Errors
    /// How long `addr` is still refused.
    pub fn check(&self, addr: IpAddr, limit: u32, now: Instant) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let map = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&addr) {
            Some(t) if t.failures >= limit => {
                let left = (t.since + WINDOW).saturating_duration_since(now);
                if left.is_zero() { Ok(()) } else { Err(left) }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication from `addr` at `now`; `true` when it
    /// is the one that reaches `limit` (to be logged once).
    pub fn failed(&self, addr: IpAddr, limit: u32, now: Instant) -> bool {
        if limit == 0 {
            return false;
        }
        let mut map = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, t| now.saturating_duration_since(t.since) < WINDOW);
            if map.len() >= MAX_TRACKED
                && let Some(any) = map.keys().next().copied()
            {
                map.remove(&any);
            }
        }
        let t = map.entry(addr).or_insert(Tally {
            since: now,
            failures: 0,
        });
        if now.saturating_duration_since(t.since) >= WINDOW {
            *t = Tally {
                since: now,
                failures: 0,
            };
        }
        t.failures = t.failures.saturating_add(1);
        t.failures == limit
    }

    /// Clears `addr`'s count after it authenticated.
    pub fn succeeded(&self, addr: IpAddr) {
        let mut map = self
            .by_addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(&addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn an_address_is_refused_for_the_rest_of_the_minute_once_it_reaches_the_limit() {
        let f = Failures::default();
        let t0 = Instant::now();
        for i in 0..2 {
            assert_eq!(f.check(A, 3, t0), Ok(()));
            assert!(!f.failed(A, 3, t0 + Duration::from_secs(i)));
        }
        assert!(
            f.failed(A, 3, t0 + Duration::from_secs(2)),
            "the third reaches the limit"
        );
        assert_eq!(
            f.check(A, 3, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(50))
        );
        assert_eq!(
            f.check(B, 3, t0 + Duration::from_secs(10)),
            Ok(()),
            "only that address"
        );
        assert_eq!(f.check(A, 3, t0 + WINDOW), Ok(()), "the minute is over");
        assert!(!f.failed(A, 3, t0 + WINDOW), "a new window starts at one");
        assert_eq!(f.check(A, 3, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn a_success_before_the_limit_clears_the_count_and_zero_is_no_limit() {
        let f = Failures::default();
        let t0 = Instant::now();
        f.failed(A, 3, t0);
        f.failed(A, 3, t0);
        f.succeeded(A);
        f.failed(A, 3, t0);
        f.failed(A, 3, t0);
        assert_eq!(f.check(A, 3, t0), Ok(()), "two since the success");
        for _ in 0..100 {
            assert!(!f.failed(B, 0, t0));
        }
        assert_eq!(f.check(B, 0, t0), Ok(()));
    }

    #[test]
    fn the_table_stays_bounded_under_a_flood_of_addresses() {
        let f = Failures::default();
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            f.failed(IpAddr::V4(i.into()), 3, t0);
        }
        let len = f.by_addr.lock().unwrap().len();
        assert!(len <= MAX_TRACKED, "{len} tracked");
    }
}
