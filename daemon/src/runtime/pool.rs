//! A job type's outbound HTTP connections, pooled across its attempts.
//!
//! `wasmtime_wasi_http`'s default sender opens a new connection (and, for
//! `https`, a new TLS session) for every request. A job type that calls
//! one upstream for every job would then pay a handshake per job and, busy
//! enough, run the host out of ephemeral ports. Each job type gets one
//! pooled client instead, shared by its attempts and keyed by scheme and
//! authority, bounded by `http.pool_max_idle` and `http.pool_idle_timeout`.
//!
//! With `http.http2`, `https` upstreams that agree to HTTP/2 get their own
//! connections instead ([`super::h2`]): as many as the server's stream
//! limit calls for, where hyper-util's client would keep one.
//!
//! What stays per attempt: the allow-list check and the timeouts (in
//! [`super::http`]), and the response. hyper hands a connection back to the
//! pool only once its response has been read to the end; a response an
//! attempt drops half-read takes its connection with it, so no attempt can
//! ever read bytes of another's response.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::{Error, WasiBody};

use super::h2::{self, Connections, Sent};
use super::http::HttpPolicy;

/// The pooled client of one job type.
type Pooled = Client<hyper_rustls::HttpsConnector<HttpConnector>, WasiBody>;

/// A job type's outbound HTTP: its policy and its connection pool.
pub struct Outbound {
    policy: HttpPolicy,
    client: Pooled,
    /// With `http.http2`: the HTTP/2 connections to `https` upstreams.
    h2: Option<Connections>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new(HttpPolicy::default())
    }
}

/// How long a request may take, each part capped by the job type's timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Until the response's head has arrived.
    pub first_byte: Duration,
    /// Between two parts of the response's body.
    pub between_bytes: Duration,
}

impl Outbound {
    /// The pool for a job type with `policy`. Its TLS trusts the same
    /// roots `wasmtime_wasi_http`'s own sender does (Mozilla's, built in),
    /// so a plugin reaches exactly the servers it reached before pooling,
    /// plus the CA certificates of the job type's `http.ca_file`; with
    /// `http.http2` it offers HTTP/2 to `https` upstreams (plain `http`
    /// stays HTTP/1.1: nothing to negotiate it with).
    #[must_use]
    pub fn new(policy: HttpPolicy) -> Outbound {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(policy.timeout));
        let tls = tls_config(&policy);
        let h2 = policy.http2.then(|| {
            let offers_h2 = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_only()
                .enable_all_versions()
                .wrap_connector(http.clone());
            Connections::new(offers_h2, policy.pool_idle_timeout, policy.pool_max_idle)
        });
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_max_idle_per_host(policy.pool_max_idle)
            .pool_idle_timeout(policy.pool_idle_timeout)
            .build(connector);
        Outbound { policy, client, h2 }
    }

    /// Where requests may go and how long they may take.
    #[must_use]
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// Sends `request` on a pooled connection (a new one if none is idle).
    pub(super) async fn send(
        &self,
        request: http::Request<WasiBody>,
        timeouts: Timeouts,
    ) -> Result<http::Response<WasiBody>, Error> {
        let (response, stream) = tokio::time::timeout(timeouts.first_byte, self.head(request))
            .await
            .map_err(|_| Error::ConnectionReadTimeout)??;
        let between = timeouts.between_bytes.max(Duration::from_nanos(1));
        Ok(response.map(|incoming| {
            let mut timer = tokio::time::interval(between);
            timer.reset();
            Paced {
                incoming,
                timer,
                _stream: stream,
            }
            .boxed_unsync()
        }))
    }

    /// The response's head, over HTTP/2 where the job type and the
    /// upstream agree to it, with the stream it holds until read.
    async fn head(
        &self,
        request: http::Request<WasiBody>,
    ) -> Result<(http::Response<Incoming>, Option<h2::Stream>), Error> {
        let request = match &self.h2 {
            Some(h2) if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) => {
                // Boxed: a request over HTTP/1.1 should not carry the
                // HTTP/2 pool's (larger) future in its own for its life.
                match Box::pin(h2.send(request)).await? {
                    Sent::Response(response, stream) => return Ok((response, Some(stream))),
                    Sent::Http1(request) => request,
                }
            }
            _ => request,
        };
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| wasi_error(&e))?;
        Ok((response, None))
    }
}

