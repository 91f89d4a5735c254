//! What a trusted reverse proxy says about a request: the client's address
//! and whether the client reached it over TLS, from the standard
//! `Forwarded` header (RFC 7239: `for=` and `proto=`) when the request has
//! one, else from `X-Forwarded-For` and `X-Forwarded-Proto`. Read only from
//! a peer listed in `[admin] trusted_proxies`; anyone else's headers are
//! whatever its sender wrote.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::HeaderName;
use axum::http::request::Parts;
use ipnet::IpNet;

/// `X-Forwarded-For`, as a reverse proxy writes it.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// `X-Forwarded-Proto`: the scheme the client used to reach the proxy.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `Forwarded` (RFC 7239): one element per proxy, each `name=value` pairs.
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// The elements of a request's `Forwarded` values, in order (the right-most
/// last), each its parameters with lower-case names and unquoted values;
/// `None` when the request has no `Forwarded` header.
fn forwarded(headers: &HeaderMap) -> Option<Vec<Vec<(String, String)>>> {
    let mut values = headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    values.peek()?;
    let mut elements = Vec::new();
    for value in values {
        let mut element = Vec::new();
        let mut pair = String::new();
        let mut quoted = false;
        let mut escaped = false;
        // Commas and semicolons inside a quoted value separate nothing.
        for c in value.chars().chain(std::iter::once(',')) {
            match c {
                _ if escaped => {
                    pair.push(c);
                    escaped = false;
                }
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' | ',' if !quoted => {
                    if let Some((name, v)) = pair.split_once('=') {
                        element.push((name.trim().to_ascii_lowercase(), v.trim().to_string()));
                    }
                    pair.clear();
                    if c == ',' {
                        elements.push(std::mem::take(&mut element));
                    }
                }
                _ => pair.push(c),
            }
        }
    }
    Some(elements)
}

/// The address of a `for=` node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`
/// or `[2001:db8::1]:4711`; `None` for `unknown` and obfuscated (`_name`)
/// nodes, which name no address.
fn node_addr(node: &str) -> Option<IpAddr> {
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    let host = node.split_once(':').map_or(node, |(host, _port)| host);
    host.parse().ok()
}

/// The value of parameter `name` in `element`.
fn param<'a>(element: &'a [(String, String)], name: &str) -> Option<&'a str> {
    element
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The TCP peer a request came from, as `admin/serve.rs` records it on
/// each connection (`None` where nothing recorded it).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl Peer {
    /// The peer of the request `parts` belong to.
    #[must_use]
    pub fn of(parts: &Parts) -> Peer {
        Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        )
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, Infallible> {
        Ok(Peer::of(parts))
    }
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
    // Each hop's address, `None` where it names none.
    let hops: Vec<Option<IpAddr>> = match forwarded(headers) {
        Some(elements) => elements
            .iter()
            .map(|e| param(e, "for").and_then(node_addr))
            .collect(),
        None => headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|hop| hop.trim().parse().ok())
            .collect(),
    };
    // From the right: what a trusted proxy wrote is read, and the first
    // hop it did not trust is the client. Anything left of it, the client
    // may have written (garbage included), so it is never looked at.
    for hop in hops.into_iter().rev() {
        match hop {
            Some(a) if is_trusted(a, trusted) => {}
            Some(a) => return a.to_canonical(),
            None => break,
        }
    }
    peer
}

