//! Outbound HTTP from a plugin, through the host's `wasi:http`.
//!
//! The host only lets requests through to the `host:port` pairs in the job
//! type's `http.allow` list, with its own timeout; anything else fails here
//! with [`FetchError::Denied`]. The call blocks the attempt until the whole
//! response has arrived.
//!
//! ```no_run
//! use ward_plugin_sdk::{fetch, Failure, Job};
//!
//! fn handle(job: Job) -> Result<Vec<u8>, Failure> {
//!     let response = fetch::Request::post("https://api.mailer.example/v1/send", job.payload.clone())
//!         .header("content-type", "application/json")
//!         .send()
//!         .map_err(|e| e.into_failure("mailer"))?;
//!     Ok(response.body)
//! }
//! ```

use std::fmt;

use crate::Failure;

/// An HTTP request to send.
#[derive(Debug, Clone)]
#[must_use]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// A response, read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive), as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `http(s)://host[:port][/path]`.
    InvalidUrl(String),
    /// The host refused it: the authority is not in the job's `http.allow`.
    Denied(String),
    /// No response within the host's timeout.
    Timeout(String),
    /// Could not connect, or the connection broke.
    Connection(String),
    /// Anything else the host reported.
    Other(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::InvalidUrl(m) => write!(f, "invalid URL: {m}"),
            FetchError::Denied(m) => {
                write!(f, "request denied by the host (not in http.allow): {m}")
            }
            FetchError::Timeout(m) => write!(f, "timed out: {m}"),
            FetchError::Connection(m) => write!(f, "connection failed: {m}"),
            FetchError::Other(m) => write!(f, "HTTP error: {m}"),
        }
    }
}

impl std::error::Error for FetchError {}

impl FetchError {
    /// The failure to report for this error: timeouts and connection
    /// problems are transient, a denied or malformed request permanent
    /// (retrying cannot fix the config). `upstream` names the dependency.
    pub fn into_failure(self, upstream: &str) -> Failure {
        let message = self.to_string();
        let failure = match self {
            FetchError::Timeout(_) => Failure::transient(message).code("timeout"),
            FetchError::Connection(_) => Failure::transient(message).code("connect-error"),
            FetchError::Other(_) => Failure::transient(message).code("http-error"),
            FetchError::Denied(_) => Failure::permanent(message).code("http-denied"),
            FetchError::InvalidUrl(_) => Failure::permanent(message).code("invalid-url"),
        };
        failure.upstream(upstream)
    }
}

/// The parts of an absolute URL the request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    authority: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, FetchError> {
    let invalid = || FetchError::InvalidUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(invalid()),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid());
    }
    Ok(Target {
        https,
        authority: authority.to_string(),
        path,
    })
}

