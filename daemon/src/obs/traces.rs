//! OpenTelemetry traces: one span per attempt, exported over OTLP/HTTP when
//! `[tracing] otlp_endpoint` is set, and nothing at all when it is not.
//!
//! The span's parent is the W3C `traceparent` the producer put on the stream
//! entry (a correlation field of that name), and the attempt's own
//! `traceparent` goes on every outbound HTTP request its plugin makes
//! (`runtime/http.rs`), so one trace runs producer → Ward → upstream.
//!
//! Spans carry the queue, job type, job id, attempt, outcome, class and
//! code (redacted like alerts), never a payload or an error message.
//!
//! Off, [`attempt_span`] is one atomic load that returns `None`: no span,
//! no allocation, no clock read.

use std::collections::HashMap;
use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _};
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, Span};

use crate::config::observability::TracingConfig;
use crate::job::{JobEntry, Outcome};
use crate::transition::Transition;

/// The correlation field (and HTTP header) carrying a W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Starts the exporter when `cfg` says where to (once per process).
///
/// # Errors
/// The exporter cannot be built.
pub fn start(cfg: Option<&TracingConfig>) -> Result<(), String> {
    let Some(cfg) = cfg else { return Ok(()) };
    let (url, name) = (cfg.traces_url.clone(), cfg.service_name.clone());
    // reqwest's blocking client runs a runtime of its own, which may not
    // be created on a thread of the daemon's: built on a plain thread.
    let exporter = std::thread::spawn(move || {
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
    })
    .join()
    .map_err(|_| "the OTLP exporter panicked while starting".to_string())?
    .map_err(|e| format!("cannot start the OTLP exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .build(),
        )
        .build();
    let tracer = provider.tracer("ward");
    if PROVIDER.set(provider).is_ok() {
        let _ = TRACER.set(tracer);
    }
    tracing::info!(endpoint = %cfg.traces_url, "exporting a trace span per attempt (OTLP/HTTP)");
    Ok(())
}

/// Sends the spans still buffered (the daemon is stopping).
pub async fn finish() {
    if let Some(p) = PROVIDER.get() {
        // Blocks until the batch thread exported what it holds.
        let _ = tokio::task::spawn_blocking(|| p.shutdown()).await;
    }
}

/// One attempt's span, open while the attempt runs.
#[derive(Debug)]
pub struct AttemptSpan {
    span: Span,
    /// The span's own context as a `traceparent` header value, for the
    /// plugin's outbound requests.
    pub traceparent: String,
}

/// Opens the span of the attempt that runs `entry`, child of the entry's
/// `traceparent` when it carries a valid one; `None` when traces are off.
#[must_use]
pub fn attempt_span(queue: &str, entry: &JobEntry) -> Option<AttemptSpan> {
    let tracer = TRACER.get()?;
    let parent = entry
        .extra
        .iter()
        .find(|(k, _)| k == TRACEPARENT)
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .map(|tp| {
            let carrier = HashMap::from([(TRACEPARENT.to_string(), tp.to_string())]);
            TraceContextPropagator::new().extract(&carrier)
        })
        .unwrap_or_default();
    let span = tracer
        .span_builder(format!("attempt {}", entry.job))
        .with_kind(SpanKind::Consumer)
        .with_attributes([
            KeyValue::new("ward.queue", queue.to_string()),
            KeyValue::new("ward.job_type", entry.job.clone()),
            KeyValue::new("ward.job_id", entry.id.clone()),
            KeyValue::new("ward.attempt", i64::from(entry.attempt)),
        ])
        .start_with_context(tracer, &parent);
    let sc = span.span_context();
    let traceparent = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    Some(AttemptSpan { span, traceparent })
}

impl AttemptSpan {
    /// Ends the span with how the attempt went.
    pub fn end(mut self, outcome: &Outcome, transition: &Transition) {
        let what = match transition {
            Transition::Succeed => "succeeded",
            Transition::Retry { .. } => "retried",
            Transition::DeadLetter(_) => "dead",
            Transition::Duplicate { .. } => "duplicate",
            Transition::Defer { .. } => "deferred",
            Transition::Cancel { .. } => "cancelled",
        };
        self.span.set_attribute(KeyValue::new("ward.outcome", what));
        match outcome {
            Outcome::Success(_) => {
                self.span
                    .set_attribute(KeyValue::new("ward.class", "success"));
            }
            Outcome::Failure(f) => {
                self.span
                    .set_attribute(KeyValue::new("ward.class", f.class.as_str()));
                if let Some(code) = &f.code {
                    let code = crate::obs::secrets::redact(code);
                    self.span.set_attribute(KeyValue::new("ward.code", code));
                }
                // The class, not the message: messages can carry anything.
                self.span
                    .set_status(Status::error(format!("{} failure", f.class.as_str())));
            }
        }
        self.span.end();
    }
}
