//! What several commands print the same way: times and a job's history.

use crate::text::format_ms;

/// An optional Unix ms time, `-` when absent.
pub(crate) fn ts(ms: Option<u64>) -> String {
    ms.map_or_else(|| "-".to_string(), format_ms)
}

/// A job's history lines (attempts and operator events), one per line.
pub(crate) fn print_history(history: &[serde_json::Value]) {
    if !history.is_empty() {
        println!("history");
        for h in history {
            println!("{}", history_line(h));
        }
    }
}

/// One entry of a job's history as one line.
fn history_line(h: &serde_json::Value) -> String {
    let field = |k: &str| {
        h.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
    };
    if let Some(event) = field("event") {
        // An operator's or retention's event: requeued, discarded, trimmed.
        let at = h.get("at").and_then(serde_json::Value::as_u64);
        let mut line = format!("  {} {event}", ts(at));
        if let Some(by) = field("by") {
            line.push_str(&format!(" by {by}"));
        }
        if let Some(why) = field("why") {
            line.push_str(&format!(" ({why})"));
        }
        if h.get("edited").and_then(serde_json::Value::as_bool) == Some(true) {
            line.push_str(&format!(
                " with a new payload (sha256 {} {} bytes, was sha256 {} {} bytes)",
                field("payload_sha256").unwrap_or_default(),
                field("payload_size").unwrap_or_default(),
                field("old_payload_sha256").unwrap_or_default(),
                field("old_payload_size").unwrap_or_default(),
            ));
        }
        if let Some(note) = field("note") {
            line.push_str(&format!(": {note}"));
        }
        return line;
    }
    let started = h.get("started_at").and_then(serde_json::Value::as_u64);
    let finished = h.get("finished_at").and_then(serde_json::Value::as_u64);
    let took = match (started, finished) {
        (Some(a), Some(b)) => format!(" in {} ms", b.saturating_sub(a)),
        _ => String::new(),
    };
    let mut line = format!(
        "  #{} {} {}{took}",
        field("attempt").unwrap_or_default(),
        ts(started.or(finished)),
        field("class").unwrap_or_default(),
    );
    if let Some(code) = field("code") {
        line.push_str(&format!(" [{code}]"));
    }
    if let Some(m) = field("message") {
        line.push_str(&format!(": {m}"));
    }
    match field("then").as_deref() {
        Some("retry") => line.push_str(&format!(
            " → retry in {} ms",
            field("delay_ms").unwrap_or_default()
        )),
        Some("dead") => line.push_str(&format!(
            " → dead ({})",
            field("reason").unwrap_or_default()
        )),
        _ => {}
    }
    line
}
