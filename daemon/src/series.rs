//! Per-minute counts of finished jobs, per queue and job type: what the
//! web screen's charts draw (throughput and failure rate) without a
//! Prometheus.
//!
//! The daemons count in memory as the completer records outcomes (no Redis
//! call per job), in a [`Tally`], and a background service flushes it every
//! few seconds into one hash per queue and minute (`ward:{Q}:series:<minute>`,
//! field `<count>:<job type>`, see [`field`]), each expiring after [`KEEP`].
//! The screen reads the minutes back and sums them ([`Counts`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use crate::transition::{Completion, Transition};

/// One minute, in ms.
pub const MINUTE_MS: u64 = 60_000;
/// How long a minute's hash is kept: the last 24 hours are shown, with an
/// hour's slack for clocks and late flushes.
pub const KEEP: Duration = Duration::from_secs(25 * 3600);
/// The most job types counted apart per minute; past it, the rest are
/// counted together under [`OTHER`] (a producer writing ever new job
/// types must not grow a hash without end).
pub const MAX_TYPES: usize = 64;
/// The job type under which the types past [`MAX_TYPES`] are counted.
pub const OTHER: &str = "(other)";

/// What a minute counts of a job type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Count {
    /// Succeeded.
    Succeeded,
    /// An attempt failed and the job will run again.
    Retried,
    /// Dead-lettered.
    Dead,
    /// Held back without an attempt (open breaker, rate limit, pause).
    Deferred,
    /// Cancelled by an operator.
    Cancelled,
}

impl Count {
    /// Every count, in the order fields are read.
    pub const ALL: [Count; 5] = [
        Count::Succeeded,
        Count::Retried,
        Count::Dead,
        Count::Deferred,
        Count::Cancelled,
    ];

    /// Its name in a field.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Count::Succeeded => "succeeded",
            Count::Retried => "retried",
            Count::Dead => "dead",
            Count::Deferred => "deferred",
            Count::Cancelled => "cancelled",
        }
    }

    /// What a recorded transition counts as; `None` for a duplicate (not
    /// work done: the job it duplicates was counted).
    #[must_use]
    pub fn of(t: &Transition) -> Option<Count> {
        match t {
            Transition::Succeed => Some(Count::Succeeded),
            Transition::Retry { .. } => Some(Count::Retried),
            Transition::DeadLetter(_) => Some(Count::Dead),
            Transition::Defer { .. } => Some(Count::Deferred),
            Transition::Cancel { .. } => Some(Count::Cancelled),
            Transition::Duplicate { .. } => None,
        }
    }
}

/// The minute `ms` falls in (minutes since the Unix epoch).
#[must_use]
pub fn minute_of(ms: u64) -> u64 {
    ms / MINUTE_MS
}

/// The field of `count` for job type `job`: `<count>:<job>` (a count's
/// name has no colon, so a job type may).
#[must_use]
pub fn field(count: Count, job: &str) -> String {
    format!("{}:{job}", count.as_str())
}

/// A field read back: its count and job type; `None` for a field this
/// version does not know.
#[must_use]
pub fn parse_field(f: &str) -> Option<(Count, &str)> {
    let (name, job) = f.split_once(':')?;
    let count = Count::ALL.into_iter().find(|c| c.as_str() == name)?;
    Some((count, job))
}

/// One increment to write: `n` more of `field` in `minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// The minute (see [`minute_of`]).
    pub minute: u64,
    /// The field (see [`field`]).
    pub field: String,
    /// How many.
    pub n: u64,
}

/// The counts not yet written, shared by a queue's completer (which adds)
/// and its flushing service (which takes them).
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<(u64, String), u64>>,
}

impl Tally {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(u64, String), u64>> {
        // A panic while holding it left plain counts behind: still usable.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts the completions of a recorded batch that took effect
    /// (`took[i]`; missing flags count as taken), each in the minute it
    /// finished.
    pub fn count(&self, batch: &[Completion], took: &[bool]) {
        // Summed per minute, count and job type first: a batch holds a few
        // of those, and each costs a field name to format and a map lookup.
        let mut sums: Vec<(u64, Count, &str, u64)> = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            if !took.get(i).copied().unwrap_or(true) {
                continue;
            }
            let Some(count) = Count::of(c.transition()) else {
                continue;
            };
            let minute = minute_of(c.finished_ms());
            match sums
                .iter_mut()
                .find(|(m, k, j, _)| *m == minute && *k == count && *j == c.job())
            {
                Some((.., n)) => *n += 1,
                None => sums.push((minute, count, c.job(), 1)),
            }
        }
        let mut counts = self.lock();
        for (minute, count, job, n) in sums {
            add(&mut counts, minute, count, job, n);
        }
    }

