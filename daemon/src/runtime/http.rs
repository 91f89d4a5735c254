//! Outbound HTTP for plugins (`wasi:http`), checked by the host against the
//! job type's allow-list, with a host-side timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub use crate::config::HttpPolicy;

/// The per-attempt `wasi:http` hooks: allow-list, timeout, trace context.
pub struct Hooks {
    policy: Arc<HttpPolicy>,
    job_id: String,
    /// The attempt span's `traceparent` header, when traces are on: set on
    /// every request (replacing one the plugin wrote), so the upstream's
    /// spans join the producer's trace.
    traceparent: Option<http::HeaderValue>,
}

impl Hooks {
    /// Hooks for one attempt of job `job_id`.
    #[must_use]
    pub fn new(policy: Arc<HttpPolicy>, job_id: String, traceparent: Option<String>) -> Hooks {
        Hooks {
            policy,
            job_id,
            traceparent: traceparent.and_then(|t| http::HeaderValue::from_str(&t).ok()),
        }
    }
}

type Sent = Box<dyn Future<Output = Result<(), Error>> + Send>;
type Response = Box<dyn Future<Output = Result<(http::Response<WasiBody>, Sent), Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Sent,
    ) -> Response {
        drop(fut);
        if let Some(tp) = &self.traceparent {
            request
                .headers_mut()
                .insert(crate::obs::traces::TRACEPARENT, tp.clone());
        }
        let uri = request.uri();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri.host().unwrap_or("").to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.policy.allows(&host, port) {
            let authority = format!("{host}:{port}");
            tracing::warn!(
                job_id = %self.job_id, authority = %authority,
                "outbound HTTP refused: {authority} is not in this job type's http.allow list"
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
        Box::new(async move {
            let sent = tokio::time::timeout(
                limit,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
            )
            .await;
            match sent {
                Err(_) => Err(Error::ConnectionTimeout),
                Ok(Err(e)) => Err(e),
                Ok(Ok((response, io))) => {
                    let response = response.map(BodyExt::boxed_unsync);
                    Ok((response, Box::new(io) as Sent))
                }
            }
        })
    }
}
