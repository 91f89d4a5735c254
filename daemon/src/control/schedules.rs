//! Schedules as an operator sees and steers them: the list `ward schedules`
//! prints (next and last fire, the last fire's job and how it is doing),
//! pausing and resuming one, and firing one now.

use crate::clock::now_ms;
use crate::config::ScheduleConfig;
use crate::schedule::{Missed, Overlap, manual_fire_key, next_fire};
use crate::store::{Enqueued, Queue, QueueError};

use super::audit::{self, Action, Actor};

/// One schedule, as `ward schedules` and the admin API show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScheduleView {
    /// The schedule's name.
    pub name: String,
    /// Its queue and job type.
    pub queue: String,
    /// Its job type.
    pub job: String,
    /// The cron expression as written.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// `skip`, or `catch_up (max N, window D)`.
    pub missed: String,
    /// `allow` or `skip`.
    pub overlap: &'static str,
    /// The next fire time (Unix ms), unless paused or none is left.
    pub next_fire_ms: Option<u64>,
    /// The latest fire any daemon enqueued (Unix ms).
    pub last_fire_ms: Option<u64>,
    /// The job that fire enqueued.
    pub last_job: Option<String>,
    /// That job's state (`succeeded`, `running`, ...), while Redis knows it.
    pub last_job_state: Option<String>,
    /// An operator's pause: `{"by","at_ms","note"}`.
    pub paused: Option<serde_json::Value>,
}

/// How `schedule` stands now.
///
/// # Errors
/// Redis errors.
pub async fn view(q: &Queue, schedule: &ScheduleConfig) -> Result<ScheduleView, QueueError> {
    let state = q.schedule_state(&schedule.name).await?;
    let last_job_state = match &state.last_job {
        Some(id) => q.job_status(id).await?.map(|s| s.state),
        None => None,
    };
    let next = next_fire(&schedule.schedule, schedule.tz, chrono::Utc::now())
        .and_then(|t| u64::try_from(t.timestamp_millis()).ok())
        .filter(|_| state.paused.is_none());
    Ok(ScheduleView {
        name: schedule.name.clone(),
        queue: schedule.queue.clone(),
        job: schedule.job.clone(),
        cron: schedule.cron.clone(),
        timezone: schedule.tz.to_string(),
        missed: match schedule.missed {
            Missed::Skip => "skip".to_string(),
            Missed::CatchUp { max, window } => format!(
                "catch_up (max {max}, window {})",
                humantime::format_duration(window)
            ),
        },
        overlap: match schedule.overlap {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
        },
        next_fire_ms: next,
        last_fire_ms: state.last_fire_ms,
        last_job: state.last_job,
        last_job_state,
        paused: state.paused,
    })
}

/// Pauses (`pause` true) or resumes schedule `name` of queue `q`: while
/// paused, no daemon fires it (each reads the pause before each fire).
/// Returns whether that changed anything; one audit entry either way.
///
/// # Errors
/// Redis errors.
pub async fn set_paused(
    q: &Queue,
    actor: &Actor,
    name: &str,
    pause: bool,
    note: &str,
) -> Result<bool, QueueError> {
    let value =
        pause.then(|| serde_json::json!({ "by": actor.name, "at_ms": now_ms(), "note": note }));
    let was = q.set_schedule_paused(name, value.as_ref()).await?;
    let changed = was != pause;
    audit::record(
        &q.store(),
        actor,
        Action {
            action: if pause {
                "schedule-pause"
            } else {
                "schedule-resume"
            },
            queue: &q.keys.queue,
            target: format!("schedule {name}"),
            count: u64::from(changed),
            note,
            detail: None,
        },
    )
    .await?;
    Ok(changed)
}

/// Enqueues `schedule`'s job now, outside its times (a fire of its own,
/// with the key `schedule:<name>:manual:<ms>`; the schedule's next fire is
/// unchanged), and puts it on the audit trail.
///
/// # Errors
/// Redis errors.
pub async fn fire_now(
    q: &Queue,
    actor: &Actor,
    schedule: &ScheduleConfig,
    note: &str,
) -> Result<Enqueued, QueueError> {
    let key = manual_fire_key(&schedule.name, now_ms());
    let done = q
        .enqueue_with(
            &schedule.job,
            &schedule.payload,
            Some(&key),
            None,
            None,
            crate::schedule::FIRE_KEY_TTL,
        )
        .await?;
    audit::record(
        &q.store(),
        actor,
        Action {
            action: "schedule-fire",
            queue: &q.keys.queue,
            target: format!("schedule {}", schedule.name),
            count: u64::from(!done.duplicate),
            note,
            detail: Some(serde_json::json!({ "job_id": done.id })),
        },
    )
    .await?;
    Ok(done)
}
