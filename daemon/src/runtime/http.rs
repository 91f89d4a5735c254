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

pub use crate::config::HttpPolicy;

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
