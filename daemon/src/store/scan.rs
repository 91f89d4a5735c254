//! Pages of the jobs that wait (or run) somewhere, for bulk actions on
//! "every job matching": the delayed and held sets page by `ZSCAN`, the
//! streams by entry id, the running ones by `XPENDING`. Each page is a
//! bounded number of short commands, so a bulk action over 50,000 jobs
//! never holds Redis for long, and holds one page in memory.

use redis::Value;

use super::reply::parse_entries;
use super::{Delivery, GROUP, Queue, QueueError};
use crate::priority::Priority;

/// Where a waiting job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Waiting {
    /// In the stream, not yet delivered.
    Queued,
    /// In the delayed set (a delay or a retry).
    Delayed,
    /// Held while its job type or queue is paused.
    Paused,
    /// Delivered: an attempt is under way.
    Running,
}

impl Waiting {
    /// The state's name (`queued`, `delayed`, `paused`, `running`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Queued => "queued",
            Waiting::Delayed => "delayed",
            Waiting::Paused => "paused",
            Waiting::Running => "running",
        }
    }
}

/// One job a page found.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The job id.
    pub id: String,
    /// Its job type ("" when its record is gone).
    pub job: String,
    /// Where it is.
    pub state: Waiting,
    /// Its producer's fields (correlation ids such as `order_id`).
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Queue {
    /// One page (about `count`) of the delayed or held set, with each
    /// job's type and fields from its record; `cursor` 0 starts, and the
    /// returned cursor is 0 when the set has been walked. Members added or
    /// removed meanwhile may be seen or not, as `ZSCAN` promises; none is
    /// missed that stayed the whole time.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn scan_set(
        &self,
        which: Waiting,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Candidate>), QueueError> {
        let key = match which {
            Waiting::Paused => &self.keys.held,
            _ => &self.keys.delayed,
        };
        let mut con = self.con.clone();
        let (next, members): (u64, Vec<String>) = redis::cmd("ZSCAN")
            .arg(key)
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        // ZSCAN answers member, score, member, score...
        let ids: Vec<String> = members.into_iter().step_by(2).collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HGETALL").arg(self.keys.record(id));
        }
        let records: Vec<Vec<(String, Vec<u8>)>> = if ids.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut con).await?
        };
        let out = ids
            .into_iter()
            .zip(records)
            .map(|(id, record)| {
                let job = record
                    .iter()
                    .find(|(k, _)| k == "job")
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let fields = record
                    .into_iter()
                    .filter_map(|(k, v)| {
                        Some((k.strip_prefix(super::fields::EXTRA_PREFIX)?.to_string(), v))
                    })
                    .collect();
                Candidate {
                    id,
                    job,
                    state: which,
                    fields,
                }
            })
            .collect();
        Ok((next, out))
    }

    /// One page (up to `count`) of level `level`'s stream after entry
    /// `after` (`None`: from the start): the entries not yet delivered
    /// (`Queued`). Returns the last entry id read (`None` once done).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn scan_stream(
        &self,
        level: Priority,
        after: Option<&str>,
        count: usize,
    ) -> Result<(Option<String>, Vec<Candidate>), QueueError> {
        let stream = self.keys.stream(level);
        let mut con = self.con.clone();
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let reply: Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut con)
            .await?;
        let entries = parse_entries(reply, "XRANGE")?;
        let last = entries.last().map(|e| e.entry_id.clone());
        let delivered = self.last_delivered(stream).await?;
        let out = entries
            .into_iter()
            .filter(|e| delivered.as_deref().is_none_or(|d| later(&e.entry_id, d)))
            .filter_map(|e| candidate(e, Waiting::Queued))
            .collect();
        Ok((last, out))
    }

    /// One page (up to `count`) of level `level`'s deliveries under way
    /// (pending in the group) after entry `after`, each with its entry's
    /// fields. Returns the last entry id read (`None` once done).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn scan_running(
        &self,
        level: Priority,
        after: Option<&str>,
        count: usize,
    ) -> Result<(Option<String>, Vec<Candidate>), QueueError> {
        let stream = self.keys.stream(level);
        let mut con = self.con.clone();
        let start = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let pending: Result<Vec<(String, String, u64, u64)>, _> = redis::cmd("XPENDING")
            .arg(stream)
            .arg(GROUP)
            .arg(start)
            .arg("+")
            .arg(count)
            .query_async(&mut con)
            .await;
        let pending = match pending {
            Ok(p) => p,
            // No stream or no group yet: nothing runs.
            Err(e) if e.code() == Some("NOGROUP") => return Ok((None, Vec::new())),
            Err(e) => return Err(e.into()),
        };
        let last = pending.last().map(|p| p.0.clone());
        let mut pipe = redis::pipe();
        for (id, ..) in &pending {
            pipe.cmd("XRANGE").arg(stream).arg(id).arg(id);
        }
        let replies: Vec<Value> = if pending.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut con).await?
        };
        let mut out = Vec::new();
        for reply in replies {
            for e in parse_entries(reply, "XRANGE")? {
                out.extend(candidate(e, Waiting::Running));
            }
        }
        Ok((last, out))
    }

    /// The group's last delivered entry of `stream` (`None` without a group).
    pub(super) async fn last_delivered(&self, stream: &str) -> Result<Option<String>, QueueError> {
        let mut con = self.con.clone();
        let groups: Result<Vec<Vec<Value>>, _> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut con)
            .await;
        let Ok(groups) = groups else {
            return Ok(None);
        };
        for g in groups {
            let text = |v: &Value| match v {
                Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
                Value::SimpleString(s) => Some(s.clone()),
                _ => None,
            };
            let pairs: Vec<(Option<String>, &Value)> = g
                .chunks(2)
                .filter_map(|c| Some((text(c.first()?), c.get(1)?)))
                .collect();
            let is_ours = pairs
                .iter()
                .any(|(k, v)| k.as_deref() == Some("name") && text(v).as_deref() == Some(GROUP));
            if is_ours {
                return Ok(pairs
                    .iter()
                    .find(|(k, _)| k.as_deref() == Some("last-delivered-id"))
                    .and_then(|(_, v)| text(v)));
            }
        }
        Ok(None)
    }
}

/// Whether entry id `a` comes after `b`.
pub(super) fn later(a: &str, b: &str) -> bool {
    let split = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (
            ms.parse::<u64>().unwrap_or(0),
            seq.parse::<u64>().unwrap_or(0),
        )
    };
    split(a) > split(b)
}

/// An entry as a candidate; a malformed one is nobody's job to cancel.
fn candidate(d: Delivery, state: Waiting) -> Option<Candidate> {
    let entry = d.parse().ok()?;
    Some(Candidate {
        id: entry.id,
        job: entry.job,
        state,
        fields: entry.extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_compare_as_numbers() {
        assert!(later("10-0", "9-5"));
        assert!(later("9-10", "9-9"));
        assert!(!later("9-9", "9-9"));
    }
}