/// The TLS client settings of a pool: Mozilla's roots and the job type's
/// extra CA certificates (checked when the config was loaded; one rustls
/// refuses here is left out, and the config check said why).
fn tls_config(policy: &HttpPolicy) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for der in &policy.extra_roots.0 {
        let _ = roots.add(rustls::pki_types::CertificateDer::from(der.clone()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        // ring supports them all; the process's default provider is ring too.
        .unwrap_or_else(|_| rustls::ClientConfig::builder())
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A response body that fails when no part of it arrives for too long,
/// as `wasmtime_wasi_http`'s own sender does.
struct Paced {
    incoming: Incoming,
    timer: tokio::time::Interval,
    /// Over HTTP/2, the stream the body arrives on, counted until then.
    _stream: Option<h2::Stream>,
}

impl Body for Paced {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(e))) if e.is_timeout() => {
                Poll::Ready(Some(Err(Error::HttpResponseTimeout)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Error::from(e)))),
            Poll::Ready(Some(Ok(frame))) => {
                self.timer.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timer.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// The `wasi:http` error a plugin sees for a request the pool could not
/// send: the cause found in the chain, as the default sender reports it.
fn wasi_error(e: &hyper_util::client::legacy::Error) -> Error {
    from_causes(e.source()).unwrap_or_else(|| {
        if e.is_connect() {
            Error::Connect(io::Error::other(e.to_string()))
        } else {
            Error::InternalError(Some(e.to_string()))
        }
    })
}

/// The `wasi:http` error for a failed HTTP/2 request or handshake.
pub(super) fn hyper_error(e: &hyper::Error) -> Error {
    from_causes(Some(e)).unwrap_or(Error::HttpProtocolError)
}

/// The `wasi:http` error for a connection that could not be made.
pub(super) fn connect_error(e: &(dyn StdError + Send + Sync + 'static)) -> Error {
    from_causes(Some(e)).unwrap_or_else(|| Error::Connect(io::Error::other(e.to_string())))
}

/// The error the first recognised cause in the chain from `first` maps to.
fn from_causes(first: Option<&(dyn StdError + 'static)>) -> Option<Error> {
    let mut cause = first;
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if let Some(tls) = tls_inside(io) {
                return Some(tls_error(tls));
            }
            return Some(match io.kind() {
                io::ErrorKind::ConnectionRefused => Error::ConnectionRefused,
                io::ErrorKind::TimedOut => Error::ConnectionTimeout,
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => Error::ConnectionTerminated,
                kind => Error::Connect(io::Error::new(kind, io.to_string())),
            });
        }
        if c.downcast_ref::<rustls::Error>().is_some() {
            return Some(tls_error(c));
        }
        if let Some(h) = c.downcast_ref::<hyper::Error>() {
            return Some(if h.is_timeout() {
                Error::HttpResponseTimeout
            } else if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                Error::ConnectionTerminated
            } else {
                Error::HttpProtocolError
            });
        }
        cause = c.source();
    }
    None
}

/// The rustls error `io` wraps, however deep: hyper-rustls wraps
/// tokio-rustls's `io::Error` (which wraps the rustls error) in another,
/// and `io::Error::source` skips the error it wraps.
fn tls_inside(io: &io::Error) -> Option<&(dyn StdError + 'static)> {
    let mut inner = io.get_ref().map(|e| e as &(dyn StdError + 'static));
    while let Some(e) = inner {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Some(e);
        }
        inner = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|e| e as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    None
}

/// A TLS failure: a certificate the roots do not vouch for, or any other.
fn tls_error(e: &(dyn StdError + 'static)) -> Error {
    match e.downcast_ref::<rustls::Error>() {
        Some(rustls::Error::InvalidCertificate(_)) => Error::TlsCertificateError,
        Some(rustls::Error::AlertReceived(alert)) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose cause is `inner`, as hyper-util wraps what failed.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "wrapped: {}", self.0)
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&*self.0)
        }
    }

    fn mapped(inner: impl StdError + Send + Sync + 'static) -> Option<Error> {
        let w = Wrapped(Box::new(inner));
        from_causes(Some(&w))
    }

    #[test]
    fn connection_failures_read_as_the_default_sender_reports_them() {
        let io = |k| io::Error::new(k, "x");
        assert!(matches!(
            mapped(io(io::ErrorKind::ConnectionRefused)),
            Some(Error::ConnectionRefused)
        ));
        assert!(matches!(
            mapped(io(io::ErrorKind::TimedOut)),
            Some(Error::ConnectionTimeout)
        ));
        assert!(matches!(
            mapped(io(io::ErrorKind::ConnectionReset)),
            Some(Error::ConnectionTerminated)
        ));
        assert!(matches!(
            mapped(io(io::ErrorKind::AddrNotAvailable)),
            Some(Error::Connect(e)) if e.kind() == io::ErrorKind::AddrNotAvailable
        ));
        // Any other I/O failure is a connect error that keeps its kind and
        // its words.
        assert!(matches!(
            mapped(io::Error::other(std::fmt::Error)),
            Some(Error::Connect(e))
                if e.kind() == io::ErrorKind::Other && e.to_string() == std::fmt::Error.to_string()
        ));
    }

    #[test]
    fn tls_failures_say_whether_the_certificate_was_the_reason() {
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(matches!(
            mapped(io::Error::new(io::ErrorKind::InvalidData, bad)),
            Some(Error::TlsCertificateError)
        ));
        let other = rustls::Error::General("x".into());
        assert!(matches!(mapped(other), Some(Error::TlsProtocolError)));
        // As hyper-rustls hands it over: tokio-rustls's error in another.
        let bad = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, bad));
        assert!(matches!(mapped(wrapped), Some(Error::TlsCertificateError)));
    }
}
