//! Looking jobs up: their state, record fields, history, stream entries.

use crate::priority::Priority;
use redis::{RedisError, Value};

use super::reply::{looks_like_entry_id, parse_entries};
use super::scan::later;
use super::{Delivery, GROUP, Queue, QueueError};
use crate::job::JobState;

/// A job as `ward job show` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobStatus {
    /// Job id.
    pub id: String,
    /// Queue name.
    pub queue: String,
    /// Current state.
    pub state: String,
    /// When a waiting job (delayed or retrying) is due, Unix ms.
    pub due_at_ms: Option<u64>,
    /// Attempts and events, oldest first (bounded).
    pub history: Vec<serde_json::Value>,
    /// Job type, if known.
    pub job: Option<String>,
    /// Attempts made so far (including one running now).
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<LastError>,
    /// First attempt start, Unix ms.
    pub first_attempt_at_ms: Option<u64>,
    /// Last attempt end, Unix ms.
    pub last_attempt_at_ms: Option<u64>,
    /// sha256 of the plugin that ran the last attempt.
    pub plugin_digest: Option<String>,
    /// Why it was dead-lettered, if it was.
    pub dead_reason: Option<String>,
    /// The result bytes of a success, as text when UTF-8, else lossily
    /// (kept up to the job type's `result_max_bytes`).
    pub result: Option<String>,
    /// Why a success's result was not kept (it was over `result_max_bytes`).
    pub result_note: Option<String>,
    /// Who cancelled it (or asked to, while it runs), when and why.
    pub cancel: Option<CancelInfo>,
    /// What its plugin last reported of its progress (`ward:plugin@0.2.0`).
    pub progress: Option<super::JobProgress>,
}

/// An operator's cancel of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CancelInfo {
    /// Who.
    pub by: String,
    /// Why (`""`: no note).
    pub note: String,
    /// When it was cancelled, Unix ms (`None` while the request waits for
    /// the running attempt to end).
    pub cancelled_at_ms: Option<u64>,
    /// When the request was made, for a job that was running then.
    pub requested_at_ms: Option<u64>,
}

/// The last failure of a job.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastError {
    /// Failure class.
    pub class: String,
    /// Failure code.
    pub code: Option<String>,
    /// Message.
    pub message: String,
    /// Upstream.
    pub upstream: Option<String>,
}

/// A job with no record yet, as its stream holds it.
struct Unrecorded {
    /// Its entry.
    entry: Delivery,
    /// Whether a worker holds it (delivered, not yet acknowledged).
    running: bool,
}

impl Queue {
    /// Looks a job up: its record if it has one, else its stream entry.
    /// Returns `None` when Redis knows nothing of `id` in this queue.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn job_status(&self, id: &str) -> Result<Option<JobStatus>, QueueError> {
        let mut record = self.record(id).await?;
        let mut unrecorded = None;
        if record.is_empty() {
            unrecorded = self.unrecorded(id).await?;
            // Unless a worker held it when it was looked at, the job may
            // have ended since the record was read (its entry acknowledged
            // and its record written in one script): look again.
            if !matches!(unrecorded, Some(Unrecorded { running: true, .. })) {
                record = self.record(id).await?;
            }
        }
        let text = |name: &str| {
            record
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .filter(|v| !v.is_empty())
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());

        if record.is_empty() {
            // No record yet: the job has not finished an attempt. It is either
            // waiting in the stream or being run by a worker right now.
            let Some(Unrecorded { entry, running }) = unrecorded else {
                return Ok(None);
            };
            let job = entry.parse().ok();
            return Ok(Some(JobStatus {
                id: id.to_string(),
                queue: self.keys.queue.clone(),
                due_at_ms: None,
                history: Vec::new(),
                state: if running {
                    JobState::Running
                } else {
                    JobState::Queued
                }
                .to_string(),
                job: job.as_ref().map(|j| j.job.clone()),
                attempts: if running {
                    job.map_or(1, |j| j.attempt)
                } else {
                    0
                },
                last_error: None,
                first_attempt_at_ms: None,
                last_attempt_at_ms: None,
                plugin_digest: None,
                dead_reason: None,
                result: None,
                result_note: None,
                cancel: None,
                progress: self.job_progress(id).await?,
            }));
        }

