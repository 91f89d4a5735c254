//! A Ward job plugin that delivers a webhook: one HTTP POST per attempt.
//!
//! The payload is a JSON object (unknown fields are an error, so a typo is
//! not silently ignored):
//!
//! | field     | required | meaning                                                              |
//! |-----------|----------|----------------------------------------------------------------------|
//! | `url`     | no       | where to POST: `http(s)://host[:port][/path][?query]`; without it, the secret `WEBHOOK_URL` |
//! | `body`    | yes      | any JSON; sent compactly (whitespace removed, key order and numbers as written) |
//! | `headers` | no       | extra request headers, `{"name": "value", ...}`                      |
//!
//! Every request carries `content-type: application/json` (a `content-type`
//! in `headers` replaces it), `content-length`, `idempotency-key: <key>` with the job's
//! idempotency key (the enqueuer's, else the job id: the same on every
//! attempt, so the receiver can drop a repeated delivery), and, when the job
//! type is granted the secret `WEBHOOK_TOKEN`, `authorization: Bearer <token>`.
//!
//! How an attempt ends:
//!
//! | what happened                         | outcome                                          |
//! |---------------------------------------|--------------------------------------------------|
//! | 2xx                                   | success; the result is the response body, cut to 4 KiB |
//! | 3xx                                   | permanent `http-3xx`: redirects are not followed  |
//! | 4xx, 5xx                              | as [`ward_plugin_sdk::http::classify`]: 408, 5xx transient; 429 recoverable; others permanent; `Retry-After` passed on |
//! | no response (timeout, refused, reset) | transient (`timeout`, `connect-error`, `http-error`) |
//! | host:port not in the job's `http.allow` | permanent `http-denied`                         |
//! | payload unusable                      | permanent `invalid-payload`                      |
//!
//! Failures caused by the receiver name its host (without the port) as the
//! upstream. The plugin logs one line per request: method, host and status,
//! at debug for a 2xx (as Ward logs a successful attempt) and at info
//! otherwise. Never the URL's path or query (webhook URLs often carry a
//! secret there), the headers or the body.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Deserialize;
use serde_json::value::RawValue;
use ward_plugin_sdk::{Failure, Job, fetch, http, log, secret};

/// The secret used as the URL when the payload has none.
const URL_SECRET: &str = "WEBHOOK_URL";
/// The secret sent as `authorization: Bearer <token>` when granted.
const TOKEN_SECRET: &str = "WEBHOOK_TOKEN";
/// The most of a response body kept as the job's result.
const MAX_RESULT: usize = 4 << 10;
/// The failure code for a payload this plugin cannot deliver.
const INVALID_PAYLOAD: &str = "invalid-payload";
/// Headers the host refuses from plugins (`wasmtime_wasi_http`'s defaults):
/// they belong to the connection, not to the request.
const CONNECTION_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
    "http2-settings",
];

/// What the payload asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    /// Where to POST; `None`: the `WEBHOOK_URL` secret.
    url: Option<String>,
    /// What to POST, exactly as the enqueuer wrote it.
    body: Box<RawValue>,
    /// Extra request headers.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// A request, checked and ready to send.
#[derive(Debug, PartialEq, Eq)]
struct Prepared {
    /// The URL without its fragment (fragments are never sent).
    url: String,
    /// The URL's host, lower case, without port or brackets: the upstream
    /// the receiver's failures count against.
    host: String,
    /// Names (lower case) and values, in the order they are sent.
    headers: Vec<(String, String)>,
    /// The compact JSON body.
    body: Vec<u8>,
}

fn handle(job: Job) -> Result<Vec<u8>, Failure> {
    let delivery: Delivery = job.json()?;
    // `secret` is `None` for a name the job type is not granted.
    let url_secret = match delivery.url {
        Some(_) => None,
        None => secret(URL_SECRET),
    };
    let token = secret(TOKEN_SECRET);
    let key = job.idempotency_key.as_deref().unwrap_or(&job.id);
    let prepared = prepare(delivery, url_secret, token.as_deref(), key)?;

    let host = prepared.host;
    let mut request = fetch::Request::post(&prepared.url, prepared.body);
    for (name, value) in &prepared.headers {
        request = request.header(name, value);
    }
    match request.send() {
        Ok(response) => {
            // As Ward logs attempts: a delivery at debug, so a busy queue
            // does not drown the log; anything else at info.
            let line = format!("POST {host}: HTTP {}", response.status);
            if (200..300).contains(&response.status) {
                log::debug(&line);
            } else {
                log::info(&line);
            }
            outcome(&host, &response, SystemTime::now())
        }
        Err(e) => {
            log::info(&format!("POST {host}: no response: {e}"));
            Err(e.into_failure(&host))
        }
    }
}

