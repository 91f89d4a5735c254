//! Turning HTTP responses and transport errors into the right [`Failure`].
//!
//! A plugin that calls an HTTP API has to decide, for every response, whether
//! the attempt succeeded and, if not, how the host should retry it. These
//! helpers encode the usual answer once, so every plugin answers the same way:
//!
//! | response                               | outcome      | code           | `retry-after-ms`        |
//! |----------------------------------------|--------------|----------------|-------------------------|
//! | 200–399 (success, redirect, not modified) | `Ok(())`  | —              | —                       |
//! | 408 Request Timeout                    | transient    | `http-408`     | —                       |
//! | 429 Too Many Requests                  | recoverable  | `http-429`     | from `Retry-After`, if valid |
//! | any other 400–499                      | permanent    | `http-<status>` | —                      |
//! | 501 Not Implemented                    | permanent    | `http-501`     | —                       |
//! | 503 Service Unavailable                | transient    | `http-503`     | from `Retry-After`, if valid |
//! | any other 500–599 (500, 502, 504, …)   | transient    | `http-<status>` | —                      |
//! | 100–199, or outside 100–599            | permanent    | `http-<status>` | —                      |
//!
//! and for a request that got no response at all ([`classify_error`]):
//!
//! | [`ErrorKind`]            | outcome   | code               |
//! |--------------------------|-----------|--------------------|
//! | [`ErrorKind::Connect`]   | transient | `connect-error`    |
//! | [`ErrorKind::Timeout`]   | transient | `timeout`          |
//! | [`ErrorKind::Dns`]       | transient | `dns-error`        |
//! | [`ErrorKind::Reset`]     | transient | `connection-reset` |
//!
//! `Retry-After` ([RFC 9110 §10.2.3]) is either a number of seconds
//! (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`; the obsolete
//! RFC 850 and asctime forms are accepted too). A date in the past means
//! "now" (0 ms); a number too large for the clock saturates at `u64::MAX`
//! milliseconds; anything else is ignored rather than trusted, and the
//! failure's message says so. It is read only for 429 and 503, the two
//! responses the RFCs define it for. The host never waits longer than what is
//! left of the job's `max_elapsed` budget, whatever the upstream asks for.
//!
//! A 1xx is never a final response and a status outside 100–599 is not HTTP;
//! both mean a broken client or upstream, which retrying the same request
//! will not fix. A 3xx counts as success because HTTP clients follow
//! redirects themselves; a plugin that turns redirects off and needs the
//! target should check for 3xx before calling [`classify`].
//!
//! The helpers are pure: the caller passes in the current time, so they work
//! the same in a plugin (where `SystemTime::now()` reads the sandbox's clock)
//! and in a unit test.
//!
//! ```
//! use std::time::SystemTime;
//! use ward_plugin_sdk::{Failure, FailureClass, http};
//!
//! // What an HTTP client handed back: the status and the response headers.
//! let status = 429;
//! let headers = [("content-type", "application/json"), ("retry-after", "30")];
//!
//! let retry_after = http::retry_after_header(headers);
//! let outcome = http::classify_upstream("mailer", status, retry_after.as_deref(), SystemTime::now());
//!
//! let failure: Failure = outcome.unwrap_err();
//! assert_eq!(failure.class(), FailureClass::Recoverable);
//! assert_eq!(failure.error_code(), Some("http-429"));
//! assert_eq!(failure.upstream_name(), Some("mailer"));
//! assert_eq!(failure.retry_after_ms(), Some(30_000));
//! ```
//!
//! [RFC 9110 §10.2.3]: https://www.rfc-editor.org/rfc/rfc9110#field.retry-after

use std::time::{Duration, SystemTime};

use crate::failure::{Failure, FailureClass};

