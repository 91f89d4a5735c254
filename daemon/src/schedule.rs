//! `[[schedule]]`: jobs enqueued on a cron schedule.
//!
//! Every daemon running a config fires each of its schedules, and each fire
//! goes through `ward_enqueue` with the idempotency key
//! `schedule:<name>:<fire time, Unix ms>`. However many daemons run, and
//! however far apart their clocks, one job is created per fire time; the
//! plugin receives that key, so its effects can be made once per fire too.
//!
//! Fire times follow the schedule's time zone (UTC unless `timezone` says),
//! daylight saving time included. A fire time that passes while no daemon
//! runs is skipped (`missed = "skip"`, as with cron) or fired late
//! (`missed = "catch_up"`, at most `catch_up_max` of them, none older than
//! `catch_up_window`). While the job of the last fire is still unfinished,
//! `overlap = "skip"` skips a fire; `"allow"` (the default) fires anyway.
//!
//! This module holds the pure part (cron syntax, fire times and their keys,
//! the policies); the loop that fires them is a worker service
//! (`worker/services/schedules.rs`), the state it keeps in Redis is
//! `store/schedules.rs`'s.

use std::str::FromStr as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// How long a fire's idempotency key is kept: far longer than any clock
/// skew between daemons, so a late daemon's fire is recognised as a repeat.
pub const FIRE_KEY_TTL: Duration = Duration::from_secs(3600);

/// The idempotency key of one fire of schedule `name`.
#[must_use]
pub fn fire_key(name: &str, fire_ms: i64) -> String {
    format!("schedule:{name}:{fire_ms}")
}

/// The idempotency key of a fire an operator asked for (`ward schedules
/// fire`), at `at_ms`: never the key of a scheduled fire.
#[must_use]
pub fn manual_fire_key(name: &str, at_ms: u64) -> String {
    format!("schedule:{name}:manual:{at_ms}")
}

/// Parses a cron expression: the common five fields (minute first, as in
/// crontab), or six (seconds first) or seven (with the year), or a
/// shorthand such as `@daily`.
///
/// # Errors
/// What the cron parser said, with the forms Ward accepts.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {}", expr.trim())
    } else {
        expr.trim().to_string()
    };
    cron::Schedule::from_str(&full).map_err(|e| {
        format!(
            "cron `{expr}` does not parse ({e}); write five fields as in crontab (\"30 3 * * *\" is 03:30 every day), six with seconds first (\"0 30 3 * * *\"), or a shorthand such as \"@daily\""
        )
    })
}

/// Parses a time zone name (`"Europe/Paris"`, `"UTC"`).
///
/// # Errors
/// A message naming the zone that is not known.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!(
            "time zone `{name}` is not known; use an IANA name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\""
        )
    })
}

/// The first fire time of `schedule`, read in time zone `tz`, strictly
/// after `now`, if any.
#[must_use]
pub fn next_fire(schedule: &cron::Schedule, tz: Tz, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    schedule
        .after(&now.with_timezone(&tz))
        .next()
        .map(|t| t.with_timezone(&Utc))
}

/// What happens to fire times that passed while no daemon ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    /// They are skipped, as with cron.
    Skip,
    /// The newest `max` of them no older than `window` are fired late, in
    /// order.
    CatchUp {
        /// At most this many.
        max: u32,
        /// None older than this.
        window: Duration,
    },
}

/// What happens to a fire while the job of the previous one is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Fire anyway.
    Allow,
    /// Skip this fire.
    Skip,
}