    /// Adds `n` of `count` for job type `job` in `minute`.
    pub fn add(&self, minute: u64, count: Count, job: &str, n: u64) {
        add(&mut self.lock(), minute, count, job, n);
    }

    /// Everything counted so far, emptying the tally.
    #[must_use]
    pub fn take(&self) -> Vec<Bucket> {
        std::mem::take(&mut *self.lock())
            .into_iter()
            .map(|((minute, field), n)| Bucket { minute, field, n })
            .collect()
    }

    /// Puts back what could not be written, to be tried again, except
    /// minutes older than [`KEEP`] at `now_ms` (they would expire at once).
    pub fn put_back(&self, buckets: Vec<Bucket>, now_ms: u64) {
        let oldest =
            minute_of(now_ms.saturating_sub(u64::try_from(KEEP.as_millis()).unwrap_or(u64::MAX)));
        let mut counts = self.lock();
        for b in buckets.into_iter().filter(|b| b.minute >= oldest) {
            *counts.entry((b.minute, b.field)).or_default() += b.n;
        }
    }

    /// Whether nothing waits to be written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

fn add(counts: &mut BTreeMap<(u64, String), u64>, minute: u64, count: Count, job: &str, n: u64) {
    let key = (minute, field(count, job));
    if let Some(v) = counts.get_mut(&key) {
        *v += n;
        return;
    }
    let types = counts
        .range((minute, String::new())..(minute + 1, String::new()))
        .filter_map(|((_, f), _)| parse_field(f).map(|(_, j)| j))
        .collect::<std::collections::BTreeSet<_>>();
    let job = if types.len() >= MAX_TYPES && !types.contains(job) {
        OTHER
    } else {
        job
    };
    *counts.entry((minute, field(count, job))).or_default() += n;
}

/// What one minute (or a sum of minutes) counts of one job type, or of
/// all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Succeeded.
    pub succeeded: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Dead-lettered.
    pub dead: u64,
    /// Held back without an attempt.
    pub deferred: u64,
    /// Cancelled.
    pub cancelled: u64,
}

impl Counts {
    /// Adds `n` of `count`.
    pub fn add(&mut self, count: Count, n: u64) {
        let slot = match count {
            Count::Succeeded => &mut self.succeeded,
            Count::Retried => &mut self.retried,
            Count::Dead => &mut self.dead,
            Count::Deferred => &mut self.deferred,
            Count::Cancelled => &mut self.cancelled,
        };
        *slot += n;
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        self.succeeded += other.succeeded;
        self.retried += other.retried;
        self.dead += other.dead;
        self.deferred += other.deferred;
        self.cancelled += other.cancelled;
    }

    /// Attempts that ended in a failure: retried or dead.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.retried + self.dead
    }

    /// Attempts that ended: succeeded or failed (the throughput).
    #[must_use]
    pub fn finished(&self) -> u64 {
        self.succeeded + self.failed()
    }

    /// The share of finished attempts that failed; `None` when none ended.
    #[must_use]
    pub fn failure_rate(&self) -> Option<f64> {
        let finished = self.finished();
        (finished > 0).then(|| self.failed() as f64 / finished as f64)
    }
}

/// One minute as read back: its counts by job type.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Minute {
    /// The minute (see [`minute_of`]).
    pub minute: u64,
    /// Its counts by job type.
    pub jobs: BTreeMap<String, Counts>,
}

impl Minute {
    /// A minute's hash read back; fields this version does not know are
    /// left out.
    #[must_use]
    pub fn from_fields(minute: u64, fields: &HashMap<String, u64>) -> Minute {
        let mut jobs: BTreeMap<String, Counts> = BTreeMap::new();
        for (f, n) in fields {
            if let Some((count, job)) = parse_field(f) {
                jobs.entry(job.to_string()).or_default().add(count, *n);
            }
        }
        Minute { minute, jobs }
    }

    /// Its counts over every job type.
    #[must_use]
    pub fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.jobs.values() {
            t.merge(c);
        }
        t
    }

    /// Its counts of job type `job` (zero when it has none).
    #[must_use]
    pub fn of(&self, job: &str) -> Counts {
        self.jobs.get(job).copied().unwrap_or_default()
    }
}

