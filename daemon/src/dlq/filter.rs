//! Which dead letters a listing or a bulk action takes: the same filter for
//! `ward dlq list`, `ward dlq requeue|discard --all` and the admin API.

use serde::{Deserialize, Serialize};

use super::DeadLetter;
use crate::store;
use crate::text::format_ms;

/// Which dead letters to take. Every filter that is set must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Job type, exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Text the reason contains, ignoring case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The last failure's code, exact.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Dead-lettered at or after (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Dead-lettered before (Unix ms, exclusive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
    /// Correlation fields the dead letter carries (`order_id`, `user_id`,
    /// `idempotency_key`, ...), each with exactly this value.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

impl Filter {
    /// Whether `d` passes every filter that is set.
    #[must_use]
    pub fn matches(&self, d: &DeadLetter) -> bool {
        self.job.as_ref().is_none_or(|j| *j == d.job)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| d.reason.to_lowercase().contains(&r.to_lowercase()))
            && self
                .code
                .as_ref()
                .is_none_or(|c| d.code.as_ref() == Some(c))
            && self.since_ms.is_none_or(|s| d.dead_at_ms >= s)
            && self.until_ms.is_none_or(|u| d.dead_at_ms < u)
            && self
                .fields
                .iter()
                .all(|(name, value)| field(d, name) == Some(value))
    }

    /// Whether no filter is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Filter::default()
    }

    /// The filters, for messages and the audit trail: `job `flaky`, reason
    /// containing "budget"`.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(j) = &self.job {
            parts.push(format!("job `{j}`"));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("reason containing \"{r}\""));
        }
        if let Some(c) = &self.code {
            parts.push(format!("code `{c}`"));
        }
        if let Some(s) = self.since_ms {
            parts.push(format!("dead-lettered since {}", format_ms(s)));
        }
        if let Some(u) = self.until_ms {
            parts.push(format!("dead-lettered before {}", format_ms(u)));
        }
        for (name, value) in &self.fields {
            parts.push(format!("{name}={value}"));
        }
        parts.join(", ")
    }
}

/// The dead letter's correlation field `name`. One named like a dead
/// letter's own field (a producer's `code`) is kept as `x:code`: the name
/// the producer used finds it too.
fn field<'d>(d: &'d DeadLetter, name: &str) -> Option<&'d String> {
    d.extra.get(name).or_else(|| {
        d.extra
            .get(&format!("{}{name}", store::fields::EXTRA_PREFIX))
    })
}

/// Parses `--since` or `--until`: a duration back from now or an RFC 3339
/// time, to Unix ms.
///
/// # Errors
/// A message showing both accepted forms.
pub fn parse_since(s: &str) -> Result<u64, String> {
    parse_since_at(s, store::now_ms())
}

fn parse_since_at(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{s}` is before 1970"));
    }
    match humantime::parse_duration(s.trim()) {
        Ok(d) => Ok(now_ms.saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => Err(format!(
            "`{s}` is neither a duration back from now (like \"30m\", \"2h\", \"7d\") nor an RFC 3339 time (like 2026-11-22T03:00:00Z)"
        )),
    }
}

/// Parses `--field NAME=VALUE`.
///
/// # Errors
/// A message saying the form, when there is no `=` or no name.
pub fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not NAME=VALUE (like order_id=o-17): a correlation field and the value it must have"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Delivery;

    fn letter(job: &str, reason: &str, dead_ms: u64, extra: &[(&str, &str)]) -> DeadLetter {
        let mut fields = vec![
            (b"id".to_vec(), b"1-0".to_vec()),
            (b"job".to_vec(), job.as_bytes().to_vec()),
            (b"reason".to_vec(), reason.as_bytes().to_vec()),
            (b"code".to_vec(), b"declined".to_vec()),
        ];
        for (k, v) in extra {
            fields.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
        DeadLetter::from_entry(Delivery {
            entry_id: format!("{dead_ms}-0"),
            fields,
        })
    }

    #[test]
    fn filters_combine_and_reason_matches_a_substring_ignoring_case() {
        let a = letter("send", "budget exhausted: attempts", 2000, &[]);
        let b = letter("bill", "permanent", 1000, &[]);
        let f = Filter {
            reason: Some("BUDGET".into()),
            ..Filter::default()
        };
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filter {
            job: Some("bill".into()),
            since_ms: Some(1000),
            ..Filter::default()
        };
        assert!(!f.matches(&a) && f.matches(&b));
        let f = Filter {
            since_ms: Some(1500),
            ..Filter::default()
        };
        assert!(f.matches(&a) && !f.matches(&b));
        let f = Filter {
            until_ms: Some(2000),
            ..Filter::default()
        };
        assert!(!f.matches(&a) && f.matches(&b), "until is exclusive");
        assert!(Filter::default().matches(&a) && Filter::default().is_empty());
    }

    #[test]
    fn code_and_correlation_fields_match_exactly() {
        let a = letter(
            "send",
            "permanent",
            1,
            &[("order_id", "o-3"), ("x:code", "c-9")],
        );
        let by = |code: Option<&str>, fields: &[(&str, &str)]| Filter {
            code: code.map(String::from),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Filter::default()
        };
        assert!(by(Some("declined"), &[]).matches(&a));
        assert!(!by(Some("decl"), &[]).matches(&a), "no substring for codes");
        assert!(by(None, &[("order_id", "o-3")]).matches(&a));
        assert!(!by(None, &[("order_id", "o-33")]).matches(&a));
        assert!(!by(None, &[("order_id", "o-3"), ("user_id", "u")]).matches(&a));
        assert!(
            by(None, &[("code", "c-9")]).matches(&a),
            "a producer's `code` kept aside as `x:code`"
        );
        assert_eq!(
            by(Some("declined"), &[("order_id", "o-3")]).describe(),
            "code `declined`, order_id=o-3"
        );
    }

    #[test]
    fn since_takes_a_duration_or_a_time_and_explains_anything_else() {
        assert_eq!(parse_since_at("2h", 10_000_000), Ok(10_000_000 - 7_200_000));
        assert_eq!(
            parse_since_at("1970-01-01T00:00:01Z", 0),
            Ok(1000),
            "an RFC 3339 time"
        );
        let e = parse_since_at("yesterday", 0).unwrap_err();
        assert!(e.contains("\"30m\"") && e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn a_field_is_name_equals_value() {
        assert_eq!(
            parse_field("order_id=o=1"),
            Ok(("order_id".into(), "o=1".into()))
        );
        assert!(parse_field("order_id").is_err() && parse_field("=x").is_err());
    }
}
