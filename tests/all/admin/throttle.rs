//! Guessing tokens: an address that fails `[admin] failed_auth_limit`
//! times within a minute is refused (429, `Retry-After`) for the rest of
//! it, whatever token it sends, on the API and the web screen's login.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use ward_testkit::*;

use super::client::{AdminProc, OPERATOR, VIEWER, request};
use super::config_with_admin;

/// `Retry-After`'s seconds in a response head.
fn retry_after(head: &str) -> Option<u64> {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(str::to_string)
        })
        .and_then(|v| v.trim().parse().ok())
}

/// `GET /v1/whoami` with `token`, as a proxy passes on a request of
/// `client`: the status.
fn whoami_via_proxy(port: u16, token: &str, client: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nX-Forwarded-For: {client}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"))
}

/// `POST /ui/login` with `token`, as the screen's form sends it: the
/// status and the response head.
fn login(port: u16, token: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = format!("token={token}");
    write!(
        s,
        "POST /ui/login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let head = raw.split("\r\n\r\n").next().unwrap_or("").to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
    (status, head)
}

#[test]
fn an_address_that_fails_too_often_is_refused_for_the_rest_of_the_minute_whatever_it_sends() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(
        &config_with_admin(&redis, port, "failed_auth_limit = 3"),
        port,
    );
    let whoami = |token: Option<&str>| request(port, "GET", "/v1/whoami", token, "");

    // Two mistakes, then the right token: the count starts again.
    assert_eq!(whoami(Some("wrong-1")).status, 401);
    assert_eq!(login(port, "wrong-2").0, 401, "the login form counts too");
    assert_eq!(whoami(Some(VIEWER.2)).status, 200);
    // Three more reach the limit.
    for guess in ["wrong-3", "wrong-4"] {
        assert_eq!(whoami(Some(guess)).status, 401);
    }
    assert_eq!(login(port, "wrong-5").0, 401);

    // Now even a right token is refused, on the API and at the login.
    let refused = whoami(Some(OPERATOR.2));
    assert_eq!(refused.status, 429, "{}", refused.text);
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("failed_auth_limit"), "{error}");
    let wait =
        retry_after(&refused.head).unwrap_or_else(|| panic!("no Retry-After: {}", refused.head));
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        whoami(Some("wrong-6")).status,
        429,
        "a guess gets no answer either"
    );
    let (status, head) = login(port, OPERATOR.2);
    assert_eq!(status, 429, "{head}");
    assert!(
        retry_after(&head).is_some_and(|w| (1..=60).contains(&w)),
        "{head}"
    );
    // A request with no token is no guess: still told to send one.
    assert_eq!(whoami(None).status, 401);
}

#[test]
fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_count() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(
        &config_with_admin(
            &redis,
            port,
            "failed_auth_limit = 2\ntrusted_proxies = [\"127.0.0.1\"]",
        ),
        port,
    );
    let guesser = "203.0.113.7";
    let other = "203.0.113.8";
    assert_eq!(whoami_via_proxy(port, "wrong-1", guesser), 401);
    assert_eq!(whoami_via_proxy(port, "wrong-2", guesser), 401);
    assert_eq!(
        whoami_via_proxy(port, VIEWER.2, guesser),
        429,
        "the guesser is refused"
    );
    assert_eq!(
        whoami_via_proxy(port, VIEWER.2, other),
        200,
        "another client behind the same proxy is not"
    );
    // What a client writes before the proxy's hop is not believed.
    assert_eq!(
        whoami_via_proxy(port, VIEWER.2, &format!("{other}, {guesser}")),
        429
    );
}
