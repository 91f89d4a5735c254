//! OpenTelemetry traces end to end: a real daemon exports a span per
//! attempt over OTLP/HTTP to a receiver in the test, which decodes the
//! protobuf; the span's parent is the producer's `traceparent`, and the
//! plugin's outbound request carries the attempt's own `traceparent`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;
use ward_testkit::*;

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "whk-trace-5e1a9c";
/// The producer's trace and span ids.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

/// One span as exported: ids in hex, and its attributes as text.
#[derive(Debug, Clone)]
struct Got {
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP collector on 127.0.0.1: decodes every `POST /v1/traces`
/// and keeps its spans, and every raw body.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Got>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
        let raw: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let (s, r) = (Arc::clone(&spans), Arc::clone(&raw));
        // The thread ends with the test process; it owns only its socket.
        std::thread::spawn(move || {
            for sock in listener.incoming() {
                let Ok(mut sock) = sock else { continue };
                let body = read_body(&mut sock);
                let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                r.lock().unwrap().push(body);
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for sp in ss.spans {
                            let attributes = sp
                                .attributes
                                .iter()
                                .map(|kv| {
                                    let v = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                                        Some(AnyValue::StringValue(s)) => s,
                                        Some(AnyValue::IntValue(i)) => i.to_string(),
                                        other => format!("{other:?}"),
                                    };
                                    (kv.key.clone(), v)
                                })
                                .collect();
                            s.lock().unwrap().push(Got {
                                trace_id: hex::encode(&sp.trace_id),
                                span_id: hex::encode(&sp.span_id),
                                parent_span_id: hex::encode(&sp.parent_span_id),
                                name: sp.name.clone(),
                                attributes,
                            });
                        }
                    }
                }
                let _ = sock.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Collector { port, spans, raw }
    }

    fn spans(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }
}

/// The body of one HTTP/1.1 request (as long as its Content-Length says).
fn read_body(sock: &mut std::net::TcpStream) -> Vec<u8> {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(k) = sock.read(&mut chunk) {
        if k == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..k]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
    }
    Vec::new()
}

#[test]
fn an_attempt_span_continues_the_producers_trace_and_its_http_call_carries_it_on() {
    let collector = Collector::start();
    let stub = HttpStub::start(vec![(200, String::new(), "ok".into())]);
    let redis = Redis::start();
    let top = format!(
        "[tracing]\notlp_endpoint = \"http://127.0.0.1:{}\"\n",
        collector.port
    );
    let jobs = job(
        "hook",
        "webhook",
        &format!(
            "http = {{ allow = [\"127.0.0.1:{}\"], timeout = \"5s\" }}\nsecrets = [\"WEBHOOK_TOKEN\"]",
            stub.port
        ),
    );
    let _ward = Ward::start_with_env(
        &config_top(&redis, &top, "concurrency = 2", FAST_RETRY, &jobs),
        &[("WEBHOOK_TOKEN", TOKEN)],
    )
    .ready();

    let payload = format!(
        r#"{{"url":"http://127.0.0.1:{}/hook","body":{{"card":"4111-1111"}}}}"#,
        stub.port
    );
    let traceparent = format!("00-{TRACE}-{PARENT}-01");
    let ids = xadd_entries(
        &redis,
        &[
            vec![
                ("job", "hook"),
                ("payload", &payload),
                ("traceparent", &traceparent),
            ],
            vec![("job", "hook"), ("payload", &payload)],
        ],
    );
    for id in &ids {
        assert_eq!(wait_final(&redis, id, WAIT)["state"], "succeeded");
    }
    wait_for(WAIT, "both attempt spans at the collector", || {
        collector.spans().len() >= 2
    });
    let spans = collector.spans();
    let child = spans
        .iter()
        .find(|s| s.attributes.get("ward.job_id") == Some(&ids[0]))
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(child.trace_id, TRACE, "the producer's trace: {child:#?}");
    assert_eq!(child.parent_span_id, PARENT, "child of the producer's span");
    assert_eq!(child.name, "attempt hook");
    for (k, v) in [
        ("ward.queue", "q"),
        ("ward.job_type", "hook"),
        ("ward.attempt", "1"),
        ("ward.outcome", "succeeded"),
        ("ward.class", "success"),
    ] {
        assert_eq!(
            child.attributes.get(k).map(String::as_str),
            Some(v),
            "{k}: {child:#?}"
        );
    }
    // Without a traceparent, the attempt starts a trace of its own.
    let root = spans
        .iter()
        .find(|s| s.attributes.get("ward.job_id") == Some(&ids[1]))
        .unwrap();
    assert!(root.parent_span_id.is_empty(), "{root:#?}");
    assert_ne!(root.trace_id, TRACE);

    // The upstream got the attempt's own context: same trace, the attempt
    // span as parent.
    let got = stub.received();
    let sent: Vec<&String> = got
        .iter()
        .filter_map(|r| r.headers.get("traceparent"))
        .collect();
    assert_eq!(sent.len(), 2, "{got:#?}");
    assert!(
        sent.contains(&&format!("00-{TRACE}-{}-01", child.span_id)),
        "{sent:?} vs span {}",
        child.span_id
    );
    assert!(sent.contains(&&format!("00-{}-{}-01", root.trace_id, root.span_id)));

    // No secret and no payload in what was exported.
    for body in collector.raw.lock().unwrap().iter() {
        let text = String::from_utf8_lossy(body);
        assert!(!text.contains(TOKEN), "the granted secret was exported");
        assert!(!text.contains("4111-1111"), "the payload was exported");
    }
}