/// The fire times strictly after `last` and at or before `now` that a
/// daemon starting at `now` fires late under `missed`, oldest first.
#[must_use]
pub fn missed_fires(
    schedule: &cron::Schedule,
    tz: Tz,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    missed: Missed,
) -> Vec<DateTime<Utc>> {
    let Missed::CatchUp { max, window } = missed else {
        return Vec::new();
    };
    let oldest = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| now.checked_sub_signed(w))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let from = last.max(oldest - chrono::Duration::milliseconds(1));
    let max = usize::try_from(max).unwrap_or(usize::MAX);
    // Only the newest `max` are kept, so memory stays bounded however many
    // fire times a long outage of an every-second schedule passed.
    let mut kept = std::collections::VecDeque::with_capacity(max.min(1024));
    for t in schedule.after(&from.with_timezone(&tz)) {
        let t = t.with_timezone(&Utc);
        if t > now {
            break;
        }
        if t <= last || t < oldest {
            continue;
        }
        if kept.len() == max {
            kept.pop_front();
        }
        if max > 0 {
            kept.push_back(t);
        }
    }
    kept.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn fires_follow_the_cron_expression_in_utc() {
        let s = parse_cron("0 30 3 * * *").unwrap();
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap(); // 2023-11-14 22:13:20 UTC
        let next = next_fire(&s, Tz::UTC, now).unwrap();
        assert_eq!(next.to_rfc3339(), "2023-11-15T03:30:00+00:00");
        let after = next_fire(&s, Tz::UTC, next).unwrap();
        assert_eq!(
            (after - next).num_hours(),
            24,
            "strictly after the last fire"
        );
    }

    #[test]
    fn five_fields_are_crontab_minutes_first() {
        let five = parse_cron("30 3 * * *").unwrap();
        let six = parse_cron("0 30 3 * * *").unwrap();
        let now = at("2026-01-10T00:00:00Z");
        assert_eq!(
            next_fire(&five, Tz::UTC, now),
            next_fire(&six, Tz::UTC, now)
        );
        assert!(parse_cron("@daily").is_ok());
        let err = parse_cron("61 * * * *").unwrap_err();
        assert!(err.contains("five fields"), "{err}");
    }

    #[test]
    fn a_time_zone_moves_the_fire_and_follows_daylight_saving() {
        let s = parse_cron("0 9 * * *").unwrap();
        let paris = parse_timezone("Europe/Paris").unwrap();
        // Winter: 09:00 in Paris is 08:00 UTC; summer: 07:00 UTC.
        let winter = next_fire(&s, paris, at("2026-01-10T00:00:00Z")).unwrap();
        assert_eq!(winter, at("2026-01-10T08:00:00Z"));
        let summer = next_fire(&s, paris, at("2026-07-10T00:00:00Z")).unwrap();
        assert_eq!(summer, at("2026-07-10T07:00:00Z"));
        assert!(parse_timezone("Mars/Olympus").is_err());
    }

    #[test]
    fn missed_fires_are_skipped_or_caught_up_within_their_bounds() {
        let s = parse_cron("0 * * * *").unwrap(); // hourly
        let last = at("2026-01-10T00:00:00Z");
        let now = at("2026-01-10T10:30:00Z");
        assert!(missed_fires(&s, Tz::UTC, last, now, Missed::Skip).is_empty());
        let three = Missed::CatchUp {
            max: 3,
            window: Duration::from_secs(24 * 3600),
        };
        let got = missed_fires(&s, Tz::UTC, last, now, three);
        assert_eq!(
            got,
            [
                at("2026-01-10T08:00:00Z"),
                at("2026-01-10T09:00:00Z"),
                at("2026-01-10T10:00:00Z")
            ],
            "the newest three, oldest first"
        );
        let window = Missed::CatchUp {
            max: 100,
            window: Duration::from_secs(2 * 3600),
        };
        let got = missed_fires(&s, Tz::UTC, last, now, window);
        assert_eq!(
            got,
            [at("2026-01-10T09:00:00Z"), at("2026-01-10T10:00:00Z")]
        );
        // Nothing missed: the last fire is the latest fire time.
        let none = missed_fires(&s, Tz::UTC, at("2026-01-10T10:00:00Z"), now, three);
        assert!(none.is_empty(), "{none:?}");
    }

    #[test]
    fn each_fire_has_its_own_key() {
        assert_eq!(fire_key("digest", 1_000), "schedule:digest:1000");
        assert_ne!(fire_key("digest", 1_000), fire_key("digest", 2_000));
        assert_ne!(manual_fire_key("digest", 1_000), fire_key("digest", 1_000));
    }
}
