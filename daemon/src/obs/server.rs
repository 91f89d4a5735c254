//! The metrics listener: a tiny HTTP/1.1 server (hyper) with three routes.
//!
//! - `GET /metrics`: the Prometheus text format, rendered from the recorder;
//! - `GET /healthz`: `200 ok` while the process runs;
//! - `GET /readyz`: `200 ready`, or `503` with one line per failing check.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::obs::health::Readiness;

/// A client must send its request headers within this long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the recorder's upkeep runs (it drains histogram buffers).
const UPKEEP: Duration = Duration::from_secs(5);

/// Serves the routes on `listener` until the task is aborted, and runs the
/// recorder's upkeep meanwhile.
pub async fn serve(listener: TcpListener, metrics: PrometheusHandle, readiness: Arc<Readiness>) {
    let mut upkeep = tokio::time::interval(UPKEEP);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = upkeep.tick() => {
                metrics.run_upkeep();
                continue;
            }
        };
        let (stream, _) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: wait, don't spin.
                tracing::warn!(error = %e, "metrics listener cannot accept; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = route(&req, &metrics, &readiness);
                async move { Ok::<_, Infallible>(answer) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(
    req: &Request<Incoming>,
    metrics: &PrometheusHandle,
    readiness: &Readiness,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            super::metrics::collect_process();
            let mut r = Response::new(Full::new(Bytes::from(metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match readiness.check() {
            // Ready, and what an operator should still hear (an evicting
            // Redis, one nearly full), a line each.
            Ok(()) => text(
                StatusCode::OK,
                std::iter::once("ready\n".to_string())
                    .chain(
                        readiness
                            .warnings()
                            .iter()
                            .map(|w| format!("warning: {w}\n")),
                    )
                    .collect(),
            ),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {}\n", why.join("; ")),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
