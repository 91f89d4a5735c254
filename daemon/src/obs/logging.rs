//! Logs: the filter (`RUST_LOG`, else `[log] level`, else `info`), JSON
//! lines with every span field on every line, and the per-attempt span.
//!
//! Every line an attempt writes, the plugin's own lines (target
//! `ward::plugin`) included, runs inside an `attempt` span carrying
//! `job_id`, `queue`, `job`, `attempt` and the correlation ids the entry
//! carries ([`CORRELATION_FIELDS`]). The JSON formatter flattens span fields
//! into the line itself, so one query on `job_id` finds every line of a job.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Whether the installed filter has span directives (`[span]=level`),
/// which can let a plugin's line through only inside its attempt's span.
/// True until [`init`] says otherwise, so an unknown filter is never
/// second-guessed.
static SPAN_DIRECTIVES: AtomicBool = AtomicBool::new(true);

/// Whether a plugin's log line at `level` (target `ward::plugin`) can pass
/// the installed filter. The host skips redacting a line, and making its
/// attempt's span, when it cannot: a busy plugin's routine lines cost
/// nothing under `ward::plugin=warn`.
#[must_use]
pub fn plugin_line_enabled(level: Level) -> bool {
    plugin_line_passes(level, SPAN_DIRECTIVES.load(Ordering::Relaxed))
}

/// [`plugin_line_enabled`] with the filter's span directives given.
fn plugin_line_passes(level: Level, span_directives: bool) -> bool {
    // Cheapest first: the most verbose level of any directive.
    if level > tracing::level_filters::LevelFilter::current() {
        return false;
    }
    // A span directive decides only inside the span, which is not made
    // yet: let the line through and the filter judge it there.
    if span_directives {
        return true;
    }
    match level {
        Level::TRACE => tracing::enabled!(target: "ward::plugin", Level::TRACE),
        Level::DEBUG => tracing::enabled!(target: "ward::plugin", Level::DEBUG),
        Level::INFO => tracing::enabled!(target: "ward::plugin", Level::INFO),
        Level::WARN => tracing::enabled!(target: "ward::plugin", Level::WARN),
        Level::ERROR => tracing::enabled!(target: "ward::plugin", Level::ERROR),
    }
}

/// Whether filter directives include a span directive (`target[span]=level`).
fn has_span_directives(directives: &str) -> bool {
    directives.contains('[')
}

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
///
/// When stdout is journald's stream (`JOURNAL_STREAM` names it, as systemd
/// sets it for `StandardOutput=journal`), every line starts with its
/// syslog priority (`<3>` error ... `<7>` debug), which journald strips and
/// records, so `journalctl -p err` finds the errors.
pub fn init(json: bool, daemon: bool, config_level: Option<&str>) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let wanted = directives(rust_log.as_deref(), config_level);
    let filter = match EnvFilter::try_new(&wanted) {
        Ok(filter) => {
            SPAN_DIRECTIVES.store(has_span_directives(&wanted), Ordering::Relaxed);
            filter
        }
        Err(_) => {
            SPAN_DIRECTIVES.store(false, Ordering::Relaxed);
            EnvFilter::new(DEFAULT_LEVEL)
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let stdout = Prefixed {
        priority: daemon && stdout_is_journal(),
    };
    let _ = match (json, daemon) {
        (true, true) => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(stdout)
            .try_init(),
        (true, false) => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(std::io::stderr)
            .try_init(),
        (false, true) => builder.with_writer(stdout).try_init(),
        (false, false) => builder.with_writer(std::io::stderr).try_init(),
    };
}

/// Whether stdout is the journald stream `JOURNAL_STREAM` (`<dev>:<inode>`)
/// names. Checked, not assumed: a daemon started from a shell inside a unit
/// inherits the variable with another stdout.
fn stdout_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return false;
    };
    journal_stream_is(&stream, meta.dev(), meta.ino())
}

fn journal_stream_is(stream: &str, dev: u64, ino: u64) -> bool {
    let mut parts = stream.trim().splitn(2, ':');
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<u64>().ok());
    number(parts.next()) == Some(dev) && number(parts.next()) == Some(ino)
}

/// The syslog priority journald reads from a `<N>` line prefix.
fn syslog_priority(level: Level) -> &'static [u8] {
    match level {
        Level::ERROR => b"<3>",
        Level::WARN => b"<4>",
        Level::INFO => b"<6>",
        Level::DEBUG | Level::TRACE => b"<7>",
    }
}

/// The daemon's stdout, each event written under one lock (so lines of
/// different threads never interleave), with its syslog priority in front
/// when stdout is journald's.
#[derive(Clone, Copy)]
struct Prefixed {
    priority: bool,
}

/// One event's writer: the locked stdout, and the prefix still to write.
struct EventWriter {
    out: std::io::StdoutLock<'static>,
    prefix: Option<&'static [u8]>,
}