        let mut state = text("state").unwrap_or_else(|| "unknown".into());
        let mut attempts = number("attempts").map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX));
        if state == JobState::Queued.as_str()
            && let Some(entry) = text("entry")
            && self.is_pending(&entry).await?
        {
            state = JobState::Running.to_string();
            attempts += 1;
        }
        let last_error = text("last_class").map(|class| LastError {
            class,
            code: text("last_code"),
            message: text("last_message").unwrap_or_default(),
            upstream: text("last_upstream"),
        });
        let mut history = self.history(id).await?;
        if let Some(line) = fresh_success_line(&record)
            && !history.iter().any(|h| h["then"] == "succeeded")
        {
            history.insert(0, line);
        }
        Ok(Some(JobStatus {
            id: id.to_string(),
            queue: self.keys.queue.clone(),
            state,
            due_at_ms: number("due_at"),
            history,
            job: text("job"),
            attempts,
            last_error,
            first_attempt_at_ms: number("first_at"),
            last_attempt_at_ms: number("last_at"),
            plugin_digest: text("plugin"),
            dead_reason: text("dead_reason"),
            result: text("result"),
            result_note: text("result_note"),
            cancel: text("cancelled_by").map(|by| CancelInfo {
                by,
                note: text("cancel_note").unwrap_or_default(),
                cancelled_at_ms: number("cancelled_at"),
                requested_at_ms: number("cancel_requested_at"),
            }),
            progress: self.job_progress(id).await?,
        }))
    }

    /// Where job `id`, which has no record, stands: its entry, and whether
    /// a worker holds it. `None` when no stream holds it still to run: an
    /// acknowledged entry waits in the normal stream for a trim (see
    /// `lua/apply.lua`), and one the group delivered and no worker holds
    /// has ended. An entry id names one entry across the level streams (see
    /// `lua/lease.lua`), so the first found is the one.
    async fn unrecorded(&self, id: &str) -> Result<Option<Unrecorded>, QueueError> {
        for level in Priority::ALL {
            let stream = self.keys.stream(level);
            let Some(entry) = self.entry_in(stream, id).await? else {
                continue;
            };
            if self.is_pending_in(stream, id).await? {
                return Ok(Some(Unrecorded {
                    entry,
                    running: true,
                }));
            }
            let delivered = self.last_delivered(stream).await?;
            if delivered.is_some_and(|d| !later(id, &d)) {
                return Ok(None);
            }
            return Ok(Some(Unrecorded {
                entry,
                running: false,
            }));
        }
        Ok(None)
    }

    /// The entry with id `entry_id` of stream `stream`, if it is still there.
    pub(super) async fn entry_in(
        &self,
        stream: &str,
        entry_id: &str,
    ) -> Result<Option<Delivery>, QueueError> {
        if !looks_like_entry_id(entry_id) {
            return Ok(None);
        }
        let mut con = self.con.clone();
        let reply: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(entry_id)
            .arg(entry_id)
            .query_async(&mut con)
            .await?;
        Ok(parse_entries(reply, "XRANGE")?.into_iter().next())
    }

    /// Whether entry `entry_id` is delivered and not yet acknowledged.
    async fn is_pending(&self, entry_id: &str) -> Result<bool, QueueError> {
        for level in Priority::ALL {
            if self
                .is_pending_in(self.keys.stream(level), entry_id)
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether entry `entry_id` of `stream` is delivered and not yet
    /// acknowledged.
    async fn is_pending_in(&self, stream: &str, entry_id: &str) -> Result<bool, QueueError> {
        if !looks_like_entry_id(entry_id) {
            return Ok(false);
        }
        let mut con = self.con.clone();
        let reply: Result<Value, RedisError> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg(entry_id)
            .arg(entry_id)
            .arg(1)
            .query_async(&mut con)
            .await;
        match reply {
            Ok(Value::Array(items)) => Ok(!items.is_empty()),
            Ok(_) => Ok(false),
            // No daemon has created the group yet, so nothing is delivered.
            Err(e) if e.code() == Some("NOGROUP") => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Fields of job `id`'s record (`None` for each one missing).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn record_fields(
        &self,
        id: &str,
        fields: &[&str],
    ) -> Result<Vec<Option<String>>, QueueError> {
        let mut con = self.con.clone();
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys.record(id))
            .arg(fields)
            .query_async(&mut con)
            .await?;
        Ok(values)
    }

    /// The payload job `id`'s record keeps (as enqueued, bytes), if it
    /// keeps one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn record_payload(&self, id: &str) -> Result<Option<Vec<u8>>, QueueError> {
        let mut con = self.con.clone();
        let payload: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(self.keys.record(id))
            .arg("payload")
            .query_async(&mut con)
            .await?;
        Ok(payload)
    }

    /// The job's history lines (JSON), oldest first.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn history(&self, id: &str) -> Result<Vec<serde_json::Value>, QueueError> {
        let mut con = self.con.clone();
        let key = self.keys.history(id);
        let lines: Vec<Vec<u8>> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(|e| naming(e, &key, "a list", "job history"))?;
        Ok(lines
            .iter()
            .filter_map(|h| serde_json::from_slice(h).ok())
            .collect())
    }

    /// Job `id`'s record, field by field (empty when it has none).
    async fn record(&self, id: &str) -> Result<Vec<(String, Vec<u8>)>, QueueError> {
        let mut con = self.con.clone();
        let key = self.keys.record(id);
        redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .map_err(|e| naming(e, &key, "a hash", "job record"))
    }
}

