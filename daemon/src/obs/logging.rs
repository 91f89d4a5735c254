//! Logs: the filter (`RUST_LOG`, else `[log] level`, else `info`), JSON
//! lines with every span field on every line, and the per-attempt span.
//!
//! Every line an attempt writes, the plugin's own lines (target
//! `ward::plugin`) included, runs inside an `attempt` span carrying
//! `job_id`, `queue`, `job`, `attempt` and the correlation ids the entry
//! carries ([`CORRELATION_FIELDS`]). The JSON formatter flattens span fields
//! into the line itself, so one query on `job_id` finds every line of a job.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::job::JobEntry;

/// Entry fields copied onto every log line of an attempt, when present.
/// Fixed, so log fields stay a known set; other extra fields are not logged.
pub const CORRELATION_FIELDS: &[&str] = &[
    "user_id",
    "order_id",
    "request_id",
    "correlation_id",
    "trace_id",
];
/// Longest correlation id copied to logs.
const MAX_CORRELATION: usize = 128;
/// The filter when neither `RUST_LOG` nor `[log] level` says.
pub const DEFAULT_LEVEL: &str = "info";

/// The log filter directives: `RUST_LOG` when set and not empty, else the
/// config's `[log] level`, else `info`.
#[must_use]
pub fn directives(rust_log: Option<&str>, config: Option<&str>) -> String {
    rust_log
        .filter(|s| !s.trim().is_empty())
        .or(config)
        .unwrap_or(DEFAULT_LEVEL)
        .to_string()
}

/// Installs the process's log subscriber. The daemon logs to stdout
/// (journald's default); tools keep stdout for their answer and log to stderr.
pub fn init(json: bool, daemon: bool, config_level: Option<&str>) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let wanted = directives(rust_log.as_deref(), config_level);
    let filter = EnvFilter::try_new(&wanted).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match (json, daemon) {
        (true, true) => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(std::io::stdout)
            .try_init(),
        (true, false) => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, true) => builder.with_writer(std::io::stdout).try_init(),
        (false, false) => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Who an attempt is, for its log lines. Building a span costs more than
/// running a no-op plugin, so an attempt carries this and makes its span
/// only when it has something to log ([`AttemptIdent::span`]).
#[derive(Debug, Clone)]
pub struct AttemptIdent {
    /// Queue name.
    pub queue: std::sync::Arc<str>,
    /// Job id.
    pub job_id: String,
    /// Job type.
    pub job: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// The [`CORRELATION_FIELDS`] the entry carries (usually none).
    pub correlation: Vec<(&'static str, String)>,
}

impl AttemptIdent {
    /// The identity of the attempt that runs `entry`.
    #[must_use]
    pub fn of(queue: &std::sync::Arc<str>, entry: &JobEntry) -> AttemptIdent {
        let mut correlation = Vec::new();
        for (k, v) in &entry.extra {
            let Some(name) = CORRELATION_FIELDS.iter().find(|f| **f == k.as_str()) else {
                continue;
            };
            if let Ok(v) = std::str::from_utf8(v) {
                let mut v = v.to_string();
                crate::cut::truncate(&mut v, MAX_CORRELATION);
                correlation.push((*name, v));
            }
        }
        AttemptIdent {
            queue: queue.clone(),
            job_id: entry.id.clone(),
            job: entry.job.clone(),
            attempt: entry.attempt,
            correlation,
        }
    }

    /// The span of this attempt: `job_id`, `queue`, `job`, `attempt` and
    /// the [`CORRELATION_FIELDS`] the entry carries.
    ///
    /// At ERROR level so it is enabled whatever the log filter: its fields
    /// must be on every line the attempt writes, at any level.
    #[must_use]
    pub fn span(&self) -> tracing::Span {
        let get = |name: &str| -> Option<&str> {
            self.correlation
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        tracing::span!(
            Level::ERROR,
            "attempt",
            job_id = %self.job_id,
            queue = &*self.queue,
            job = %self.job,
            attempt = self.attempt,
            user_id = get("user_id"),
            order_id = get("order_id"),
            request_id = get("request_id"),
            correlation_id = get("correlation_id"),
            trace_id = get("trace_id"),
        )
    }
}

/// One JSON object per line: `timestamp`, `level`, `target`, the event's
/// fields (`message` included) and the fields of every span it is in
/// (the innermost wins; an event's own field wins over a span's).
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut map = Map::new();
        map.insert(
            "timestamp".into(),
            humantime::format_rfc3339_micros(std::time::SystemTime::now())
                .to_string()
                .into(),
        );
        map.insert("level".into(), meta.level().as_str().into());
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        // Events bridged from the `log` crate carry their real target in a field.
        let target = match fields.0.remove("log.target") {
            Some(Value::String(t)) => t,
            _ => meta.target().to_string(),
        };
        fields.0.retain(|k, _| !k.starts_with("log."));
        map.extend(fields.0);
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                let ext = span.extensions();
                let Some(stored) = ext.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(&stored.fields)
                {
                    for (k, v) in span_fields {
                        map.entry(k).or_insert(v);
                    }
                }
            }
        }
        map.insert("target".into(), target.into());
        writeln!(writer, "{}", Value::Object(map))
    }
}

/// Collects an event's fields as JSON values.
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_then_the_config_then_info() {
        assert_eq!(directives(Some("debug"), Some("warn")), "debug");
        assert_eq!(directives(Some(""), Some("warn")), "warn");
        assert_eq!(directives(None, Some("warn,ward=debug")), "warn,ward=debug");
        assert_eq!(directives(None, None), "info");
    }

    #[test]
    fn span_fields_are_on_every_line_and_event_fields_win() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || out.clone())
            .finish();
        let entry = JobEntry {
            entry_id: "5-0".into(),
            id: "5-0".into(),
            job: "send".into(),
            payload: Vec::new(),
            attempt: 2,
            idempotency_key: None,
            checkpoint: None,
            first_at: None,
            last_delay_ms: None,
            lease_expiries: 0,
            extra: vec![
                ("order_id".into(), b"o-17".to_vec()),
                ("secret_field".into(), b"x".to_vec()),
            ],
        };
        tracing::subscriber::with_default(subscriber, || {
            let span = AttemptIdent::of(&"q".into(), &entry).span();
            let _e = span.enter();
            tracing::info!(target: "ward::plugin", "hello {}", 1);
            tracing::warn!(job = "other", n = 3u64, "second");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["message"], "hello 1");
        assert_eq!(first["target"], "ward::plugin");
        assert_eq!(first["job_id"], "5-0");
        assert_eq!(first["queue"], "q");
        assert_eq!(first["attempt"], 2);
        assert_eq!(first["order_id"], "o-17");
        assert!(first.get("secret_field").is_none(), "only the fixed set");
        assert!(first.get("user_id").is_none(), "absent ids are left out");
        assert_eq!(lines[1]["job"], "other", "the event's own field wins");
        assert_eq!(lines[1]["n"], 3);
        assert_eq!(lines[1]["level"], "WARN");
    }
}