/// Classifies an HTTP response by its status code (see the [module
/// docs](self) for the table).
///
/// `retry_after` is the value of the response's `Retry-After` header, if it
/// had one (see [`retry_after_header`]); `now` is the current time, used to
/// turn an HTTP date into a delay.
///
/// # Errors
///
/// A [`Failure`] of the class the table gives, with code `http-<status>` and,
/// for 429 and 503 with a valid `Retry-After`, the upstream's delay.
pub fn classify(status: u16, retry_after: Option<&str>, now: SystemTime) -> Result<(), Failure> {
    let (class, note) = match status {
        200..=399 => return Ok(()),
        408 => (FailureClass::Transient, None),
        429 => (FailureClass::Recoverable, None),
        400..=499 | 501 => (FailureClass::Permanent, None),
        500..=599 => (FailureClass::Transient, None),
        100..=199 => (
            FailureClass::Permanent,
            Some("an informational status is not a final response"),
        ),
        _ => (
            FailureClass::Permanent,
            Some("not an HTTP status code (100 to 599)"),
        ),
    };
    let mut message = match reason(status) {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    };
    if let Some(note) = note {
        message = format!("{message}: {note}");
    }
    // RFC 9110 and RFC 6585 give Retry-After a meaning on these two only.
    let mut delay = None;
    if let (429 | 503, Some(value)) = (status, retry_after) {
        delay = parse_retry_after(value, now);
        if delay.is_none() {
            message = format!(
                "{message} (ignored an invalid Retry-After: `{}`)",
                value.escape_debug()
            );
        }
    }
    let failure = Failure::new(class, message).code(format!("http-{status}"));
    Err(match delay {
        Some(delay) => failure.retry_after(delay),
        None => failure,
    })
}

/// [`classify`], with the failure counted against `upstream`'s circuit
/// breaker (the [`Failure::upstream`] it names).
///
/// # Errors
///
/// As [`classify`], with [`Failure::upstream_name`] set to `upstream`.
pub fn classify_upstream(
    upstream: &str,
    status: u16,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Result<(), Failure> {
    classify(status, retry_after, now).map_err(|failure| failure.upstream(upstream))
}

/// Parses a `Retry-After` value into how long to wait from `now`.
///
/// Accepts delta-seconds (`120`; a number too large saturates at
/// `u64::MAX` seconds) and HTTP dates in the three forms of RFC 9110
/// (`Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`,
/// `Sun Nov  6 08:49:37 1994`). A date at or before `now` gives
/// [`Duration::ZERO`]. Surrounding whitespace is ignored.
///
/// Returns `None` for anything else: empty, negative, fractional, signed
/// (`+5`), or not a date.
#[must_use]
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Only digits, so the one way parsing can fail is overflow.
        let seconds = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Finds the `Retry-After` header among a response's headers.
///
/// Header names are compared case-insensitively; the first match wins. A
/// value that is not UTF-8 counts as absent. Works with whatever pairs an
/// HTTP client hands back: `(&str, &str)`, `(String, Vec<u8>)`,
/// `(&String, &[u8])`, …
#[must_use]
pub fn retry_after_header<I, N, V>(headers: I) -> Option<String>
where
    I: IntoIterator<Item = (N, V)>,
    N: AsRef<str>,
    V: AsRef<[u8]>,
{
    headers
        .into_iter()
        .find(|(name, _)| name.as_ref().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| String::from_utf8(value.as_ref().to_vec()).ok())
}

/// Why a request got no HTTP response at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The connection could not be made (refused, unreachable, TLS handshake cut off).
    Connect,
    /// No (complete) response arrived in time.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection was reset or closed before the response was complete.
    Reset,
}

impl ErrorKind {
    /// The failure code [`classify_error`] gives this kind: `connect-error`,
    /// `timeout`, `dns-error` or `connection-reset`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Connect => "connect-error",
            Self::Timeout => "timeout",
            Self::Dns => "dns-error",
            Self::Reset => "connection-reset",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Connect => "could not connect to the upstream",
            Self::Timeout => "the upstream did not answer in time",
            Self::Dns => "the upstream's host name did not resolve",
            Self::Reset => "the connection to the upstream was reset",
        }
    }
}

/// Classifies a request that failed without a response: always transient,
/// with the kind's [code](ErrorKind::code).
///
/// Chain [`Failure::upstream`] to count it against the upstream's breaker.
/// For a message with the client's own explanation, build the failure
/// yourself: `Failure::transient(format!("..: {e}")).code(kind.code())`.
///
/// Retrying is only safe when the request is idempotent or carries the job's
/// idempotency key: after a timeout or a reset, the upstream may have
/// applied the request even though no answer came back.
#[must_use]
pub fn classify_error(kind: ErrorKind) -> Failure {
    Failure::transient(kind.message()).code(kind.code())
}

