//! `[[schedule]]`: jobs enqueued on a cron schedule.
//!
//! Every daemon running a config fires each of its schedules, and each fire
//! goes through `ward_enqueue` with the idempotency key
//! `schedule:<name>:<fire time, Unix ms>`. However many daemons run, and
//! however far apart their clocks, one job is created per fire time; the
//! plugin receives that key, so its effects can be made once per fire too.
//!
//! Fire times are computed in UTC from the host clock. A fire time that
//! passes while no daemon runs is skipped, not caught up, as with cron.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::config::ScheduleConfig;
use crate::queue::Queue;

/// How long a fire's idempotency key is kept: far longer than any clock
/// skew between daemons, so a late daemon's fire is recognised as a repeat.
pub const FIRE_KEY_TTL: Duration = Duration::from_secs(3600);
/// First wait before retrying a fire Redis refused.
const RETRY_FIRST: Duration = Duration::from_millis(200);

/// The idempotency key of one fire of schedule `name`.
#[must_use]
pub fn fire_key(name: &str, fire_ms: i64) -> String {
    format!("schedule:{name}:{fire_ms}")
}

/// The first fire time of `schedule` strictly after `now`, if any.
#[must_use]
pub fn next_fire(schedule: &cron::Schedule, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule.after(&now).next()
}

fn now_utc() -> DateTime<Utc> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Fires `schedule` on `queue` until `stop` turns true.
pub async fn run(queue: Queue, schedule: ScheduleConfig, mut stop: watch::Receiver<bool>) {
    tracing::info!(schedule = %schedule.name, cron = %schedule.cron, queue = %schedule.queue, job = %schedule.job, "schedule active (UTC)");
    let mut after = now_utc();
    while !*stop.borrow() {
        let Some(fire) = next_fire(&schedule.schedule, after) else {
            tracing::warn!(schedule = %schedule.name, cron = %schedule.cron, "schedule has no more fire times");
            let _ = stop.changed().await;
            return;
        };
        let wait = (fire - now_utc()).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
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

/// Enqueues the job of one fire time, retrying while Redis refuses, until
/// the next fire time is due (then this one is given up, loudly).
async fn fire_once(
    queue: &Queue,
    schedule: &ScheduleConfig,
    fire: DateTime<Utc>,
    stop: &mut watch::Receiver<bool>,
) {
    let key = fire_key(&schedule.name, fire.timestamp_millis());
    let give_up = next_fire(&schedule.schedule, fire);
    let mut delay = RETRY_FIRST;
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
                tracing::error!(schedule = %schedule.name, fire = %fire, error = %e, retry_in = ?delay, "cannot enqueue the schedule's job; retrying");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr as _;

    #[test]
    fn fires_follow_the_cron_expression_in_utc() {
        let s = cron::Schedule::from_str("0 30 3 * * *").unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap(); // 2023-11-14 22:13:20 UTC
        let next = next_fire(&s, now).unwrap();
        assert_eq!(next.to_rfc3339(), "2023-11-15T03:30:00+00:00");
        let after = next_fire(&s, next).unwrap();
        assert_eq!(
            (after - next).num_hours(),
            24,
            "strictly after the last fire"
        );
    }

    #[test]
    fn each_fire_has_its_own_key() {
        assert_eq!(fire_key("digest", 1_000), "schedule:digest:1000");
        assert_ne!(fire_key("digest", 1_000), fire_key("digest", 2_000));
    }
}
