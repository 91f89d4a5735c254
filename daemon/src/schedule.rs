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
//!
//! This module holds the pure part (fire times and their keys); the loop
//! that fires them is a worker service (`worker/services/schedules.rs`).

use std::time::Duration;

use chrono::{DateTime, Utc};

/// How long a fire's idempotency key is kept: far longer than any clock
/// skew between daemons, so a late daemon's fire is recognised as a repeat.
pub const FIRE_KEY_TTL: Duration = Duration::from_secs(3600);

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
