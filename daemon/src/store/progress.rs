//! What running plugins report of their progress (`ward:plugin@0.2.0`),
//! kept in `ward:{Q}:job:<id>:progress` beside the job's record: a hash of
//! its own, because a first attempt runs before its job has a record, and
//! a report must never create one or race the completion that writes it.

use std::time::Duration;

use super::{Queue, QueueError};

/// How long a job's progress is kept after its last report.
pub const PROGRESS_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// One report to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressReport {
    /// The job.
    pub job_id: String,
    /// The attempt that reported it (1-based).
    pub attempt: u32,
    /// 0 to 100.
    pub percent: u8,
    /// What the plugin said (bounded by the runtime).
    pub message: String,
    /// When it was reported, Unix ms.
    pub at_ms: u64,
}

/// A job's last reported progress, as `ward job show` and the API show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobProgress {
    /// The attempt that reported it: a retry's progress replaces the
    /// earlier attempt's only once it reports, so until then this says
    /// whose it is. `None` for a report written before Ward kept it.
    pub attempt: Option<u32>,
    /// 0 to 100.
    pub percent: u8,
    /// What the plugin said.
    pub message: String,
    /// When it was reported, Unix ms.
    pub at_ms: u64,
}

impl Queue {
    /// Writes `reports` in one pipeline (one round trip), each replacing
    /// its job's last one.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn write_progress(&self, reports: &[ProgressReport]) -> Result<(), QueueError> {
        if reports.is_empty() {
            return Ok(());
        }
        let ttl = PROGRESS_TTL.as_secs();
        let mut pipe = redis::pipe();
        for r in reports {
            let key = self.keys.job_progress(&r.job_id);
            pipe.cmd("HSET")
                .arg(&key)
                .arg("percent")
                .arg(r.percent)
                .arg("message")
                .arg(&r.message)
                .arg("at")
                .arg(r.at_ms)
                .arg("attempt")
                .arg(r.attempt)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(ttl)
                .ignore();
        }
        let mut con = self.con.clone();
        pipe.query_async::<()>(&mut con).await?;
        Ok(())
    }

    /// The last progress job `id`'s plugin reported, if any (within
    /// [`PROGRESS_TTL`]).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn job_progress(&self, id: &str) -> Result<Option<JobProgress>, QueueError> {
        let mut con = self.con.clone();
        let (percent, message, at, attempt): (
            Option<u8>,
            Option<String>,
            Option<u64>,
            Option<u32>,
        ) = redis::cmd("HMGET")
            .arg(self.keys.job_progress(id))
            .arg("percent")
            .arg("message")
            .arg("at")
            .arg("attempt")
            .query_async(&mut con)
            .await?;
        Ok(percent.map(|percent| JobProgress {
            attempt,
            percent,
            message: message.unwrap_or_default(),
            at_ms: at.unwrap_or(0),
        }))
    }
}