/// A permanent `invalid-payload` failure.
fn invalid(message: String) -> Failure {
    Failure::permanent(message).code(INVALID_PAYLOAD)
}

/// Checks the delivery and builds its request: URL (the payload's, else the
/// `WEBHOOK_URL` secret's), headers and body. `token` is the
/// `WEBHOOK_TOKEN` secret, `key` the job's idempotency key.
fn prepare(
    delivery: Delivery,
    url_secret: Option<String>,
    token: Option<&str>,
    key: &str,
) -> Result<Prepared, Failure> {
    let (url, host) = match (delivery.url, url_secret) {
        (Some(url), _) => split_url(&url).map_err(|why| invalid(format!("`url` `{url}` {why}")))?,
        // The secret's value stays out of the message (the host would redact
        // it anyway, but the message should not depend on that).
        (None, Some(url)) => split_url(&url).map_err(|why| {
            Failure::permanent(format!(
                "the secret {URL_SECRET} is not a webhook URL: it {why}"
            ))
            .code("invalid-url")
        })?,
        (None, None) => {
            return Err(invalid(format!(
                "the payload has no `url`, and the job type is not granted the secret \
                 {URL_SECRET} to use instead"
            )));
        }
    };
    let token = token.filter(|t| !t.is_empty());
    if token.is_some_and(|t| !valid_value(t)) {
        return Err(Failure::permanent(format!(
            "the secret {TOKEN_SECRET} cannot be sent in a header: it has a line break or \
             another control character"
        ))
        .code("invalid-secret"));
    }

    let mut headers = Vec::with_capacity(delivery.headers.len() + 4);
    for (name, value) in delivery.headers {
        let lower = name.to_ascii_lowercase();
        check_header(&lower, &value, token.is_some())
            .map_err(|why| invalid(format!("header `{name}` {why}")))?;
        headers.push((lower, value));
    }
    if !headers.iter().any(|(name, _)| name == "content-type") {
        headers.insert(0, ("content-type".into(), "application/json".into()));
    }
    if !valid_value(key) {
        return Err(invalid(
            "the idempotency key cannot be sent in a header: it has a line break or another \
             control character"
                .into(),
        ));
    }
    headers.push(("idempotency-key".into(), key.into()));
    if let Some(token) = token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    let body = compact(delivery.body.get()).into_bytes();
    // Without it the body goes out chunked, which some receivers (and
    // simple frameworks that read `Content-Length`) do not accept.
    headers.push(("content-length".into(), body.len().to_string()));
    Ok(Prepared {
        url,
        host,
        headers,
        body,
    })
}

/// Why a header from the payload cannot be sent, if it cannot. `name` is
/// lower case.
fn check_header(name: &str, value: &str, token: bool) -> Result<(), &'static str> {
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(tchar) {
        return Err("is not a valid header name");
    }
    if name == "idempotency-key" {
        return Err(
            "is set from the job's idempotency key; give the key at enqueue instead \
                    (ward enqueue --idempotency-key)",
        );
    }
    if name == "content-length" {
        return Err("is set from the body");
    }
    if name == "authorization" && token {
        return Err(
            "would clash with the one the WEBHOOK_TOKEN secret gives this job type; leave it out",
        );
    }
    if CONNECTION_HEADERS.contains(&name) {
        return Err("belongs to the connection; plugins cannot set it");
    }
    if !valid_value(value) {
        return Err("has a line break or another control character in its value");
    }
    Ok(())
}

/// Whether `value` can be a header value: no control characters but tab.
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Splits an `http(s)` URL into the URL to send (without its fragment) and
/// its host (lower case, without port or IPv6 brackets), or says what is
/// wrong with it.
fn split_url(url: &str) -> Result<(String, String), &'static str> {
    const SCHEME: &str = "does not start with http:// or https://";
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    let (scheme, rest) = url.split_once("://").ok_or(SCHEME)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(SCHEME);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("has whitespace or control characters in it");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "has a user name or password in it; send credentials as a header \
                    or with the WEBHOOK_TOKEN secret",
        );
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("has an unclosed `[` in its host")?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or("has junk after its host")?),
                ),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !authority.starts_with('[') && host.contains(':') {
        return Err("has a `:` in its host; write an IPv6 address in brackets");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has a port that is not a number from 0 to 65535");
    }
    Ok((url.to_string(), host.to_ascii_lowercase()))
}