/// Whether the client reached the trusted proxy `peer` over HTTPS, as the
/// right-most `Forwarded` element's `proto=` says, or without `Forwarded`
/// the right-most value of `X-Forwarded-Proto` (a proxy sets or appends
/// it). A peer that is no trusted proxy, or no header: no.
#[must_use]
pub fn behind_tls(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> bool {
    if !is_trusted(peer, trusted) {
        return false;
    }
    if let Some(elements) = forwarded(headers) {
        return elements
            .last()
            .and_then(|e| param(e, "proto"))
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    }
    headers
        .get_all(X_FORWARDED_PROTO)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

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
    fn only_a_trusted_proxy_says_the_client_came_over_tls() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted = [IpNet::from(proxy)];
        let with = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(X_FORWARDED_PROTO, v.parse().unwrap());
            }
            h
        };
        assert!(behind_tls(proxy, &with(&["https"]), &trusted));
        assert!(behind_tls(proxy, &with(&["HTTPS"]), &trusted));
        assert!(!behind_tls(proxy, &with(&["http"]), &trusted));
        assert!(!behind_tls(proxy, &with(&[]), &trusted), "no header");
        assert!(
            !behind_tls(A, &with(&["https"]), &trusted),
            "A is no proxy: its header is not read"
        );
        assert!(
            behind_tls(proxy, &with(&["http, https"]), &trusted),
            "the right-most is the proxy's"
        );
        assert!(!behind_tls(proxy, &with(&["https", "http"]), &trusted));
    }

    fn with_forwarded(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn a_trusted_proxys_forwarded_header_names_the_client_as_rfc_7239_writes_it() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted = [IpNet::from(proxy)];
        let at = |values: &[&str]| client_addr(proxy, &with_forwarded(values), &trusted);
        assert_eq!(at(&["for=192.0.2.1"]), A);
        assert_eq!(
            at(&["For=\"192.0.2.1:4711\";proto=https;by=127.0.0.1"]),
            A,
            "a port, other parameters"
        );
        assert_eq!(
            at(&["for=198.51.100.9, for=192.0.2.1;proto=http"]),
            A,
            "the right-most element is the proxy's"
        );
        assert_eq!(
            at(&["for=192.0.2.1", "for=127.0.0.1"]),
            A,
            "two headers, a trusted hop skipped"
        );
        let v6: IpAddr = "2001:db8:cafe::17".parse().unwrap();
        assert_eq!(at(&["for=\"[2001:db8:cafe::17]:4711\""]), v6);
        assert_eq!(at(&["for=\"[2001:db8:cafe::17]\""]), v6);
        assert_eq!(
            at(&["for=unknown"]),
            proxy,
            "an unknown client is no address"
        );
        assert_eq!(at(&["for=_hidden, for=192.0.2.1"]), A);
        assert_eq!(
            at(&["for=192.0.2.1, for=_hidden"]),
            proxy,
            "nothing left of an obfuscated hop is read"
        );
        assert_eq!(at(&["proto=https"]), proxy, "no for=");
        assert_eq!(
            at(&["for=\"192.0.2.2;x, y\", for=192.0.2.1"]),
            A,
            "separators inside quotes"
        );
        assert_eq!(
            client_addr(B, &with_forwarded(&["for=192.0.2.1"]), &trusted),
            B,
            "B is no proxy: its header is not read"
        );
        // With both, `Forwarded` is the one read.
        let mut both = with_forwarded(&["for=192.0.2.1"]);
        both.append(X_FORWARDED_FOR, "192.0.2.2".parse().unwrap());
        assert_eq!(client_addr(proxy, &both, &trusted), A);
    }

    #[test]
    fn a_trusted_proxys_forwarded_proto_says_whether_the_client_came_over_tls() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted = [IpNet::from(proxy)];
        let tls = |values: &[&str]| behind_tls(proxy, &with_forwarded(values), &trusted);
        assert!(tls(&["for=192.0.2.1;proto=https"]));
        assert!(tls(&["proto=HTTPS;for=192.0.2.1"]));
        assert!(!tls(&["for=192.0.2.1;proto=http"]));
        assert!(!tls(&["for=192.0.2.1"]), "no proto=");
        assert!(
            !tls(&["proto=https, for=192.0.2.1;proto=http"]),
            "the right-most element's"
        );
        assert!(tls(&["for=192.0.2.1;proto=http, for=10.0.0.1;proto=https"]));
        assert!(
            !behind_tls(A, &with_forwarded(&["proto=https"]), &trusted),
            "A is no proxy"
        );
        // `Forwarded` without proto= is not overridden by X-Forwarded-Proto.
        let mut both = with_forwarded(&["for=192.0.2.1"]);
        both.append(X_FORWARDED_PROTO, "https".parse().unwrap());
        assert!(!behind_tls(proxy, &both, &trusted));
    }
}