/// A `WRONGTYPE` from Redis for `key` (which should hold `kind`), as an
/// error that names the key; any other error as it is.
fn naming(e: RedisError, key: &str, kind: &str, what: &'static str) -> QueueError {
    if e.code() == Some("WRONGTYPE") {
        QueueError::Protocol {
            what,
            detail: format!(
                "`{key}` holds another type than {kind} (WRONGTYPE): Ward did not write it; see what it holds with `TYPE {key}` before you remove it"
            ),
        }
    } else {
        e.into()
    }
}

/// The history line of a job that succeeded on its first delivery at once,
/// made up from its record (`record`'s fields): the script writes none for
/// it (see `apply.lua`), its record says it all. `None` for any other job.
fn fresh_success_line(record: &[(String, Vec<u8>)]) -> Option<serde_json::Value> {
    let text = |name: &str| {
        record
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v))
    };
    let number = |name: &str| text(name).and_then(|v| v.parse::<u64>().ok());
    if text("state").as_deref() != Some(JobState::Succeeded.as_str())
        || number("attempts") != Some(1)
        || text("duplicate_of").is_some()
    {
        return None;
    }
    let mut line = serde_json::json!({
        "attempt": 1,
        "finished_at": number("last_at")?,
        "class": "success",
        "then": "succeeded",
    });
    if let Some(started) = number("first_at") {
        line["started_at"] = started.into();
    }
    if let Some(digest) = text("plugin").filter(|d| !d.is_empty()) {
        line["plugin"] = digest.get(..12).unwrap_or(&digest).into();
    }
    Some(line)
}

/// What an idempotency key's record (`ward:{Q}:idem:<key>`) says: the job
/// that owns it, and whether that job completed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyOwner {
    /// The job that owns the key.
    pub job_id: String,
    /// Whether it completed (a redelivery or second enqueue is skipped).
    pub done: bool,
}

impl KeyOwner {
    /// A key's value as the scripts write it: `<job id>`, or
    /// `<job id> done <result digest>` once the job completed.
    #[must_use]
    pub fn parse(value: &str) -> Option<KeyOwner> {
        let mut words = value.split_whitespace();
        let job_id = words.next()?.to_string();
        Some(KeyOwner {
            job_id,
            done: words.next() == Some("done"),
        })
    }
}

impl Queue {
    /// Who owns idempotency key `key`, while its record lasts (its TTL).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn key_owner(&self, key: &str) -> Result<Option<KeyOwner>, QueueError> {
        let mut con = self.con.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(self.keys.idempotency(key))
            .query_async(&mut con)
            .await?;
        Ok(v.as_deref().and_then(KeyOwner::parse))
    }
}

#[cfg(test)]
mod key_owner_tests {
    use super::KeyOwner;

    #[test]
    fn a_key_record_names_its_job_and_whether_it_completed() {
        assert_eq!(
            KeyOwner::parse("1-0"),
            Some(KeyOwner {
                job_id: "1-0".into(),
                done: false
            })
        );
        assert_eq!(
            KeyOwner::parse("d17-3 done abc123"),
            Some(KeyOwner {
                job_id: "d17-3".into(),
                done: true
            })
        );
        assert_eq!(KeyOwner::parse("  "), None);
    }
}

#[cfg(test)]
mod fresh_line_tests {
    use super::fresh_success_line;

    fn record(fields: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        fields
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn a_fresh_success_reads_as_the_line_its_attempt_would_have_written() {
        let line = fresh_success_line(&record(&[
            ("state", "succeeded"),
            ("job", "send"),
            ("attempts", "1"),
            ("first_at", "1000"),
            ("last_at", "1250"),
            ("plugin", "0123456789abcdef0123"),
        ]))
        .expect("a line");
        assert_eq!(
            line,
            serde_json::json!({
                "attempt": 1, "started_at": 1000, "finished_at": 1250,
                "class": "success", "then": "succeeded", "plugin": "0123456789ab",
            })
        );
    }

    #[test]
    fn any_other_record_makes_up_no_line() {
        let base = [
            ("state", "succeeded"),
            ("attempts", "1"),
            ("first_at", "1000"),
            ("last_at", "1250"),
        ];
        let with = |k: &str, v: &str| {
            let mut r = record(&base);
            r.retain(|(name, _)| name != k);
            r.push((k.to_string(), v.as_bytes().to_vec()));
            r
        };
        assert!(fresh_success_line(&with("state", "dead")).is_none());
        assert!(fresh_success_line(&with("attempts", "2")).is_none());
        assert!(fresh_success_line(&with("duplicate_of", "1-0")).is_none());
        assert!(fresh_success_line(&record(&base[..3])).is_none(), "no end");
    }
}
