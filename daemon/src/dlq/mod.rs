//! The dead-letter stream's logic: reading an entry of `ward:{Q}:dead` as a
//! [`DeadLetter`], filtering ([`Filter`]), paging, finding one by job id,
//! counting them by job type and code ([`groups`]), and requeuing or discarding a chunk of them. Nothing here prints and
//! nothing here audits: the operator actions built on it are
//! [`crate::control::dead`]'s, which `ward dlq` and the admin API call.
//!
//! A dead letter is an entry of `ward:{Q}:dead` written when a job was
//! given up (see [`crate::store::Queue::apply`]). Every Redis operation is a
//! named operation of [`crate::store::Queue`], and a requeue or a discard is
//! one Lua script call per chunk of [`ACT_CHUNK`] jobs whose guard, per
//! job, is the removal of the dead letter itself, so two operators acting
//! on the same job at once act once.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::store::{DEAD_ENTRY_FIELDS, Delivery};
use crate::text::format_ms;

mod act;
mod filter;
mod find;
mod groups;
mod pages;

pub use act::{ACT_CHUNK, Acted, Op, act};
pub use filter::{Filter, parse_field, parse_since};
pub use find::{Located, list, locate, not_dead};
pub use groups::{Group, Groups, groups};
pub use pages::{Pages, count};

/// How many dead letters `ward dlq list` shows without `--limit`.
pub const DEFAULT_LIST_LIMIT: usize = 50;
/// Entries read per round trip while scanning the dead-letter stream.
const PAGE: usize = 500;
/// Dead letters held at once by a command that acts on every one
/// (`requeue --all`): each may carry a payload of up to `dead_payload_max`,
/// so this many bound the command's memory (100 × 64 KiB ≈ 6 MiB).
pub const ACT_PAGE: usize = 100;
/// Widest "last error" column in the table.
const ERROR_WIDTH: usize = 60;

/// One entry of `ward:{Q}:dead`, as `ward dlq` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The entry's id in `ward:{Q}:dead`.
    pub dead_id: String,
    /// When the job was dead-lettered (Unix ms, the Redis clock): the
    /// time part of `dead_id`.
    pub dead_at_ms: u64,
    /// The job id.
    pub id: String,
    /// The job type.
    pub job: String,
    /// The queue.
    pub queue: String,
    /// Why it was given up (`permanent`, `budget exhausted: attempts`, ...).
    pub reason: String,
    /// The last failure's class.
    pub class: String,
    /// The last failure's code.
    pub code: Option<String>,
    /// The last failure's message.
    pub message: String,
    /// The upstream the last failure blamed.
    pub upstream: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Start of the first attempt, Unix ms.
    pub first_attempt_at_ms: Option<u64>,
    /// End of the last attempt, Unix ms.
    pub last_attempt_at_ms: Option<u64>,
    /// sha256 of the plugin that ran the last attempt.
    pub plugin_digest: Option<String>,
    /// The stream entry of the last delivery.
    pub entry: Option<String>,
    /// The idempotency key the job was enqueued with.
    pub idempotency_key: Option<String>,
    /// The payload as the dead letter shows it (redacted, or a marker when
    /// too large), when it is UTF-8.
    pub payload: Option<String>,
    /// The payload as hex, when it is not UTF-8.
    pub payload_hex: Option<String>,
    /// Correlation fields carried from the job's entry (`user_id`, ...),
    /// `idempotency_key` included.
    pub extra: BTreeMap<String, String>,
}

impl DeadLetter {
    /// Reads a dead-letter stream entry. Missing fields read as empty.
    #[must_use]
    pub fn from_entry(d: Delivery) -> DeadLetter {
        let mut fixed: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
        let mut extra = BTreeMap::new();
        for (name, value) in d.fields {
            let name = String::from_utf8_lossy(&name).into_owned();
            match DEAD_ENTRY_FIELDS.iter().find(|f| **f == name) {
                Some(f) => {
                    fixed.insert(f, value);
                }
                None => {
                    extra.insert(name, String::from_utf8_lossy(&value).into_owned());
                }
            }
        }
        let text = |k: &str| {
            fixed
                .get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let opt = |k: &str| Some(text(k)).filter(|v| !v.is_empty());
        let number = |k: &str| text(k).parse::<u64>().ok();
        let payload = fixed.get("payload").cloned().unwrap_or_default();
        let (payload, payload_hex) = match String::from_utf8(payload) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(hex::encode(e.into_bytes()))),
        };
        DeadLetter {
            dead_at_ms: entry_ms(&d.entry_id),
            dead_id: d.entry_id,
            id: text("id"),
            job: text("job"),
            queue: text("queue"),
            reason: text("reason"),
            class: text("class"),
            code: opt("code"),
            message: text("message"),
            upstream: opt("upstream"),
            attempts: number("attempts").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            first_attempt_at_ms: number("first_at"),
            last_attempt_at_ms: number("last_at"),
            plugin_digest: opt("plugin"),
            entry: opt("entry"),
            idempotency_key: extra.get("idempotency_key").cloned(),
            payload,
            payload_hex,
            extra,
        }
    }

    /// `class [code]: message`, on one line.
    #[must_use]
    pub fn last_error(&self) -> String {
        let code = self
            .code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let message = self.message.replace(['\n', '\r'], " ");
        if message.is_empty() {
            format!("{}{code}", self.class)
        } else {
            format!("{}{code}: {message}", self.class)
        }
    }
}

