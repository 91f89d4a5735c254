//! Outbound HTTP for plugins (`wasi:http`), checked by the host against the
//! job type's allow-list, with a host-side timeout, and sent on the job
//! type's pooled connections ([`super::pool`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

use super::pool::{Outbound, Timeouts};
pub use crate::config::HttpPolicy;

/// The per-attempt `wasi:http` hooks: allow-list, timeout, trace context.
pub struct Hooks {
    outbound: Arc<Outbound>,
    job_id: String,
    /// The attempt span's `traceparent` header, when traces are on: set on
    /// every request (replacing one the plugin wrote), so the upstream's
    /// spans join the producer's trace.
    traceparent: Option<http::HeaderValue>,
}

impl Hooks {
    /// Hooks for one attempt of job `job_id`.
    #[must_use]
    pub fn new(outbound: Arc<Outbound>, job_id: String, traceparent: Option<String>) -> Hooks {
        Hooks {
            outbound,
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
        let policy = self.outbound.policy();
        if !policy.allows(&host, port) {
            let authority = format!("{host}:{port}");
            tracing::warn!(
                job_id = %self.job_id, authority = %authority,
                "outbound HTTP refused: {authority} is not in this job type's http.allow list"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let limit = policy.timeout;
        let cap = |d: Option<Duration>| d.map_or(limit, |d| d.min(limit));
        // The connect timeout is the pool's (the job type's `timeout`): a
        // plugin's shorter one still bounds the whole request below.
        let timeouts = Timeouts {
            first_byte: cap(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: cap(options.and_then(|o| o.between_bytes_timeout)),
        };
        let outbound = self.outbound.clone();
        // The hooks run on the attempt's fiber stack, which stays resident
        // for as long as the attempt waits: only the captures are moved
        // there. The send future (kilobytes) is built at the first poll,
        // on the runtime's stack, and kept on the heap.
        Box::new(async move {
            let send = Box::pin(tokio::time::timeout(
                limit,
                outbound.send(request, timeouts),
            ));
            let sent = send.await;
            match sent {
                Err(_) => Err(Error::ConnectionTimeout),
                Ok(Err(e)) => Err(e),
                // The pool drives the connection itself: nothing is left
                // for the caller to await.
                Ok(Ok(response)) => Ok((response, Box::new(async { Ok(()) }) as Sent)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty};

    use super::*;

    /// The future the hook returns is built on the attempt's fiber stack,
    /// whose touched pages stay resident while the attempt waits: with
    /// 10,000 attempts in flight every KiB here is 10 MiB. It must hold
    /// only the captures, not the send future (several KiB once the pool's
    /// states are inline, as it once did).
    #[test]
    fn the_hooks_response_future_holds_only_its_captures() {
        let policy = HttpPolicy::new(&["127.0.0.1:9".into()], Duration::from_secs(5)).unwrap();
        let mut hooks = Hooks::new(Arc::new(Outbound::new(policy)), "job-1".into(), None);
        let body = Empty::new().map_err(|never| match never {}).boxed_unsync();
        let request = http::Request::post("http://127.0.0.1:9/hook")
            .body(body)
            .unwrap();
        let sent: Sent = Box::new(async { Ok(()) });
        let response = hooks.send_request(request, None, sent);
        let size = std::mem::size_of_val(&*response);
        assert!(size < 1024, "the hook's future is {size} bytes");
    }
}
