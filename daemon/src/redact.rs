//! What a dead-letter entry may show of a job's payload.
//!
//! A dead-letter entry is read by people and copied into tools, so it never
//! carries the fields a job type declares secret (`[[job]] redact = [..]`),
//! and never a copy of a payload too large to be worth duplicating
//! (`dead_payload_max`). Both rules are applied here, in Rust, before the
//! dead letter is written; the job record `ward:{Q}:job:<id>` keeps the
//! original payload, so a requeued job runs with exactly what was enqueued.
//!
//! Everything in this module is pure: bytes in, bytes out.

use std::borrow::Cow;
use std::fmt;

// The digest moved to a leaf; kept reachable here for callers.
pub use crate::digest::sha256_hex;
use crate::secret::REDACTED;

/// The largest payload copied into a dead-letter entry when neither the
/// queue nor `[defaults]` sets `dead_payload_max`.
pub const DEFAULT_DEAD_PAYLOAD_MAX: usize = 64 * 1024;

/// One field to redact, as written in `[[job]] redact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// `"password"`: a key of the top-level JSON object.
    Key(String),
    /// `"/card/number"`: a JSON pointer (RFC 6901), reaching nested objects
    /// and array elements (`/items/0/token`).
    Pointer(String),
}

impl FieldPath {
    /// Reads a `redact` entry: a top-level key, or a JSON pointer starting
    /// with `/`.
    ///
    /// # Errors
    /// A message saying what is wrong and what to write instead: an empty
    /// entry, a pointer that names no field (`"/"`), or a key containing `/`
    /// that was probably meant as a pointer.
    pub fn parse(s: &str) -> Result<FieldPath, String> {
        if s.is_empty() {
            return Err("an empty entry names no field; write a top-level key such as \"password\" or a JSON pointer such as \"/card/number\"".into());
        }
        if s.starts_with('/') {
            if s == "/" {
                // `/` is the empty key of the top-level object, which is
                // almost never what was meant.
                return Err("\"/\" names the empty key; write e.g. \"/card/number\"".into());
            }
            return Ok(FieldPath::Pointer(s.to_string()));
        }
        if s.contains('/') {
            return Err(format!(
                "\"{s}\" contains `/`: for a nested field write the JSON pointer \"/{s}\"; for a top-level key containing `/`, escape it as `~1` in a pointer (\"/{}\")",
                s.replace('~', "~0").replace('/', "~1")
            ));
        }
        Ok(FieldPath::Key(s.to_string()))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Key(k) | FieldPath::Pointer(k) => f.write_str(k),
        }
    }
}

/// The payload as a dead-letter entry may show it.
///
/// In order:
/// 1. a payload longer than `max` bytes becomes the marker
///    `[payload too large: N bytes, sha256 <hex>; the full payload is in the job record <record_key>]`;
/// 2. with no `redact` fields, the payload is shown as it is;
/// 3. a JSON payload has each configured field that is present replaced by
///    `"[redacted]"` (the bytes are left untouched when none is present);
/// 4. a payload that is not JSON, while fields are to be redacted, becomes
///    `[redacted: payload is not JSON, N bytes, sha256 <hex>]`: Ward cannot
///    tell where a secret would be, so it shows none of it.
///
/// `Cow::Borrowed` means "the payload as it is".
#[must_use]
pub fn dead_payload<'a>(
    payload: &'a [u8],
    redact: &[FieldPath],
    max: usize,
    record_key: &str,
) -> Cow<'a, [u8]> {
    if payload.len() > max {
        return Cow::Owned(
            format!(
                "[payload too large: {} bytes, sha256 {}; the full payload is in the job record {record_key}]",
                payload.len(),
                sha256_hex(payload)
            )
            .into_bytes(),
        );
    }
    if redact.is_empty() {
        return Cow::Borrowed(payload);
    }
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return Cow::Owned(
            format!(
                "[redacted: payload is not JSON, {} bytes, sha256 {}]",
                payload.len(),
                sha256_hex(payload)
            )
            .into_bytes(),
        );
    };
    if !redact_value(&mut value, redact) {
        return Cow::Borrowed(payload);
    }
    // Serializing a `Value` cannot fail (its keys are strings); should it
    // ever, show nothing rather than the secret.
    Cow::Owned(serde_json::to_vec(&value).unwrap_or_else(|_| REDACTED.as_bytes().to_vec()))
}

