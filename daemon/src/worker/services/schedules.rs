//! Fires one `[[schedule]]`: its job is enqueued at each fire time.
//!
//! The fire times, their idempotency keys and the policies are
//! [`crate::schedule`]'s; this is the loop that waits for them. At start it
//! fires late what `missed = "catch_up"` asks for; before each fire it
//! reads the schedule's state in Redis: paused by an operator, or (with
//! `overlap = "skip"`) the last fire's job still unfinished, skips it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::backoff::Backoff;
use crate::config::ScheduleConfig;
use crate::job::JobState;
use crate::schedule::{FIRE_KEY_TTL, Overlap, fire_key, missed_fires, next_fire};
use crate::store::Queue;

use super::Service;
use crate::worker::shutdown::Shutdown;

/// Fires `schedule` on `queue` until shutdown.
pub(crate) struct Schedule {
    /// The queue the schedule's jobs go to.
    pub(crate) queue: Queue,
    /// The schedule.
    pub(crate) schedule: ScheduleConfig,
}

impl Service for Schedule {
    async fn run(self, mut stop: Shutdown) {
        let Schedule { queue, schedule } = self;
        tracing::info!(schedule = %schedule.name, cron = %schedule.cron, timezone = %schedule.tz, queue = %schedule.queue, job = %schedule.job, "schedule active");
        let mut after = now_utc();
        catch_up(&queue, &schedule, after, &mut stop).await;
        while !stop.is_shutdown() {
            let Some(fire) = next_fire(&schedule.schedule, schedule.tz, after) else {
                tracing::warn!(schedule = %schedule.name, cron = %schedule.cron, "schedule has no more fire times");
                stop.recv().await;
                return;
            };
            let wait = (fire - now_utc()).to_std().unwrap_or(Duration::ZERO);
            if !stop.sleep(wait).await {
                return;
            }
            // A timer can wake a little early; never fire before the fire time.
            let early = (fire - now_utc()).to_std().unwrap_or(Duration::ZERO);
            if !early.is_zero() {
                tokio::time::sleep(early).await;
            }
            fire_once(&queue, &schedule, fire, &mut stop).await;
            after = fire;
        }
    }
}

/// Fires late the fire times missed while no daemon ran, as the schedule's
/// `missed` policy says (each daemon starting does this; the fire keys make
/// a time fire once however many do).
async fn catch_up(
    queue: &Queue,
    schedule: &ScheduleConfig,
    now: DateTime<Utc>,
    stop: &mut Shutdown,
) {
    let last = match queue.schedule_state(&schedule.name).await {
        Ok(state) => state.last_fire_ms,
        Err(e) => {
            tracing::warn!(schedule = %schedule.name, error = %e, "cannot read the schedule's last fire; missed fires are not caught up");
            return;
        }
    };
    let Some(last) = last
        .and_then(|ms| i64::try_from(ms).ok())
        .and_then(DateTime::from_timestamp_millis)
    else {
        return;
    };
    let missed = missed_fires(&schedule.schedule, schedule.tz, last, now, schedule.missed);
    if !missed.is_empty() {
        tracing::info!(schedule = %schedule.name, missed = missed.len(), since = %last, "catching up missed fires");
    }
    for fire in missed {
        fire_once(queue, schedule, fire, stop).await;
    }
}

fn now_utc() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// After a fire Redis refused: how long to wait before trying again.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Why a fire is skipped, if it is: an operator paused the schedule, or
/// (overlap = "skip") the last fire's job has not finished.
async fn skipped(queue: &Queue, schedule: &ScheduleConfig) -> Option<String> {
    let state = queue.schedule_state(&schedule.name).await.ok()?;
    if let Some(p) = &state.paused {
        return Some(format!("paused by {}", p["by"].as_str().unwrap_or("?")));
    }
    if schedule.overlap == Overlap::Skip
        && let Some(job) = &state.last_job
        && let Ok(Some(s)) = queue.job_status(job).await
    {
        let unfinished = [
            JobState::Queued,
            JobState::Running,
            JobState::Retrying,
            JobState::Paused,
        ]
        .iter()
        .any(|st| st.as_str() == s.state);
        if unfinished {
            return Some(format!("the last fire's job {job} is still {}", s.state));
        }
    }
    None
}

/// Enqueues the job of one fire time, retrying while Redis refuses, until
/// the next fire time is due (then this one is given up, loudly).
async fn fire_once(
    queue: &Queue,
    schedule: &ScheduleConfig,
    fire: DateTime<Utc>,
    stop: &mut Shutdown,
) {
    if let Some(why) = skipped(queue, schedule).await {
        tracing::info!(schedule = %schedule.name, fire = %fire, why, "schedule fire skipped");
        return;
    }
    let key = fire_key(&schedule.name, fire.timestamp_millis());
    let give_up = next_fire(&schedule.schedule, schedule.tz, fire);
    let mut backoff = RETRY;
    loop {
        match queue
            .enqueue_with(
                &schedule.job,
                &schedule.payload,
                Some(&key),
                None,
                None,
                FIRE_KEY_TTL,
            )
            .await
        {
            Ok(done) => {
                if done.duplicate {
                    tracing::debug!(schedule = %schedule.name, job_id = %done.id, fire = %fire, "another daemon already fired this time");
                } else {
                    tracing::info!(schedule = %schedule.name, job_id = %done.id, job = %schedule.job, fire = %fire, "schedule fired");
                }
                if let Err(e) = queue
                    .schedule_fired(&schedule.name, fire.timestamp_millis(), &done.id)
                    .await
                {
                    tracing::warn!(schedule = %schedule.name, error = %e, "cannot record the schedule's last fire");
                }
                return;
            }
            Err(e) => {
                if give_up.is_some_and(|next| now_utc() >= next) {
                    tracing::error!(schedule = %schedule.name, fire = %fire, error = %e, "schedule fire not enqueued: Redis refused until the next fire time; this one is skipped");
                    return;
                }
                let delay = backoff.next();
                tracing::error!(schedule = %schedule.name, fire = %fire, error = %e, retry_in = ?delay, "cannot enqueue the schedule's job; retrying");
                if !stop.sleep(delay).await {
                    return;
                }
            }
        }
    }
}