/// The time part of a stream entry id, in ms.
fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// The human table of `ward dlq list`.
#[must_use]
pub fn table(letters: &[DeadLetter]) -> String {
    let rows: Vec<[String; 6]> = letters
        .iter()
        .map(|d| {
            let mut error = d.last_error();
            if error.chars().count() > ERROR_WIDTH {
                error = error.chars().take(ERROR_WIDTH - 1).collect::<String>() + "…";
            }
            [
                d.id.clone(),
                d.job.clone(),
                d.reason.clone(),
                d.attempts.to_string(),
                error,
                format_ms(d.dead_at_ms),
            ]
        })
        .collect();
    let header = ["ID", "JOB", "REASON", "ATTEMPTS", "LAST ERROR", "DEAD AT"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = w - cell.chars().count();
                let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, fields: &[(&str, &[u8])]) -> Delivery {
        Delivery {
            entry_id: id.into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec()))
                .collect(),
        }
    }

    fn letter(job: &str, reason: &str, dead_ms: u64) -> DeadLetter {
        DeadLetter::from_entry(entry(
            &format!("{dead_ms}-0"),
            &[
                ("id", b"1-0"),
                ("job", job.as_bytes()),
                ("reason", reason.as_bytes()),
            ],
        ))
    }

    #[test]
    fn an_entry_reads_as_a_dead_letter_with_its_correlation_fields() {
        let d = DeadLetter::from_entry(entry(
            "1700000000123-4",
            &[
                ("id", b"1699-0"),
                ("job", b"send"),
                ("queue", b"q"),
                ("reason", b"permanent"),
                ("class", b"permanent"),
                ("code", b"declined"),
                ("message", b"card\ndeclined"),
                ("upstream", b""),
                ("attempts", b"2"),
                ("first_at", b"1699"),
                ("last_at", b"1700"),
                ("plugin", b"abc"),
                ("entry", b"1699-0"),
                ("payload", b"{}"),
                ("idempotency_key", b"k-1"),
                ("user_id", b"u-7"),
            ],
        ));
        assert_eq!(d.dead_at_ms, 1_700_000_000_123);
        assert_eq!((d.id.as_str(), d.attempts), ("1699-0", 2));
        assert_eq!(d.upstream, None, "empty reads as absent");
        assert_eq!(d.idempotency_key.as_deref(), Some("k-1"));
        assert_eq!(d.extra.get("user_id").map(String::as_str), Some("u-7"));
        assert!(!d.extra.contains_key("reason"));
        assert_eq!(d.payload.as_deref(), Some("{}"));
        assert_eq!(d.last_error(), "permanent [declined]: card declined");
    }

    #[test]
    fn a_binary_payload_is_shown_as_hex() {
        let d = DeadLetter::from_entry(entry("1-0", &[("payload", b"\xff\x00")]));
        assert_eq!((d.payload, d.payload_hex.as_deref()), (None, Some("ff00")));
    }

    #[test]
    fn the_table_aligns_columns_and_shortens_long_errors() {
        let mut d = letter("send", "permanent", 0);
        d.class = "permanent".into();
        d.message = "x".repeat(200);
        let t = table(&[d]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID   JOB   REASON"), "{t}");
        assert_eq!(
            lines[0].find("LAST ERROR"),
            lines[1].find("permanent: x"),
            "{t}"
        );
        assert!(
            lines[1].contains('…') && !lines[1].contains(&"x".repeat(60)),
            "{t}"
        );
    }
}