impl Request {
    /// A request with `method` (e.g. `"GET"`) to `url`.
    pub fn new(method: &str, url: &str) -> Request {
        Request {
            method: method.to_ascii_uppercase(),
            url: url.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A GET request.
    pub fn get(url: &str) -> Request {
        Request::new("GET", url)
    }

    /// A POST request with `body`.
    pub fn post(url: &str, body: impl Into<Vec<u8>>) -> Request {
        Request::new("POST", url).body(body)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Request {
        self.headers
            .push((name.to_string(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The method, upper case.
    #[must_use]
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends the request and reads the whole response.
    ///
    /// # Errors
    /// [`FetchError`] when no response arrived.
    pub fn send(self) -> Result<Response, FetchError> {
        let target = parse_url(&self.url)?;
        imp::send(&self, &target)
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasip2::io::streams::StreamError;

    use super::{FetchError, Request, Response, Target};

    fn error(code: ErrorCode) -> FetchError {
        let text = format!("{code:?}");
        match code {
            ErrorCode::HttpRequestDenied => FetchError::Denied(text),
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout => FetchError::Timeout(text),
            ErrorCode::DnsTimeout
            | ErrorCode::DnsError(_)
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::TlsProtocolError
            | ErrorCode::TlsAlertReceived(_) => FetchError::Connection(text),
            _ => FetchError::Other(text),
        }
    }

    pub(super) fn send(req: &Request, target: &Target) -> Result<Response, FetchError> {
        let other = |what: &str| FetchError::Other(what.to_string());
        let headers = Fields::from_list(&req.headers)
            .map_err(|e| FetchError::Other(format!("bad header: {e:?}")))?;
        let outgoing = OutgoingRequest::new(headers);
        let method = match req.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other_method => Method::Other(other_method.to_string()),
        };
        outgoing
            .set_method(&method)
            .map_err(|()| other("bad method"))?;
        let scheme = if target.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| other("bad scheme"))?;
        outgoing
            .set_authority(Some(&target.authority))
            .map_err(|()| FetchError::InvalidUrl(target.authority.clone()))?;
        outgoing
            .set_path_with_query(Some(&target.path))
            .map_err(|()| FetchError::InvalidUrl(target.path.clone()))?;
        let body = outgoing.body().map_err(|()| other("body already taken"))?;
        let future = outgoing_handler::handle(outgoing, None).map_err(error)?;
        // A refused or failed request shows up first as a closed body stream;
        // the response future then says why, so a write error waits for it.
        let mut write_error = None;
        {
            let stream = body
                .write()
                .map_err(|()| other("body stream already taken"))?;
            for chunk in req.body.chunks(4096) {
                if let Err(e) = stream.blocking_write_and_flush(chunk) {
                    write_error = Some(FetchError::Connection(format!("writing the body: {e:?}")));
                    break;
                }
            }
        }
        if let Err(code) = OutgoingBody::finish(body, None) {
            write_error.get_or_insert(error(code));
        }
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(error(code)),
            Some(Err(())) | None => return Err(other("response already taken")),
        };
        if let Some(e) = write_error {
            return Err(e);
        }
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response
            .consume()
            .map_err(|()| other("response body already taken"))?;
        let mut bytes = Vec::new();
        {
            let stream = incoming
                .stream()
                .map_err(|()| other("response stream already taken"))?;
            loop {
                match stream.blocking_read(64 * 1024) {
                    Ok(chunk) => bytes.extend_from_slice(&chunk),
                    Err(StreamError::Closed) => break,
                    Err(StreamError::LastOperationFailed(e)) => {
                        return Err(FetchError::Connection(e.to_debug_string()));
                    }
                }
            }
        }
        Ok(Response {
            status,
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body: bytes,
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{FetchError, Request, Response, Target};

    pub(super) fn send(_req: &Request, _target: &Target) -> Result<Response, FetchError> {
        Err(FetchError::Other(
            "fetch only works inside a Ward plugin (wasm32-wasip2)".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let t = parse_url("https://api.example.com/v1/send?x=1").unwrap();
        assert_eq!(
            (t.https, t.authority.as_str(), t.path.as_str()),
            (true, "api.example.com", "/v1/send?x=1")
        );
        let t = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (t.https, t.authority.as_str(), t.path.as_str()),
            (false, "127.0.0.1:8080", "/")
        );
        let t = parse_url("http://h:1?q").unwrap();
        assert_eq!(t.path, "/?q");
        assert!(parse_url("ftp://x/").is_err());
        assert!(parse_url("no-scheme").is_err());
        assert!(parse_url("http://user:pw@h/").is_err());
    }

    #[test]
    fn errors_map_to_classes() {
        use crate::FailureClass;
        assert_eq!(
            FetchError::Timeout("t".into()).into_failure("u").class(),
            FailureClass::Transient
        );
        assert_eq!(
            FetchError::Denied("d".into()).into_failure("u").class(),
            FailureClass::Permanent
        );
        assert_eq!(
            FetchError::Connection("c".into())
                .into_failure("u")
                .upstream_name(),
            Some("u")
        );
    }
}
