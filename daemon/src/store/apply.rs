//! Applying finished attempts: one APPLY script per batch.

use std::sync::LazyLock;

use super::{Action, Completion, GROUP, MAX_HISTORY, MAX_STORED_RESULT, Queue, QueueError};
use crate::job::Outcome;

/// Most acknowledged entries left in a stream for the next trim; past it,
/// entries are deleted as they are acknowledged (see the APPLY script).
const MAX_ACKED_LEFT: usize = 100_000;

/// Longest failure message kept in a history entry.
const MAX_HISTORY_MESSAGE: usize = 512;

const APPLY: &str = include_str!("lua/apply.lua");

/// Hashed once: `invoke_async` sends EVALSHA and falls back to EVAL only
/// when the server does not have the script yet (e.g. after a restart).
static APPLY_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(APPLY));

impl Queue {
    /// Applies a batch of finished attempts in one round trip; returns, per
    /// completion, whether it took effect (a delivery that was already
    /// acknowledged, by another daemon or by an earlier send of this batch,
    /// is skipped).
    ///
    /// # Errors
    /// Redis errors; the batch can then be re-sent as it is.
    pub async fn apply(&self, batch: &[Completion]) -> Result<Vec<bool>, QueueError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut inv = APPLY_SCRIPT.key(&self.keys.jobs);
        inv.key(&self.keys.dead)
            .key(&self.keys.delayed)
            .key(&self.keys.acked)
            .arg(GROUP)
            .arg(&self.keys.record_prefix)
            .arg(self.succeeded_ttl.as_secs())
            .arg(&self.keys.queue)
            .arg(MAX_HISTORY)
            .arg(&self.keys.wake)
            .arg(MAX_ACKED_LEFT);
        // Nearly every completion of a batch ran the same plugin: its digest
        // is sent once and referred to by index.
        let mut digests: Vec<&str> = Vec::new();
        for c in batch {
            if !digests.contains(&&*c.plugin_digest) {
                digests.push(&c.plugin_digest);
            }
        }
        inv.arg(digests.len());
        for d in &digests {
            inv.arg(*d);
        }
        for c in batch {
            if c.action == Action::Ack && c.is_fresh() {
                let result: &[u8] = match &c.outcome {
                    Outcome::Success(out) if out.len() <= MAX_STORED_RESULT => out,
                    _ => b"",
                };
                let digest = digests
                    .iter()
                    .position(|d| *d == &*c.plugin_digest)
                    .map_or(0, |k| k + 1);
                inv.arg("f")
                    .arg(&c.entry_id)
                    .arg(&c.job)
                    .arg(c.first_at_ms)
                    .arg(c.finished_ms)
                    .arg(digest)
                    .arg(result);
                match &c.idempotency_key {
                    // The history line is the audit record of a keyed job's
                    // one completion.
                    Some(key) => inv
                        .arg(key)
                        .arg(u64::try_from(c.idempotency_ttl.as_millis()).unwrap_or(u64::MAX))
                        .arg(result_digest(&c.outcome))
                        .arg(history_entry(c)),
                    None => inv.arg(""),
                };
                continue;
            }
            let (kind, reason) = match c.action {
                Action::Ack => ("ok", ""),
                Action::Retry => ("retry", ""),
                Action::Dead(r) => ("dead", r.as_str()),
                Action::Duplicate => ("dup", c.duplicate_of.as_deref().unwrap_or(&c.job_id)),
            };
            let (result, class, code, message, upstream): (&[u8], &str, &str, &str, &str) = match &c
                .outcome
            {
                Outcome::Success(out) if out.len() <= MAX_STORED_RESULT => (out, "", "", "", ""),
                Outcome::Success(_) => (b"", "", "", "", ""),
                Outcome::Failure(f) => (
                    b"",
                    f.class.as_str(),
                    f.code.as_deref().unwrap_or(""),
                    &f.message,
                    f.upstream.as_deref().unwrap_or(""),
                ),
            };
            // A success does not need the payload any more; skip sending it.
            let payload: &[u8] = if c.action == Action::Ack {
                b""
            } else {
                &c.payload
            };
            inv.arg(kind)
                .arg(&c.entry_id)
                .arg(&c.job_id)
                .arg(&c.job)
                .arg(c.attempt)
                .arg(c.started_ms)
                .arg(c.finished_ms)
                .arg(payload)
                .arg(result)
                .arg(class)
                .arg(code)
                .arg(message)
                .arg(upstream)
                .arg(reason)
                .arg(&*c.plugin_digest)
                .arg(if c.checkpoint.is_some() { "1" } else { "0" })
                .arg(c.checkpoint.as_deref().unwrap_or(b""))
                .arg(c.first_at_ms)
                .arg(c.delay_ms)
                .arg(history_entry(c))
                .arg(c.idempotency_key.as_deref().unwrap_or(""))
                .arg(u64::try_from(c.idempotency_ttl.as_millis()).unwrap_or(u64::MAX))
                .arg(if c.idempotency_key.is_some() {
                    result_digest(&c.outcome)
                } else {
                    String::new()
                })
                .arg(c.lease_expiries)
                .arg(match c.action {
                    Action::Dead(_) => c.dead_payload.as_deref().unwrap_or(&c.payload),
                    _ => b"",
                })
                .arg(c.extra.len());
            for (k, v) in &c.extra {
                inv.arg(k).arg(v);
            }
        }
        let mut con = self.con.clone();
        let took: String = inv.invoke_async(&mut con).await?;
        if took.len() != batch.len() {
            return Err(QueueError::Protocol {
                what: "apply",
                detail: format!("{} flags for {} completions", took.len(), batch.len()),
            });
        }
        Ok(took.bytes().map(|b| b == b'1').collect())
    }
}

/// sha256 of a success's result bytes, hex; empty for a failure.
fn result_digest(outcome: &Outcome) -> String {
    use sha2::Digest as _;
    match outcome {
        Outcome::Success(out) => hex::encode(sha2::Sha256::digest(out)),
        Outcome::Failure(_) => String::new(),
    }
}

/// One line of a job's history, as JSON.
fn history_entry(c: &Completion) -> String {
    let mut v = serde_json::json!({
        "attempt": c.attempt,
        "finished_at": c.finished_ms,
    });
    if c.started_ms > 0 {
        v["started_at"] = c.started_ms.into();
    }
    match &c.outcome {
        Outcome::Success(_) => v["class"] = "success".into(),
        Outcome::Failure(f) => {
            let mut message = f.message.clone();
            crate::runtime::truncate(&mut message, MAX_HISTORY_MESSAGE);
            v["class"] = f.class.as_str().into();
            v["message"] = message.into();
            if let Some(code) = &f.code {
                v["code"] = code.as_str().into();
            }
            if let Some(upstream) = &f.upstream {
                v["upstream"] = upstream.as_str().into();
            }
        }
    }
    match c.action {
        Action::Ack => v["then"] = "succeeded".into(),
        Action::Retry => {
            v["then"] = "retry".into();
            v["delay_ms"] = c.delay_ms.into();
        }
        Action::Dead(reason) => {
            v["then"] = "dead".into();
            v["reason"] = reason.as_str().into();
        }
        Action::Duplicate => {
            v["event"] = "duplicate".into();
            v["class"] = "duplicate".into();
            v["of"] = c.duplicate_of.as_deref().unwrap_or(&c.job_id).into();
            v["then"] = "acknowledged without running".into();
        }
    }
    if !c.plugin_digest.is_empty() {
        v["plugin"] = c.plugin_digest.get(..12).unwrap_or(&c.plugin_digest).into();
    }
    v.to_string()
}
