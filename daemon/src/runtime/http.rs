//! Outbound HTTP for plugins (`wasi:http`), checked by the host against the
//! job type's allow-list, with a host-side timeout.
//!
//! Every request a plugin makes is recorded as an [`HttpCall`] (authority,
//! status or error, timing, refused or not), so the host can see how each
//! upstream behaved without trusting the plugin's word: per-upstream circuit
//! breakers feed on these.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where a job type may send HTTP requests, and how long each may take.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpPolicy {
    allow: Vec<(String, u16)>,
    /// Host-side limit of one request, connect to last byte of headers.
    pub timeout: Duration,
}

impl HttpPolicy {
    /// A policy from `host:port` entries (`"api.mailer.example:443"`).
    ///
    /// # Errors
    /// A message naming the first entry that is not `host:port`.
    pub fn new(allow: &[String], timeout: Duration) -> Result<HttpPolicy, String> {
        let mut parsed = Vec::with_capacity(allow.len());
        for entry in allow {
            let (host, port) = entry
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                .filter(|(h, _)| !h.is_empty() && !h.contains('/'))
                .ok_or_else(|| {
                    format!("http.allow entry `{entry}` is not host:port; write it like \"api.example.com:443\"")
                })?;
            parsed.push((host.trim_matches(['[', ']']).to_ascii_lowercase(), port));
        }
        Ok(HttpPolicy {
            allow: parsed,
            timeout,
        })
    }

    /// Whether a request to `host:port` may go out.
    #[must_use]
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        self.allow.iter().any(|(h, p)| *h == host && *p == port)
    }
}

/// One outbound request, as the host saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    /// `host:port` the request was for.
    pub authority: String,
    /// The response status, if one came back.
    pub status: Option<u16>,
    /// Why there was no response (refused, timeout, connection error).
    pub error: Option<String>,
    /// True when the allow-list stopped it before it left the host.
    pub refused: bool,
    /// Time to the response head (or the error).
    pub elapsed: Duration,
}

/// The per-attempt `wasi:http` hooks: allow-list, timeout, and the record.
pub struct Hooks {
    policy: Arc<HttpPolicy>,
    calls: Arc<Mutex<Vec<HttpCall>>>,
    job_id: String,
}

impl Hooks {
    /// Hooks for one attempt of job `job_id`.
    #[must_use]
    pub fn new(policy: Arc<HttpPolicy>, job_id: String) -> Hooks {
        Hooks {
            policy,
            calls: Arc::default(),
            job_id,
        }
    }

    /// The requests made so far.
    #[must_use]
    pub fn calls(&self) -> Vec<HttpCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn record(calls: &Mutex<Vec<HttpCall>>, call: HttpCall) {
    if let Ok(mut c) = calls.lock() {
        // A plugin looping on requests must not grow this without end.
        if c.len() < 1000 {
            c.push(call);
        }
    }
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Response = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Sent,
    ) -> Response {
        drop(fut);
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = format!("{host}:{port}");
        if !self.policy.allows(&host, port) {
            tracing::warn!(
                job_id = %self.job_id, authority = %authority,
                "outbound HTTP refused: {authority} is not in this job type's http.allow list"
            );
            record(
                &self.calls,
                HttpCall {
                    authority,
                    status: None,
                    error: Some("refused by the allow-list".into()),
                    refused: true,
                    elapsed: Duration::ZERO,
                },
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let limit = self.policy.timeout;
        let cap = |d: Option<Duration>| Some(d.map_or(limit, |d| d.min(limit)));
        let options = RequestOptions {
            connect_timeout: cap(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.and_then(|o| o.between_bytes_timeout)),
        };
        let calls = self.calls.clone();
        Box::new(async move {
            let start = Instant::now();
            let sent = tokio::time::timeout(
                limit,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
            )
            .await;
            let (result, status, error) = match sent {
                Err(_) => (
                    Err(Error::ConnectionTimeout),
                    None,
                    Some(format!("no response within {limit:?}")),
                ),
                Ok(Err(e)) => {
                    let text = e.to_string();
                    (Err(e), None, Some(text))
                }
                Ok(Ok((response, io))) => {
                    let status = response.status().as_u16();
                    let response = response.map(BodyExt::boxed_unsync);
                    (Ok((response, Box::new(io) as Sent)), Some(status), None)
                }
            };
            record(
                &calls,
                HttpCall {
                    authority,
                    status,
                    error,
                    refused: false,
                    elapsed: start.elapsed(),
                },
            );
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allow_list_matches_host_and_port_exactly() {
        let p = HttpPolicy::new(
            &["api.mailer.example:443".into(), "127.0.0.1:8080".into()],
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(p.allows("api.mailer.example", 443));
        assert!(p.allows("API.Mailer.Example", 443));
        assert!(p.allows("127.0.0.1", 8080));
        assert!(!p.allows("api.mailer.example", 80));
        assert!(!p.allows("evil.example", 443));
        assert!(!p.allows("127.0.0.1", 8081));
    }

    #[test]
    fn allow_entries_need_a_port() {
        let err =
            HttpPolicy::new(&["api.mailer.example".into()], Duration::from_secs(1)).unwrap_err();
        assert!(err.contains("host:port"), "{err}");
        assert!(HttpPolicy::new(&["http://x:1/".into()], Duration::from_secs(1)).is_err());
    }
}
