//! What Redis keeps of each `[[schedule]]` (`ward:{Q}:schedule:<name>`, a
//! hash): the latest fire and the job it enqueued (for catching up missed
//! fires and for the overlap policy), and an operator's pause.

use std::sync::LazyLock;

use super::script::script;
use super::{Queue, QueueError};

static FIRED_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| script("", include_str!("lua/schedule_fired.lua")));

/// One schedule's state in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleState {
    /// The latest fire time any daemon enqueued (Unix ms).
    pub last_fire_ms: Option<u64>,
    /// The job that fire enqueued.
    pub last_job: Option<String>,
    /// An operator's pause: JSON `{"by","at_ms","note"}`.
    pub paused: Option<serde_json::Value>,
}

impl Queue {
    /// Schedule `name`'s state (all empty for a schedule never fired).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn schedule_state(&self, name: &str) -> Result<ScheduleState, QueueError> {
        let mut con = self.con.clone();
        let fields: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.keys.schedule(name))
            .query_async(&mut con)
            .await?;
        let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
        Ok(ScheduleState {
            last_fire_ms: get("last_fire_ms").and_then(|v| v.parse().ok()),
            last_job: get("last_job").filter(|j| !j.is_empty()),
            paused: get("paused").and_then(|p| serde_json::from_str(&p).ok()),
        })
    }

    /// Records that schedule `name` fired at `fire_ms`, enqueueing `job_id`
    /// (kept only when later than the fire already recorded).
    ///
    /// # Errors
    /// Redis errors.
    pub async fn schedule_fired(
        &self,
        name: &str,
        fire_ms: i64,
        job_id: &str,
    ) -> Result<(), QueueError> {
        let mut con = self.con.clone();
        let _: i64 = FIRED_SCRIPT
            .key(self.keys.schedule(name))
            .arg(fire_ms)
            .arg(job_id)
            .invoke_async(&mut con)
            .await?;
        Ok(())
    }

    /// Pauses schedule `name` (`Some`: the pause, as JSON) or resumes it
    /// (`None`); returns whether it was paused before.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn set_schedule_paused(
        &self,
        name: &str,
        pause: Option<&serde_json::Value>,
    ) -> Result<bool, QueueError> {
        let mut con = self.con.clone();
        let key = self.keys.schedule(name);
        let was: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("paused")
            .query_async(&mut con)
            .await?;
        match pause {
            Some(p) => {
                let _: i64 = redis::cmd("HSET")
                    .arg(&key)
                    .arg("paused")
                    .arg(p.to_string())
                    .query_async(&mut con)
                    .await?;
            }
            None => {
                let _: i64 = redis::cmd("HDEL")
                    .arg(&key)
                    .arg("paused")
                    .query_async(&mut con)
                    .await?;
            }
        }
        Ok(was.is_some())
    }
}