/// The `n` minutes up to and including the one of `now_ms`, oldest first.
#[must_use]
pub fn last_minutes(now_ms: u64, n: u64) -> std::ops::RangeInclusive<u64> {
    let last = minute_of(now_ms);
    last.saturating_sub(n.saturating_sub(1))..=last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_names_its_count_and_job_type_even_with_a_colon() {
        assert_eq!(field(Count::Dead, "send:v2"), "dead:send:v2");
        assert_eq!(parse_field("dead:send:v2"), Some((Count::Dead, "send:v2")));
        assert_eq!(parse_field("succeeded:x"), Some((Count::Succeeded, "x")));
        assert_eq!(parse_field("exploded:x"), None);
        assert_eq!(parse_field("nocolon"), None);
    }

    #[test]
    fn transitions_count_as_what_they_did() {
        use std::time::Duration;
        let d = Duration::from_secs(1);
        assert_eq!(Count::of(&Transition::Succeed), Some(Count::Succeeded));
        assert_eq!(
            Count::of(&Transition::Retry { delay: d }),
            Some(Count::Retried)
        );
        assert_eq!(
            Count::of(&Transition::Cancel { ran: true }),
            Some(Count::Cancelled)
        );
        assert_eq!(Count::of(&Transition::Duplicate { of: None }), None);
    }

    #[test]
    fn a_tally_sums_per_minute_and_field_and_empties_when_taken() {
        let t = Tally::default();
        t.add(10, Count::Succeeded, "a", 2);
        t.add(10, Count::Succeeded, "a", 3);
        t.add(10, Count::Dead, "a", 1);
        t.add(11, Count::Succeeded, "b", 1);
        let taken = t.take();
        assert_eq!(
            taken,
            vec![
                Bucket {
                    minute: 10,
                    field: "dead:a".into(),
                    n: 1
                },
                Bucket {
                    minute: 10,
                    field: "succeeded:a".into(),
                    n: 5
                },
                Bucket {
                    minute: 11,
                    field: "succeeded:b".into(),
                    n: 1
                },
            ]
        );
        assert!(t.is_empty());
    }

    #[test]
    fn what_could_not_be_written_comes_back_unless_too_old() {
        let t = Tally::default();
        let now = 100_000 * MINUTE_MS;
        t.add(99_999, Count::Retried, "a", 1);
        let old = minute_of(now) - 26 * 60;
        t.put_back(
            vec![
                Bucket {
                    minute: 99_999,
                    field: "retried:a".into(),
                    n: 4,
                },
                Bucket {
                    minute: old,
                    field: "retried:a".into(),
                    n: 9,
                },
            ],
            now,
        );
        assert_eq!(
            t.take(),
            vec![Bucket {
                minute: 99_999,
                field: "retried:a".into(),
                n: 5
            }],
            "merged with what came since; the minute past 25 h dropped"
        );
    }

    #[test]
    fn job_types_past_the_cap_are_counted_together() {
        let t = Tally::default();
        for i in 0..MAX_TYPES + 3 {
            t.add(5, Count::Succeeded, &format!("t{i}"), 1);
        }
        t.add(5, Count::Dead, "t0", 1);
        let taken = t.take();
        let other = taken
            .iter()
            .find(|b| b.field == field(Count::Succeeded, OTHER))
            .expect("the overflow");
        assert_eq!(other.n, 3);
        assert!(
            taken.iter().any(|b| b.field == "dead:t0"),
            "a known type stays apart"
        );
        assert_eq!(taken.iter().map(|b| b.n).sum::<u64>(), MAX_TYPES as u64 + 4);
    }

    #[test]
    fn a_minute_read_back_sums_by_job_type_and_rates_failures() {
        let fields: HashMap<String, u64> = [
            ("succeeded:a", 6),
            ("retried:a", 1),
            ("dead:a", 1),
            ("deferred:a", 7),
            ("succeeded:b", 2),
            ("future:b", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let m = Minute::from_fields(3, &fields);
        assert_eq!(m.of("a").finished(), 8);
        assert_eq!(m.of("a").failure_rate(), Some(0.25));
        assert_eq!(m.of("zzz"), Counts::default());
        let t = m.total();
        assert_eq!((t.succeeded, t.failed(), t.deferred), (8, 2, 7));
        assert_eq!(Counts::default().failure_rate(), None);
    }

    #[test]
    fn the_last_minutes_end_at_now_and_count_n() {
        let r = last_minutes(10 * MINUTE_MS + 5, 3);
        assert_eq!(r.clone().collect::<Vec<_>>(), vec![8, 9, 10]);
        assert_eq!(last_minutes(0, 60).count(), 1, "never before the epoch");
    }
}
