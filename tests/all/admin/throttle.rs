//! Guessing tokens: an address that fails `[admin] failed_auth_limit`
//! times within a minute is refused (429, `Retry-After`) for the rest of
//! it, whatever token it sends, on the API and the web screen's login.

use ward_testkit::*;

use super::client::{AdminProc, OPERATOR, VIEWER, post_form, request, request_with};
use super::config_with_admin;

/// `Retry-After`'s seconds in a response's head.
fn retry_after(response: &str) -> Option<u64> {
    let head = response.split("\r\n\r\n").next().unwrap_or_default();
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
    let headers = [("X-Forwarded-For", client)];
    request_with(port, "GET", "/v1/whoami", Some(token), &headers, "").status
}

/// `POST /ui/login` with `token`, as the screen's form sends it: the
/// status and what came back.
fn login(port: u16, token: &str) -> (u16, String) {
    login_with(port, token, "http", &[])
}

/// `POST /ui/login` with `token` from a page of `scheme`, with `headers`
/// besides the `Origin`.
fn login_with(port: u16, token: &str, scheme: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let origin = format!("{scheme}://127.0.0.1:{port}");
    let mut all = vec![("Origin", origin.as_str())];
    all.extend_from_slice(headers);
    post_form(port, "/ui/login", &all, &format!("token={token}"))
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
fn behind_trusted_proxies_each_forwarded_client_has_its_own_count() {
    let redis = Redis::start();
    let port = free_port();
    let _api = AdminProc::start(
        &config_with_admin(
            &redis,
            port,
            // A range: the test's requests come from 127.0.0.1, and the
            // inner proxy hop below (127.0.0.5) is skipped as trusted too.
            "failed_auth_limit = 2\ntrusted_proxies = [\"127.0.0.0/8\"]",
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
    // Two proxies in the trusted range: the client is the hop before them.
    assert_eq!(
        whoami_via_proxy(port, VIEWER.2, &format!("{guesser}, 127.0.0.5")),
        429,
        "a trusted inner proxy's hop is skipped"
    );
    assert_eq!(
        whoami_via_proxy(port, VIEWER.2, &format!("{other}, 127.0.0.5")),
        200
    );
    // A proxy that writes the standard `Forwarded` header instead.
    let forwarded = |client: &str| {
        let value = format!("for=\"{client}:4711\";proto=https, for=127.0.0.5");
        let headers = [("Forwarded", value.as_str())];
        request_with(port, "GET", "/v1/whoami", Some(VIEWER.2), &headers, "").status
    };
    assert_eq!(forwarded(guesser), 429, "the guesser, named by `Forwarded`");
    assert_eq!(forwarded(other), 200);
}

/// The `Set-Cookie` line of a login through a proxy that says the client
/// used `proto`.
fn login_cookie_via_proxy(port: u16, proto: &str) -> String {
    let (status, raw) = login_with(port, VIEWER.2, "https", &[("X-Forwarded-Proto", proto)]);
    assert_eq!(status, 303, "{raw}");
    raw.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {raw}"))
        .to_string()
}

#[test]
fn the_session_cookie_is_secure_when_a_trusted_proxy_says_the_browser_used_https() {
    let redis = Redis::start();
    let port = free_port();
    let _behind = AdminProc::start(
        &config_with_admin(&redis, port, "trusted_proxies = [\"127.0.0.1\"]"),
        port,
    );
    let cookie = login_cookie_via_proxy(port, "https");
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly; SameSite=Strict"), "{cookie}");
    let cookie = login_cookie_via_proxy(port, "http");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // The same said in the standard `Forwarded` header.
    for (value, secure) in [
        ("for=192.0.2.1;proto=https", true),
        ("for=192.0.2.1;proto=http", false),
    ] {
        let (status, raw) = login_with(port, VIEWER.2, "https", &[("Forwarded", value)]);
        assert_eq!(status, 303, "{raw}");
        assert_eq!(raw.contains("; Secure"), secure, "{value}: {raw}");
    }

    // From a peer that is no trusted proxy, the header is not believed.
    let other = free_port();
    let _direct = AdminProc::start(
        &config_with_admin(&redis, other, "trusted_proxies = [\"10.0.0.0/8\"]"),
        other,
    );
    let cookie = login_cookie_via_proxy(other, "https");
    assert!(!cookie.contains("Secure"), "{cookie}");
}