/// The reason phrase RFC 9110 (or RFC 6585, for 429) gives a status that
/// [`classify`] reports as a failure, for messages.
fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return None,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A panic is how a test reports a wrong result.
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use FailureClass::{Permanent, Recoverable, Transient};

    /// 2023-11-14T22:13:20Z, a Tuesday.
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// What a row of the table expects.
    #[derive(Debug, PartialEq)]
    enum Want {
        Ok,
        Fail(FailureClass, Option<u64>),
    }
    use Want::{Fail, Ok as Success};

    #[test]
    fn every_status_rule() {
        let table: &[(u16, Option<&str>, Want)] = &[
            (200, None, Success),
            (204, None, Success),
            (301, None, Success),
            (304, None, Success),
            (399, None, Success),
            (400, None, Fail(Permanent, None)),
            (401, None, Fail(Permanent, None)),
            (403, None, Fail(Permanent, None)),
            (404, None, Fail(Permanent, None)),
            (408, None, Fail(Transient, None)),
            (409, None, Fail(Permanent, None)),
            (422, None, Fail(Permanent, None)),
            (499, None, Fail(Permanent, None)),
            (429, Some("120"), Fail(Recoverable, Some(120_000))),
            (429, Some("0"), Fail(Recoverable, Some(0))),
            // now + 2 min, in each of the three date forms.
            (
                429,
                Some("Tue, 14 Nov 2023 22:15:20 GMT"),
                Fail(Recoverable, Some(120_000)),
            ),
            (
                429,
                Some("Tuesday, 14-Nov-23 22:15:20 GMT"),
                Fail(Recoverable, Some(120_000)),
            ),
            (
                429,
                Some("Tue Nov 14 22:15:20 2023"),
                Fail(Recoverable, Some(120_000)),
            ),
            // A date in the past means "now".
            (
                429,
                Some("Tue, 14 Nov 2023 22:13:00 GMT"),
                Fail(Recoverable, Some(0)),
            ),
            (
                429,
                Some("Sun, 06 Nov 1994 08:49:37 GMT"),
                Fail(Recoverable, Some(0)),
            ),
            (429, None, Fail(Recoverable, None)),
            (500, None, Fail(Transient, None)),
            (500, Some("30"), Fail(Transient, None)),
            (501, None, Fail(Permanent, None)),
            (501, Some("30"), Fail(Permanent, None)),
            (502, None, Fail(Transient, None)),
            (503, None, Fail(Transient, None)),
            (503, Some("30"), Fail(Transient, Some(30_000))),
            (
                503,
                Some("Tue, 14 Nov 2023 22:13:21 GMT"),
                Fail(Transient, Some(1000)),
            ),
            (504, None, Fail(Transient, None)),
            (505, None, Fail(Transient, None)),
            (599, None, Fail(Transient, None)),
            (100, None, Fail(Permanent, None)),
            (199, None, Fail(Permanent, None)),
            (0, None, Fail(Permanent, None)),
            (99, None, Fail(Permanent, None)),
            (600, None, Fail(Permanent, None)),
            (999, None, Fail(Permanent, None)),
        ];
        for (status, retry_after, want) in table {
            let got = match classify(*status, *retry_after, now()) {
                Ok(()) => Success,
                Err(f) => {
                    let code = format!("http-{status}");
                    assert_eq!(f.error_code(), Some(code.as_str()), "{status}: {f}");
                    assert_eq!(f.upstream_name(), None, "{status}: {f}");
                    Fail(f.class(), f.retry_after_ms())
                }
            };
            assert_eq!(&got, want, "status {status}, Retry-After {retry_after:?}");
        }
    }

    #[test]
    fn an_invalid_retry_after_is_ignored_and_named_in_the_message() {
        for value in [
            "",
            " ",
            "soon",
            "-5",
            "+5",
            "1.5",
            "1e3",
            "0x10",
            "12 34",
            "１２",
            "Tue, 14 Nov 2023 25:00:00 GMT",
            "Tue, 32 Nov 2023 22:15:20 GMT",
            "2023-11-14T22:15:20Z",
            "\u{0}",
        ] {
            for (status, class) in [(429, Recoverable), (503, Transient)] {
                let f = classify(status, Some(value), now()).unwrap_err();
                assert_eq!(f.class(), class, "{value:?}");
                assert_eq!(f.retry_after_ms(), None, "{value:?}");
                let code = format!("http-{status}");
                assert_eq!(f.error_code(), Some(code.as_str()), "{value:?}");
                assert!(
                    f.message().contains("ignored an invalid Retry-After"),
                    "{value:?}: {f}"
                );
            }
        }
    }

    #[test]
    fn a_huge_retry_after_saturates() {
        for value in ["18446744073709551615", "99999999999999999999999999999999"] {
            let f = classify(429, Some(value), now()).unwrap_err();
            assert_eq!(f.retry_after_ms(), Some(u64::MAX), "{value}");
        }
        // Large, but still representable in milliseconds.
        let f = classify(429, Some("1000000000000"), now()).unwrap_err();
        assert_eq!(f.retry_after_ms(), Some(1_000_000_000_000_000));
        assert_eq!(
            parse_retry_after("99999999999999999999", now()),
            Some(Duration::from_secs(u64::MAX))
        );
    }

    #[test]
    fn retry_after_ignores_surrounding_whitespace() {
        assert_eq!(
            parse_retry_after(" 7\t", now()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("  Tue, 14 Nov 2023 22:13:30 GMT ", now()),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn messages_name_the_status_and_its_reason() {
        let f = classify(503, None, now()).unwrap_err();
        assert_eq!(f.message(), "HTTP 503 Service Unavailable");
        let f = classify(418, None, now()).unwrap_err();
        assert_eq!(f.message(), "HTTP 418");
        let f = classify(103, None, now()).unwrap_err();
        assert!(f.message().contains("not a final response"), "{f}");
        let f = classify(700, None, now()).unwrap_err();
        assert!(f.message().contains("not an HTTP status code"), "{f}");
    }

    #[test]
    fn classify_upstream_names_the_upstream_on_failures_only() {
        assert_eq!(classify_upstream("mailer", 202, None, now()), Ok(()));
        let f = classify_upstream("mailer", 429, Some("5"), now()).unwrap_err();
        assert_eq!(f.upstream_name(), Some("mailer"));
        assert_eq!(f.error_code(), Some("http-429"));
        assert_eq!(f.retry_after_ms(), Some(5000));
        let f = classify_upstream("crm", 404, None, now()).unwrap_err();
        assert_eq!((f.class(), f.upstream_name()), (Permanent, Some("crm")));
    }

    #[test]
    fn transport_errors_are_transient_with_their_codes() {
        let table = [
            (ErrorKind::Connect, "connect-error"),
            (ErrorKind::Timeout, "timeout"),
            (ErrorKind::Dns, "dns-error"),
            (ErrorKind::Reset, "connection-reset"),
        ];
        for (kind, code) in table {
            let f = classify_error(kind);
            assert_eq!(f.class(), Transient, "{kind:?}");
            assert_eq!(f.error_code(), Some(code), "{kind:?}");
            assert_eq!(kind.code(), code);
            assert_eq!(f.retry_after_ms(), None);
            assert!(!f.message().is_empty());
        }
        let f = classify_error(ErrorKind::Timeout).upstream("mailer");
        assert_eq!(f.upstream_name(), Some("mailer"));
    }

    #[test]
    fn the_retry_after_header_is_found_whatever_its_case() {
        let headers = [
            ("Content-Type", "text/plain"),
            ("RETRY-AFTER", "12"),
            ("retry-after", "99"),
        ];
        assert_eq!(retry_after_header(headers).as_deref(), Some("12"));
        let owned: Vec<(String, Vec<u8>)> = vec![(
            "retry-after".into(),
            b"Tue, 14 Nov 2023 22:15:20 GMT".to_vec(),
        )];
        assert_eq!(
            retry_after_header(owned.iter().map(|(n, v)| (n, v))).as_deref(),
            Some("Tue, 14 Nov 2023 22:15:20 GMT")
        );
        assert_eq!(retry_after_header([("date", "x")]), None);
        assert_eq!(retry_after_header([("retry-after", &b"\xff"[..])]), None);
        assert_eq!(retry_after_header(Vec::<(&str, &str)>::new()), None);
    }
}
