//! The steady part of a run of long attempts: the middle of its span,
//! without its start (connections opened, instances made, every slot
//! filled at once) or its end (the last attempts finishing with nothing
//! left to start). A daemon that runs for days lives in the middle; the
//! whole-run figure also counts the start and end, once per run.
//!
//! The middle's rate splits by Little's law into the two ways a daemon
//! falls short of `concurrency / delay`: slots left empty between
//! attempts (attempts in flight below concurrency), and attempts that take
//! longer than the upstream (the daemon's own time on each).

/// What a run did in the middle of its span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Steady {
    /// The share of the span at each end left out.
    pub(super) cut: f64,
    /// Attempts that ended in the window, per second.
    pub(super) rate: f64,
    /// Attempts in flight, averaged over the window.
    pub(super) in_flight: f64,
    /// The mean duration of the attempts that started in the window, ms.
    pub(super) attempt_ms: f64,
}

/// The share of the span left out at each end.
const CUT: f64 = 0.2;

/// The middle of the run whose attempts started and ended at `attempts`
/// (ms, as the job records say); `None` when the span is too short to
/// have one.
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "millisecond times and counts far below 2^52"
)]
pub(super) fn steady(attempts: &[(u64, u64)]) -> Option<Steady> {
    let first = attempts.iter().map(|a| a.0).min()?;
    let last = attempts.iter().map(|a| a.1).max()?;
    let span = last.saturating_sub(first) as f64;
    let from = first + (span * CUT) as u64;
    let to = last - (span * CUT) as u64;
    if to <= from {
        return None;
    }
    let window = (to - from) as f64;
    let ended = attempts
        .iter()
        .filter(|a| (from..to).contains(&a.1))
        .count();
    let busy: u64 = attempts
        .iter()
        .map(|&(start, end)| end.min(to).saturating_sub(start.max(from)))
        .sum();
    let started: Vec<u64> = attempts
        .iter()
        .filter(|a| (from..to).contains(&a.0))
        .map(|a| a.1.saturating_sub(a.0))
        .collect();
    let attempt_ms = if started.is_empty() {
        0.0
    } else {
        started.iter().sum::<u64>() as f64 / started.len() as f64
    };
    Some(Steady {
        cut: CUT,
        rate: ended as f64 * 1000.0 / window,
        in_flight: busy as f64 / window,
        attempt_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `slots` slots, each running attempts of `took` ms with `gap` ms
    /// between them, for `ms` ms.
    fn run(slots: u64, took: u64, gap: u64, ms: u64) -> Vec<(u64, u64)> {
        let mut attempts = Vec::new();
        for _ in 0..slots {
            let mut t = 0;
            while t + took <= ms {
                attempts.push((t, t + took));
                t += took + gap;
            }
        }
        attempts
    }

    #[test]
    fn slots_never_empty_run_at_concurrency_over_the_attempt() {
        let s = steady(&run(4, 100, 0, 10_000)).unwrap();
        assert!((s.rate - 40.0).abs() < 1.0, "{s:?}");
        assert!((s.in_flight - 4.0).abs() < 0.01, "{s:?}");
        assert!((s.attempt_ms - 100.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn a_gap_between_attempts_shows_as_empty_slots_not_as_longer_attempts() {
        // Each slot is busy 100 ms of every 125: 80% in flight.
        let s = steady(&run(4, 100, 25, 10_000)).unwrap();
        assert!((s.in_flight - 3.2).abs() < 0.05, "{s:?}");
        assert!((s.attempt_ms - 100.0).abs() < 0.01, "{s:?}");
        assert!((s.rate - 32.0).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn slow_attempts_at_the_start_are_left_out() {
        let mut attempts = run(4, 100, 0, 10_000);
        // The first attempt of each slot took three times as long.
        for a in attempts.iter_mut().filter(|a| a.0 == 0) {
            a.1 = 300;
        }
        let s = steady(&attempts).unwrap();
        assert!((s.attempt_ms - 100.0).abs() < 0.01, "{s:?}");
    }

    #[test]
    fn no_span_no_middle() {
        assert_eq!(steady(&[]), None);
        assert_eq!(steady(&[(5, 5)]), None);
    }
}