/// Replaces every field of `redact` present in `value` by `"[redacted]"`;
/// returns whether anything was replaced.
pub fn redact_value(value: &mut serde_json::Value, redact: &[FieldPath]) -> bool {
    let mut changed = false;
    for field in redact {
        let target = match field {
            FieldPath::Key(k) => value.as_object_mut().and_then(|o| o.get_mut(k)),
            FieldPath::Pointer(p) => value.pointer_mut(p),
        };
        if let Some(v) = target {
            *v = serde_json::Value::String(REDACTED.to_string());
            changed = true;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const REC: &str = "ward:{q}:job:1-0";

    fn paths(list: &[&str]) -> Vec<FieldPath> {
        list.iter().map(|s| FieldPath::parse(s).unwrap()).collect()
    }

    fn shown(payload: &[u8], redact: &[&str]) -> Vec<u8> {
        dead_payload(payload, &paths(redact), DEFAULT_DEAD_PAYLOAD_MAX, REC).into_owned()
    }

    fn shown_json(payload: &Value, redact: &[&str]) -> Value {
        serde_json::from_slice(&shown(payload.to_string().as_bytes(), redact)).unwrap()
    }

    #[test]
    fn top_level_keys_and_pointers_are_replaced() {
        let p = json!({
            "user": "ann",
            "password": "hunter2",
            "card": {"number": "4242424242424242", "exp": "12/30"},
            "items": [{"token": "t0"}, {"token": "t1"}],
        });
        let out = shown_json(&p, &["password", "/card/number", "/items/1/token"]);
        assert_eq!(
            out,
            json!({
                "user": "ann",
                "password": "[redacted]",
                "card": {"number": "[redacted]", "exp": "12/30"},
                "items": [{"token": "t0"}, {"token": "[redacted]"}],
            })
        );
    }

    #[test]
    fn a_key_is_top_level_only() {
        let p = json!({"inner": {"password": "x"}});
        assert_eq!(
            shown_json(&p, &["password"]),
            p,
            "use /inner/password to reach a nested field"
        );
    }

    #[test]
    fn whole_objects_can_be_redacted() {
        let p = json!({"card": {"number": "4242"}, "n": 1});
        assert_eq!(
            shown_json(&p, &["card"]),
            json!({"card": "[redacted]", "n": 1})
        );
    }

    #[test]
    fn a_payload_without_the_fields_is_shown_byte_for_byte() {
        // Key order and spacing survive when nothing had to be replaced.
        let raw = br#"{ "z": 1,  "a": 2 }"#;
        let out = dead_payload(raw, &paths(&["password", "/card/number"]), 1024, REC);
        assert!(matches!(out, Cow::Borrowed(_)));
        assert_eq!(&*out, raw);
    }

    #[test]
    fn without_redaction_any_payload_is_shown_as_it_is() {
        let raw = b"\xff\x00 not json";
        assert_eq!(shown(raw, &[]), raw);
    }

    #[test]
    fn a_non_json_payload_is_withheld_when_fields_are_to_be_redacted() {
        let raw = b"password=hunter2";
        let out = String::from_utf8(shown(raw, &["password"])).unwrap();
        assert_eq!(
            out,
            format!(
                "[redacted: payload is not JSON, 16 bytes, sha256 {}]",
                sha256_hex(raw)
            )
        );
        assert!(!out.contains("hunter2"));
    }

    #[test]
    fn a_payload_over_the_limit_becomes_a_marker_naming_the_record() {
        let raw = vec![b'a'; 2000];
        let out = dead_payload(&raw, &[], 1999, REC);
        let text = String::from_utf8(out.into_owned()).unwrap();
        assert_eq!(
            text,
            format!(
                "[payload too large: 2000 bytes, sha256 {}; the full payload is in the job record ward:{{q}}:job:1-0]",
                sha256_hex(&raw)
            )
        );
        assert_eq!(
            &*dead_payload(&raw, &[], 2000, REC),
            &raw[..],
            "at the limit is fine"
        );
    }

    #[test]
    fn an_oversized_payload_with_secrets_shows_none_of_them() {
        let p = json!({"password": "hunter2", "pad": "x".repeat(100)}).to_string();
        let out = dead_payload(p.as_bytes(), &paths(&["password"]), 50, REC);
        assert!(!String::from_utf8_lossy(&out).contains("hunter2"));
    }

    #[test]
    fn pointer_escapes_reach_keys_with_slashes() {
        let p = json!({"a/b": "s", "a": {"b": "t"}});
        assert_eq!(
            shown_json(&p, &["/a~1b"]),
            json!({"a/b": "[redacted]", "a": {"b": "t"}})
        );
    }

    #[test]
    fn bad_entries_are_explained() {
        assert!(FieldPath::parse("").unwrap_err().contains("empty"));
        assert!(FieldPath::parse("/").is_err());
        let e = FieldPath::parse("card/number").unwrap_err();
        assert!(e.contains("\"/card/number\""), "{e}");
        assert_eq!(
            FieldPath::parse("password"),
            Ok(FieldPath::Key("password".into()))
        );
        assert_eq!(
            FieldPath::parse("/card/number"),
            Ok(FieldPath::Pointer("/card/number".into()))
        );
    }
}
