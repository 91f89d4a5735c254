//! The audit trail: one bounded stream, `ward:audit`, of every operator
//! action (pause, cancel, requeue, discard, edits, bulk actions), whichever
//! queue it touched. One stream for all queues, so `ward audit` needs no
//! list of queues and reads it in time order.

use std::collections::BTreeMap;

use redis::Value;

use super::reply::parse_entries;
use super::{QueueError, Store};

/// The audit stream's key.
pub const AUDIT_KEY: &str = "ward:audit";
/// About how many entries the audit stream keeps (older ones are trimmed,
/// approximately, as new ones arrive).
pub const AUDIT_MAX: usize = 100_000;

/// One operator action, as the audit stream holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    /// The entry's id in `ward:audit` (empty before it is written).
    #[serde(default)]
    pub id: String,
    /// When, Unix ms (the clock of whoever acted).
    pub at_ms: u64,
    /// Who: `--by`, the API token's name, or `$USER`.
    pub by: String,
    /// Through what: `cli` or `api`.
    pub via: String,
    /// What: `pause`, `resume`, `cancel`, `requeue`, `discard`, ...
    pub action: String,
    /// The queue acted on (empty for none).
    pub queue: String,
    /// On what: job ids, a job type, or the filter of a bulk action.
    pub target: String,
    /// How many jobs the action changed.
    pub count: u64,
    /// The operator's note (why).
    pub note: String,
    /// Anything else worth keeping, as JSON (empty for nothing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl AuditRecord {
    /// The stream entry's fields, in a fixed order.
    fn fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("at", self.at_ms.to_string()),
            ("by", self.by.clone()),
            ("via", self.via.clone()),
            ("action", self.action.clone()),
            ("queue", self.queue.clone()),
            ("target", self.target.clone()),
            ("count", self.count.to_string()),
            ("note", self.note.clone()),
            ("detail", self.detail.clone()),
        ]
    }

    fn from_fields(id: String, f: &BTreeMap<String, String>) -> AuditRecord {
        let text = |k: &str| f.get(k).cloned().unwrap_or_default();
        let number = |k: &str| f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        AuditRecord {
            id,
            at_ms: number("at"),
            by: text("by"),
            via: text("via"),
            action: text("action"),
            queue: text("queue"),
            target: text("target"),
            count: number("count"),
            note: text("note"),
            detail: text("detail"),
        }
    }
}

impl Store {
    /// Appends `record` to the audit stream (trimmed to about
    /// [`AUDIT_MAX`] entries); returns its entry id.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn append_audit(&self, record: &AuditRecord) -> Result<String, QueueError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(AUDIT_KEY)
            .arg("MAXLEN")
            .arg("~")
            .arg(AUDIT_MAX)
            .arg("*");
        for (k, v) in record.fields() {
            cmd.arg(k).arg(v);
        }
        let id: String = cmd.query_async(&mut self.con()).await?;
        Ok(id)
    }

    /// The newest `limit` audit entries at or after `since_ms` (Unix ms),
    /// oldest first.
    ///
    /// # Errors
    /// Redis errors, or an audit stream that is not a stream.
    pub async fn read_audit(
        &self,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, QueueError> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(AUDIT_KEY)
            .arg("+")
            .arg(format!("{since_ms}-0"))
            .arg("COUNT")
            .arg(limit.max(1))
            .query_async(&mut self.con())
            .await?;
        let mut out: Vec<AuditRecord> = parse_entries(reply, "XREVRANGE")?
            .into_iter()
            .map(|d| {
                let fields: BTreeMap<String, String> = d
                    .fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8_lossy(k).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect();
                AuditRecord::from_fields(d.entry_id, &fields)
            })
            .collect();
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_record_round_trips_through_its_fields() {
        let r = AuditRecord {
            id: "1-0".into(),
            at_ms: 42,
            by: "ana".into(),
            via: "cli".into(),
            action: "pause".into(),
            queue: "emails".into(),
            target: "job send-welcome".into(),
            count: 3,
            note: "mailer down".into(),
            detail: String::new(),
        };
        let fields: BTreeMap<String, String> = r
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(AuditRecord::from_fields("1-0".into(), &fields), r);
    }
}