impl std::io::Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(p) = self.prefix.take() {
            self.out.write_all(p)?;
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Prefixed {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            out: std::io::stdout().lock(),
            prefix: None,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> EventWriter {
        EventWriter {
            out: std::io::stdout().lock(),
            prefix: self.priority.then(|| syslog_priority(*meta.level())),
        }
    }
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
        writeln!(writer, "{}", fit_line(map))
    }
}

/// The longest JSON log line written. journald splits longer lines
/// (`LineMax`, 48 KiB by default), and a JSON object split in two is two
/// broken lines; a plugin's captured output or a long error must not do that.
pub const MAX_LOG_LINE: usize = 32 * 1024;

/// `map` as one JSON line of at most [`MAX_LOG_LINE`] bytes: the longest
/// text fields are cut (and the line says `"cut": true`) until it fits.
fn fit_line(mut map: Map<String, Value>) -> String {
    let mut line = Value::Object(map.clone()).to_string();
    // Each round cuts the longest text field by what is over, plus room
    // for the marker and JSON escapes; a few rounds always suffice.
    for _ in 0..8 {
        if line.len() <= MAX_LOG_LINE {
            return line;
        }
        let over = line.len() - MAX_LOG_LINE;
        let longest = map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.len())))
            .max_by_key(|(_, len)| *len);
        let Some((key, len)) = longest else { break };
        if let Some(Value::String(s)) = map.get_mut(&key) {
            crate::cut::truncate(s, len.saturating_sub(over + 64));
        }
        map.insert("cut".into(), Value::Bool(true));
        line = Value::Object(map.clone()).to_string();
    }
    if line.len() <= MAX_LOG_LINE {
        return line;
    }
    // Only many small fields can get here: keep what says what happened.
    let mut small = Map::new();
    for k in ["timestamp", "level", "target", "job_id", "queue", "job"] {
        if let Some(v) = map.remove(k) {
            small.insert(k.into(), v);
        }
    }
    small.insert(
        "message".into(),
        "log line too long to write; fields dropped".into(),
    );
    small.insert("cut".into(), Value::Bool(true));
    Value::Object(small).to_string()
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
    fn a_plugin_line_is_skipped_only_when_its_target_cannot_pass() {
        let with = |directives: &str, check: &dyn Fn()| {
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new(directives))
                .with_writer(std::io::sink)
                .finish();
            tracing::subscriber::with_default(subscriber, check);
        };
        with("info,ward::plugin=warn", &|| {
            assert!(
                !plugin_line_passes(Level::INFO, false),
                "below ward::plugin's level"
            );
            assert!(plugin_line_passes(Level::WARN, false));
        });
        with("warn,ward::plugin=debug", &|| {
            assert!(
                plugin_line_passes(Level::DEBUG, false),
                "above the default's level"
            );
            assert!(!plugin_line_passes(Level::TRACE, false));
        });
        with("warn,ward::worker=info", &|| {
            assert!(
                !plugin_line_passes(Level::INFO, false),
                "info is another target's"
            );
            assert!(plugin_line_passes(Level::WARN, false));
        });
        // Only the span can say; the line goes on to be judged inside it.
        with("warn,[attempt{queue=q}]=debug", &|| {
            assert!(plugin_line_passes(Level::DEBUG, true));
        });
        assert!(has_span_directives("warn,[attempt{queue=q}]=debug"));
        assert!(has_span_directives("ward::plugin[attempt]=debug"));
        assert!(!has_span_directives("info,ward::plugin=warn"));
    }

    #[test]
    fn journald_is_recognised_by_its_stream_only() {
        assert!(journal_stream_is("8:1234", 8, 1234));
        assert!(!journal_stream_is("8:1234", 8, 1235));
        assert!(!journal_stream_is("garbage", 8, 1234));
        assert_eq!(syslog_priority(Level::ERROR), b"<3>");
        assert_eq!(syslog_priority(Level::WARN), b"<4>");
        assert_eq!(syslog_priority(Level::INFO), b"<6>");
    }

    #[test]
    fn a_huge_field_is_cut_to_a_line_journald_keeps_whole() {
        let mut map = Map::new();
        map.insert("level".into(), "WARN".into());
        // Quotes and control characters grow when escaped as JSON.
        let huge = "a\"\n".repeat(40_000);
        map.insert("message".into(), huge.into());
        map.insert("job_id".into(), "1-0".into());
        let line = fit_line(map);
        assert!(line.len() <= MAX_LOG_LINE, "{}", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["cut"], true);
        assert_eq!(v["job_id"], "1-0");
        assert!(v["message"].as_str().unwrap().ends_with("…[truncated]"));
        let mut small = Map::new();
        small.insert("message".into(), "hello".into());
        assert_eq!(fit_line(small), r#"{"message":"hello"}"#);
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
            key_claimed: false,
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
