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

use axum::http::HeaderMap;
use axum::http::header::HeaderName;
use ipnet::IpNet;

/// `X-Forwarded-For`, as a reverse proxy writes it.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

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

/// Whether `addr` is one of `trusted` (addresses and ranges). An IPv4
/// peer reached over a dual-stack socket shows as `::ffff:a.b.c.d`: it is
/// matched as the IPv4 address it is.
fn is_trusted(addr: IpAddr, trusted: &[IpNet]) -> bool {
    let addr = addr.to_canonical();
    trusted.iter().any(|net| net.contains(&addr))
}

/// The address a request is counted against: its peer's, unless the peer
/// is in `trusted` (proxies' addresses and ranges), then the right-most
/// address of its `X-Forwarded-For` values that is not a trusted proxy
/// itself (the left-most are whatever the client wrote; a proxy appends
/// the address it was reached from). No usable header: the peer's.
#[must_use]
pub fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops = headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    // From the right: what a trusted proxy wrote is read, and the first
    // hop it did not trust is the client. Anything left of it, the client
    // may have written (garbage included), so it is never looked at.
    for hop in hops.rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(a) if is_trusted(a, trusted) => {}
            Ok(a) => return a.to_canonical(),
            Err(_) => break,
        }
    }
    peer
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
    fn behind_a_trusted_proxy_the_client_is_the_right_most_forwarded_address() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_FORWARDED_FOR, v.parse().unwrap());
            }
            h
        };
        let trusted = [IpNet::from(proxy)];
        let xff = headers(&["198.51.100.9, 192.0.2.1"]);
        assert_eq!(
            client_addr(proxy, &xff, &trusted),
            A,
            "the proxy appended A"
        );
        assert_eq!(
            client_addr(B, &xff, &trusted),
            B,
            "B is no proxy: its header is not read"
        );
        assert_eq!(client_addr(proxy, &xff, &[]), proxy, "no proxy trusted");
        assert_eq!(
            client_addr(proxy, &headers(&[]), &trusted),
            proxy,
            "no header"
        );
        assert_eq!(
            client_addr(proxy, &headers(&["192.0.2.1", "127.0.0.1"]), &trusted),
            A,
            "two headers, a trusted hop skipped"
        );
        assert_eq!(
            client_addr(proxy, &headers(&["not-an-address"]), &trusted),
            proxy,
            "an unreadable header is no client"
        );
        assert_eq!(
            client_addr(proxy, &headers(&["garbage, 192.0.2.1"]), &trusted),
            A,
            "what the client wrote before the proxy's hop is never read"
        );
    }

    #[test]
    fn a_trusted_range_covers_every_proxy_in_it_and_mapped_ipv4_peers() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR, "192.0.2.1, 10.1.2.3".parse().unwrap());
        let range: IpNet = "10.0.0.0/8".parse().unwrap();
        let proxy: IpAddr = "10.200.0.7".parse().unwrap();
        assert_eq!(
            client_addr(proxy, &h, &[range]),
            A,
            "the peer and the inner hop 10.1.2.3 are both in the range"
        );
        let outside: IpAddr = "11.0.0.1".parse().unwrap();
        assert_eq!(client_addr(outside, &h, &[range]), outside);
        // A dual-stack listener sees an IPv4 proxy as ::ffff:10.200.0.7.
        let mapped: IpAddr = "::ffff:10.200.0.7".parse().unwrap();
        assert_eq!(client_addr(mapped, &h, &[range]), A);
        let mut h6 = HeaderMap::new();
        h6.append(X_FORWARDED_FOR, "::ffff:192.0.2.1".parse().unwrap());
        assert_eq!(
            client_addr(proxy, &h6, &[range]),
            A,
            "a mapped client address is counted as the IPv4 address it is"
        );
        let v6: IpNet = "fd00::/8".parse().unwrap();
        let proxy6: IpAddr = "fd12::1".parse().unwrap();
        assert_eq!(
            client_addr(proxy6, &h, &[v6]),
            "10.1.2.3".parse::<IpAddr>().unwrap()
        );
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
