//! A raw stream entry ([`Delivery`]) and how it is read as a job. The job
//! it becomes ([`JobEntry`], or [`Malformed`]) and what its attempt asks for
//! ([`Completion`]) are domain types, outside the store; they are re-exported
//! here so that `store::JobEntry` and `store::Completion` keep working.

pub use crate::job::{JobEntry, Malformed};
pub use crate::transition::Completion;

/// Extra (correlation) fields carried from an entry to its retries and dead letter.
const MAX_EXTRA_FIELDS: usize = 32;

/// A raw stream entry as delivered by `XREADGROUP`.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The stream entry id.
    pub entry_id: String,
    /// Field/value pairs, as bytes.
    pub fields: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Delivery {
    /// Reads the entry as a job.
    ///
    /// # Errors
    /// [`Malformed`] when the `job` field is missing or not UTF-8, or the
    /// `attempt` field is not a positive number.
    pub fn parse(self) -> Result<JobEntry, Malformed> {
        let mut id = None;
        let mut job = None;
        let mut payload = Vec::new();
        let mut attempt = None;
        let mut checkpoint = None;
        let mut first_at = None;
        let mut last_delay_ms = None;
        let mut lease_expiries = 0;
        let mut extra = Vec::new();
        let mut problems = Vec::new();
        for (name, value) in self.fields {
            let Ok(name) = String::from_utf8(name) else {
                problems.push("a field name is not UTF-8".to_string());
                continue;
            };
            match name.as_str() {
                "id" => id = String::from_utf8(value).ok(),
                "job" => match String::from_utf8(value) {
                    Ok(j) if !j.is_empty() => job = Some(j),
                    _ => problems.push("the `job` field is empty or not UTF-8".to_string()),
                },
                "payload" => payload = value,
                "attempt" => match std::str::from_utf8(&value)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                {
                    Some(n) if n >= 1 => attempt = Some(n),
                    _ => problems.push(format!(
                        "the `attempt` field `{}` is not a positive number",
                        String::from_utf8_lossy(&value)
                    )),
                },
                "checkpoint" => checkpoint = Some(value),
                "first_at" => {
                    first_at = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                }
                "lease_expiries" => {
                    lease_expiries = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                }
                "last_delay_ms" => {
                    last_delay_ms = std::str::from_utf8(&value)
                        .ok()
                        .and_then(|s| s.parse().ok());
                }
                _ if extra.len() < MAX_EXTRA_FIELDS => extra.push((name, value)),
                _ => {}
            }
        }
        if job.is_none() && problems.is_empty() {
            problems.push(
                "the entry has no `job` field; enqueue with `XADD ward:{Q}:jobs * job <type> payload <bytes>`"
                    .to_string(),
            );
        }
        match job {
            Some(job) if problems.is_empty() => {
                let idempotency_key = extra
                    .iter()
                    .find(|(k, _)| k == "idempotency_key")
                    .and_then(|(_, v)| String::from_utf8(v.clone()).ok());
                Ok(JobEntry {
                    id: id.unwrap_or_else(|| self.entry_id.clone()),
                    entry_id: self.entry_id,
                    job,
                    payload,
                    attempt: attempt.unwrap_or(1),
                    idempotency_key,
                    checkpoint,
                    first_at,
                    last_delay_ms,
                    lease_expiries,
                    extra,
                })
            }
            _ => {
                if let Some(job) = job {
                    extra.push(("job".to_string(), job.into_bytes()));
                }
                Err(Malformed {
                    entry_id: self.entry_id,
                    why: problems.join("; "),
                    payload,
                    extra,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(fields: &[(&[u8], &[u8])]) -> Delivery {
        Delivery {
            entry_id: "1-0".into(),
            fields: fields
                .iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        }
    }

    #[test]
    fn a_plain_xadd_entry_is_a_first_attempt_with_the_entry_id_as_job_id() {
        let j = delivery(&[
            (b"job", b"send"),
            (b"payload", b"\xff\x00"),
            (b"user_id", b"7"),
        ])
        .parse()
        .unwrap();
        assert_eq!(j.id, "1-0");
        assert_eq!(j.attempt, 1);
        assert_eq!(j.payload, b"\xff\x00");
        assert_eq!(j.extra, vec![("user_id".to_string(), b"7".to_vec())]);
    }

    #[test]
    fn a_retry_entry_keeps_its_job_id_and_attempt() {
        let j = delivery(&[
            (b"id", b"5-1"),
            (b"job", b"send"),
            (b"attempt", b"3"),
            (b"checkpoint", b"c"),
        ])
        .parse()
        .unwrap();
        assert_eq!((j.id.as_str(), j.attempt), ("5-1", 3));
        assert_eq!(j.checkpoint.as_deref(), Some(&b"c"[..]));
    }

    #[test]
    fn entries_without_a_job_are_malformed_and_keep_their_fields() {
        let m = delivery(&[(b"payload", b"p"), (b"order_id", b"9")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("no `job` field"), "{}", m.why);
        assert_eq!(m.payload, b"p");
        assert_eq!(m.extra, vec![("order_id".to_string(), b"9".to_vec())]);
    }

    #[test]
    fn a_bad_attempt_number_is_malformed() {
        let m = delivery(&[(b"job", b"a"), (b"attempt", b"zero")])
            .parse()
            .unwrap_err();
        assert!(m.why.contains("`attempt`"), "{}", m.why);
    }
}
