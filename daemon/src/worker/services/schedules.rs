//! Fires one `[[schedule]]`: its job is enqueued at each fire time.
//!
//! The fire times and their idempotency keys are [`crate::schedule`]'s;
//! this is the loop that waits for them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

use crate::backoff::Backoff;
use crate::config::ScheduleConfig;
use crate::schedule::{FIRE_KEY_TTL, fire_key, next_fire};
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
        tracing::info!(schedule = %schedule.name, cron = %schedule.cron, queue = %schedule.queue, job = %schedule.job, "schedule active (UTC)");
        let mut after = now_utc();
        while !stop.is_shutdown() {
            let Some(fire) = next_fire(&schedule.schedule, after) else {
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

fn now_utc() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// After a fire Redis refused: how long to wait before trying again.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Enqueues the job of one fire time, retrying while Redis refuses, until
/// the next fire time is due (then this one is given up, loudly).
async fn fire_once(
    queue: &Queue,
    schedule: &ScheduleConfig,
    fire: DateTime<Utc>,
    stop: &mut Shutdown,
) {
    let key = fire_key(&schedule.name, fire.timestamp_millis());
    let give_up = next_fire(&schedule.schedule, fire);
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
            Ok(done) if done.duplicate => {
                tracing::debug!(schedule = %schedule.name, job_id = %done.id, fire = %fire, "another daemon already fired this time");
                return;
            }
            Ok(done) => {
                tracing::info!(schedule = %schedule.name, job_id = %done.id, job = %schedule.job, fire = %fire, "schedule fired");
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
