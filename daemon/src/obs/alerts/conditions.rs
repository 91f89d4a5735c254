//! The queue-wide alert conditions, judged on every queue sample (pure):
//! `queue_wait` (the oldest ready job waited past the queue's promise,
//! `[[queue]] max_wait`) and `stalled` (ready jobs waited `stall_after`
//! while no daemon recorded any outcome of the queue). A queue paused as a
//! whole waits on purpose and raises neither.

use std::time::Duration;

use super::{AlertEvent, AlertKind, Condition};
use crate::store::QueueSample;

/// The job type of a queue-wide alert.
pub const WHOLE_QUEUE: &str = "*";

/// A queue's conditions, from its `[[queue]]` table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchRule {
    /// `max_wait`: the queue-time promise.
    pub max_wait: Option<Duration>,
    /// `stall_after`.
    pub stall_after: Option<Duration>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The alert events sample `s` of queue `queue` raises under `rule`.
#[must_use]
pub fn conditions(queue: &str, s: &QueueSample, rule: &WatchRule) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    let Some(oldest) = s.oldest_ready_ms else {
        return out;
    };
    if s.ready == 0 || s.paused {
        return out;
    }
    let waited = s.now_ms.saturating_sub(oldest);
    if let Some(max) = rule.max_wait.map(ms)
        && waited > max
    {
        let c = Condition {
            ready: s.ready,
            oldest_wait_ms: waited,
            limit_ms: max,
            since_ms: oldest.saturating_add(max),
        };
        out.push(event(queue, AlertKind::QueueWait, s.now_ms, c));
    }
    if let Some(after) = rule.stall_after.map(ms) {
        // Quiet since the later of: the last outcome anyone recorded, and
        // the oldest waiting job's enqueue (before it, nothing waited).
        let quiet_since = s.last_progress_ms.unwrap_or(0).max(oldest);
        if s.now_ms.saturating_sub(quiet_since) >= after {
            let c = Condition {
                ready: s.ready,
                oldest_wait_ms: waited,
                limit_ms: after,
                since_ms: quiet_since,
            };
            out.push(event(queue, AlertKind::Stalled, s.now_ms, c));
        }
    }
    out
}

fn event(queue: &str, kind: AlertKind, now_ms: u64, c: Condition) -> AlertEvent {
    let wait = humantime::format_duration(Duration::from_secs(c.oldest_wait_ms / 1000));
    let limit = humantime::format_duration(Duration::from_millis(c.limit_ms));
    let reason = match kind {
        AlertKind::QueueWait => format!(
            "the oldest of {} ready jobs has waited {wait}, over the queue's max_wait of {limit}",
            c.ready
        ),
        _ => format!(
            "{} jobs ready (the oldest waited {wait}) and no outcome recorded by any daemon for {limit} or more",
            c.ready
        ),
    };
    AlertEvent {
        kind,
        queue: queue.to_string(),
        job: WHOLE_QUEUE.to_string(),
        job_id: String::new(),
        at_ms: now_ms,
        class: None,
        code: None,
        attempts: 0,
        elapsed_ms: 0,
        upstream: None,
        reason,
        message: String::new(),
        condition: Some(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn sample(ready: u64, oldest_age: u64, progress_age: Option<u64>) -> QueueSample {
        let now = 100 * MIN;
        QueueSample {
            group_exists: true,
            ready,
            pending: 0,
            delayed: 0,
            dead: 0,
            now_ms: now,
            oldest_ready_ms: (ready > 0).then(|| now - oldest_age),
            batches_unfinished: 0,
            paused: false,
            last_progress_ms: progress_age.map(|a| now - a),
        }
    }

    const RULE: WatchRule = WatchRule {
        max_wait: Some(Duration::from_secs(300)),
        stall_after: Some(Duration::from_secs(600)),
    };

    fn kinds(s: &QueueSample) -> Vec<AlertKind> {
        conditions("q", s, &RULE).iter().map(|e| e.kind).collect()
    }

    #[test]
    fn a_wait_over_the_promise_alerts_with_since_when_and_how_many() {
        assert!(
            kinds(&sample(40, 5 * MIN, Some(1000))).is_empty(),
            "at, not over"
        );
        let s = sample(40, 7 * MIN, Some(1000));
        let e = &conditions("q", &s, &RULE)[0];
        assert_eq!((e.kind, e.job.as_str()), (AlertKind::QueueWait, "*"));
        let c = e.condition.unwrap();
        assert_eq!((c.ready, c.oldest_wait_ms), (40, 7 * MIN));
        assert_eq!(
            c.since_ms,
            s.now_ms - 2 * MIN,
            "crossed 5 min after its enqueue"
        );
        assert!(
            e.reason
                .contains("waited 7m, over the queue's max_wait of 5m"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn a_stall_needs_waiting_work_and_no_outcome_for_the_whole_window() {
        // Work waited 11 min, but a job was recorded 1 min ago: moving.
        assert_eq!(
            kinds(&sample(3, 11 * MIN, Some(MIN))),
            [AlertKind::QueueWait]
        );
        // Nothing recorded for 20 min, but the work arrived 2 min ago.
        assert!(kinds(&sample(3, 2 * MIN, Some(20 * MIN))).is_empty());
        // Work waited 11 min and nothing was recorded for 12: stalled,
        // since the work arrived.
        let s = sample(3, 11 * MIN, Some(12 * MIN));
        let got = conditions("q", &s, &RULE);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].kind, AlertKind::Stalled);
        assert_eq!(got[1].condition.unwrap().since_ms, s.now_ms - 11 * MIN);
        // Never any outcome: quiet since the oldest job's enqueue.
        assert_eq!(
            kinds(&sample(3, 10 * MIN, None)),
            [AlertKind::QueueWait, AlertKind::Stalled]
        );
    }

    #[test]
    fn an_empty_or_paused_queue_raises_nothing() {
        assert!(kinds(&sample(0, 0, None)).is_empty());
        let mut s = sample(3, 60 * MIN, None);
        s.paused = true;
        assert!(kinds(&s).is_empty());
        assert!(conditions("q", &sample(3, 60 * MIN, None), &WatchRule::default()).is_empty());
    }
}
