//! What a viewer may see of payloads: exactly what a dead letter shows
//! ([`crate::redact::dead_payload`] with the job type's `redact` fields),
//! and nothing of a job type this API's config does not know (it cannot
//! tell which fields are secret). Operators see payloads as enqueued.

use crate::config::QueueConfig;
use crate::dlq::DeadLetter;
use crate::redact::{dead_payload, redact_value};
use crate::secret::REDACTED;

/// What replaces a payload whose job type the config does not name.
const UNKNOWN_TYPE: &str = "[redacted: job type not in the admin API's config]";

/// A job's payload as the caller may see it: as enqueued for an operator,
/// as a dead letter would show it for a viewer.
pub(super) fn payload(
    viewer: bool,
    q: &QueueConfig,
    job: Option<&str>,
    record_key: &str,
    payload: &[u8],
) -> String {
    if !viewer {
        return String::from_utf8_lossy(payload).into_owned();
    }
    let Some(jt) = job.and_then(|j| q.jobs.get(j)) else {
        return UNKNOWN_TYPE.to_string();
    };
    let shown = dead_payload(payload, &jt.redact, q.dead.payload_max, record_key);
    String::from_utf8_lossy(&shown).into_owned()
}

/// Text a plugin produced from the payload (its result) as a viewer may
/// see it: when it is JSON, the job type's `redact` fields hidden in it
/// too, since a plugin may echo what it was given.
pub(super) fn result(viewer: bool, q: &QueueConfig, job: Option<&str>, text: String) -> String {
    if !viewer {
        return text;
    }
    let Some(jt) = job.and_then(|j| q.jobs.get(j)) else {
        return UNKNOWN_TYPE.to_string();
    };
    if jt.redact.is_empty() {
        return text;
    }
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(mut v) => {
            if redact_value(&mut v, &jt.redact) {
                serde_json::to_string(&v).unwrap_or_else(|_| REDACTED.to_string())
            } else {
                text
            }
        }
        // Not JSON: where a secret would be cannot be told.
        Err(_) => REDACTED.to_string(),
    }
}

/// A dead letter as a viewer may see it. Its payload was redacted when it
/// was written, with the config of that day: redacted again with today's
/// (a field added to `redact` since), and hidden when the job type is not
/// in the config.
pub(super) fn dead_letter(viewer: bool, q: &QueueConfig, mut d: DeadLetter) -> DeadLetter {
    if !viewer {
        return d;
    }
    let Some(jt) = q.jobs.get(&d.job) else {
        d.payload = Some(UNKNOWN_TYPE.to_string());
        d.payload_hex = None;
        return d;
    };
    if jt.redact.is_empty() {
        return d;
    }
    if d.payload_hex.take().is_some() {
        d.payload = Some(REDACTED.to_string());
    }
    if let Some(p) = d.payload.take() {
        d.payload = Some(match serde_json::from_str::<serde_json::Value>(&p) {
            Ok(mut v) => {
                redact_value(&mut v, &jt.redact);
                serde_json::to_string(&v).unwrap_or_else(|_| REDACTED.to_string())
            }
            // A marker written by `dead_payload` (too large, not JSON).
            Err(_) if p.starts_with('[') => p,
            Err(_) => REDACTED.to_string(),
        });
    }
    d
}