/// `json` (valid JSON) without the whitespace between its tokens.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// What a response means for the attempt: the receiver's failures are
/// counted against `host`.
fn outcome(host: &str, response: &fetch::Response, now: SystemTime) -> Result<Vec<u8>, Failure> {
    let status = response.status;
    // `http::classify` counts 3xx as success because clients usually follow
    // redirects; `fetch` does not, so the body never reached its target.
    if (300..400).contains(&status) {
        return Err(Failure::permanent(format!(
            "HTTP {status}: the receiver redirects, and a webhook does not follow redirects; \
             point the URL at the final address"
        ))
        .code(format!("http-{status}"))
        .upstream(host));
    }
    http::classify_upstream(host, status, response.header("retry-after"), now)?;
    Ok(truncated(&response.body, MAX_RESULT))
}

/// The first `max` bytes of `body`; when those end inside a UTF-8
/// character of a text body, up to the character before it.
fn truncated(body: &[u8], max: usize) -> Vec<u8> {
    let Some(head) = body.get(..max) else {
        return body.to_vec();
    };
    match std::str::from_utf8(head) {
        Err(e) if e.error_len().is_none() => head[..e.valid_up_to()].to_vec(),
        _ => head.to_vec(),
    }
}

ward_plugin_sdk::plugin!(handle);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ward_plugin_sdk::FailureClass;

    use super::*;

    fn delivery(json: &str) -> Delivery {
        serde_json::from_str(json).unwrap()
    }

    fn prepared(json: &str, token: Option<&str>) -> Result<Prepared, Failure> {
        prepare(delivery(json), None, token, "key-1")
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> fetch::Response {
        fetch::Response {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn a_delivery_gets_json_type_key_and_token_headers() {
        let p = prepared(
            r#"{"url":"http://127.0.0.1:8080/hook?x=1#frag","body":{"b": [1, 2.50], "a": "x y"},"headers":{"X-A":"b"}}"#,
            Some("tok"),
        )
        .unwrap();
        assert_eq!(p.url, "http://127.0.0.1:8080/hook?x=1");
        assert_eq!(p.host, "127.0.0.1");
        assert_eq!(p.body, br#"{"b":[1,2.50],"a":"x y"}"#);
        let headers: Vec<(&str, &str)> = p
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            headers,
            [
                ("content-type", "application/json"),
                ("x-a", "b"),
                ("idempotency-key", "key-1"),
                ("authorization", "Bearer tok"),
                ("content-length", "24"),
            ]
        );
    }

    #[test]
    fn a_content_type_in_the_payload_replaces_the_default() {
        let p = prepared(
            r#"{"url":"https://h/","body":null,"headers":{"Content-Type":"application/cloudevents+json"}}"#,
            None,
        )
        .unwrap();
        assert_eq!(
            p.headers,
            [
                (
                    "content-type".to_string(),
                    "application/cloudevents+json".to_string()
                ),
                ("idempotency-key".to_string(), "key-1".to_string()),
                ("content-length".to_string(), "4".to_string()),
            ]
        );
        assert_eq!(p.body, b"null");
    }

    #[test]
    fn the_url_secret_is_used_only_without_a_url() {
        let secret = Some("https://Hooks.Example.com:8443/p/s3cret".to_string());
        let p = prepare(delivery(r#"{"body":{}}"#), secret.clone(), None, "k").unwrap();
        assert_eq!(
            (p.url.as_str(), p.host.as_str()),
            (
                "https://Hooks.Example.com:8443/p/s3cret",
                "hooks.example.com"
            )
        );
        let p = prepare(
            delivery(r#"{"url":"http://a/","body":{}}"#),
            secret,
            None,
            "k",
        )
        .unwrap();
        assert_eq!(p.host, "a");

        let f = prepare(delivery(r#"{"body":{}}"#), None, None, "k").unwrap_err();
        assert_eq!(f.error_code(), Some("invalid-payload"));
        assert!(f.message().contains("WEBHOOK_URL"), "{f}");

        let f = prepare(
            delivery(r#"{"body":{}}"#),
            Some("ftp://s3cret".into()),
            None,
            "k",
        )
        .unwrap_err();
        assert_eq!(f.error_code(), Some("invalid-url"));
        assert!(!f.message().contains("s3cret"), "{f}");
    }

    #[test]
    fn urls_name_their_host_as_the_upstream() {
        let host = |url: &str| split_url(url).map(|(_, h)| h);
        assert_eq!(host("http://127.0.0.1:8080/hook").unwrap(), "127.0.0.1");
        assert_eq!(host("HTTPS://API.example.com").unwrap(), "api.example.com");
        assert_eq!(host("http://h?q=1").unwrap(), "h");
        assert_eq!(host("http://[::1]:9000/x").unwrap(), "::1");
        assert_eq!(host("http://[::1]/x").unwrap(), "::1");
        for bad in [
            "127.0.0.1:8080/hook",
            "ftp://h/",
            "http://",
            "http:///path",
            "http://user:pw@h/",
            "http://h:99999/",
            "http://h:port/",
            "http://h /",
            "http://[::1/",
            "http://[::1]x/",
            "http://a:b:1/",
        ] {
            assert!(split_url(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn unusable_payloads_are_permanent_invalid_payload_failures() {
        for (json, token) in [
            (r#"{"url":"ftp://h/","body":{}}"#, None),
            (
                r#"{"url":"http://h/","body":{},"headers":{"idempotency-key":"x"}}"#,
                None,
            ),
            (
                r#"{"url":"http://h/","body":{},"headers":{"Content-Length":"3"}}"#,
                None,
            ),
            (
                r#"{"url":"http://h/","body":{},"headers":{"Host":"evil"}}"#,
                None,
            ),
            (
                r#"{"url":"http://h/","body":{},"headers":{"x a":"b"}}"#,
                None,
            ),
            (
                r#"{"url":"http://h/","body":{},"headers":{"x-a":"b\r\nx-b: c"}}"#,
                None,
            ),
            (
                r#"{"url":"http://h/","body":{},"headers":{"authorization":"Basic x"}}"#,
                Some("t"),
            ),
        ] {
            let f = prepared(json, token).unwrap_err();
            assert_eq!(f.class(), FailureClass::Permanent, "{json}");
            assert_eq!(f.error_code(), Some("invalid-payload"), "{json}: {f}");
        }
        // Without a token, the payload may bring its own authorization.
        assert!(
            prepared(
                r#"{"url":"http://h/","body":{},"headers":{"authorization":"Basic x"}}"#,
                None
            )
            .is_ok()
        );
        // The payload's shape is checked by `job.json()` against `Delivery`.
        for bad in [
            r#"{"url":"http://h/"}"#,
            r#"{"url":"http://h/","body":1,"boby":2}"#,
        ] {
            assert!(serde_json::from_str::<Delivery>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_showing_it() {
        let f = prepared(r#"{"url":"http://h/","body":{}}"#, Some("tok\nen")).unwrap_err();
        assert_eq!(f.error_code(), Some("invalid-secret"));
        assert!(!f.message().contains("tok"), "{f}");
        // An empty token sends no authorization at all.
        let p = prepared(r#"{"url":"http://h/","body":{}}"#, Some("")).unwrap();
        assert!(p.headers.iter().all(|(n, _)| n != "authorization"));
    }

    #[test]
    fn responses_are_classified_against_the_host() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            outcome("h", &response(200, &[], b"thanks"), now).unwrap(),
            b"thanks"
        );
        assert_eq!(outcome("h", &response(204, &[], b""), now).unwrap(), b"");

        let f = outcome("h", &response(503, &[], b""), now).unwrap_err();
        assert_eq!(
            (f.class(), f.error_code(), f.upstream_name()),
            (FailureClass::Transient, Some("http-503"), Some("h"))
        );
        let f = outcome("h", &response(429, &[("Retry-After", "1")], b""), now).unwrap_err();
        assert_eq!(
            (f.class(), f.error_code(), f.retry_after_ms()),
            (FailureClass::Recoverable, Some("http-429"), Some(1000))
        );
        let f = outcome("h", &response(400, &[], b"bad"), now).unwrap_err();
        assert_eq!(
            (f.class(), f.error_code()),
            (FailureClass::Permanent, Some("http-400"))
        );
        let f = outcome("h", &response(302, &[("location", "/x")], b""), now).unwrap_err();
        assert_eq!(
            (f.class(), f.error_code(), f.upstream_name()),
            (FailureClass::Permanent, Some("http-302"), Some("h"))
        );
    }

    #[test]
    fn results_are_cut_to_4_kib_on_a_character_boundary() {
        let long = "é".repeat(3000); // 6000 bytes, two per character
        let kept = outcome("h", &response(200, &[], long.as_bytes()), SystemTime::now()).unwrap();
        assert_eq!(kept.len(), MAX_RESULT);
        let odd = format!("x{long}");
        let kept = truncated(odd.as_bytes(), MAX_RESULT);
        assert_eq!(kept.len(), MAX_RESULT - 1);
        assert!(std::str::from_utf8(&kept).is_ok());
        let binary = vec![0xff; 5000];
        assert_eq!(truncated(&binary, MAX_RESULT).len(), MAX_RESULT);
        assert_eq!(truncated(b"short", MAX_RESULT), b"short");
    }

    #[test]
    fn compact_keeps_strings_and_drops_whitespace_between_tokens() {
        assert_eq!(
            compact("{ \"a b\" : [ 1 ,\n 2 ], \"q\": \"say \\\"hi \\\\\" , \"t\":\ttrue }"),
            r#"{"a b":[1,2],"q":"say \"hi \\","t":true}"#
        );
    }
}
