//! The wait between retries of something that failed: doubling from a first
//! delay up to a cap. Every retry loop in the daemon uses this one, so the
//! shape of a retry is decided in one place.
//!
//! A leaf: it imports nothing of Ward's, so any module may use it.

use std::time::Duration;

/// Exponential backoff: `first`, `2 × first`, `4 × first`, … at most `max`.
///
/// ```
/// # use std::time::Duration;
/// # use ward::backoff::Backoff;
/// let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(300));
/// assert_eq!(b.next(), Duration::from_millis(100));
/// assert_eq!(b.next(), Duration::from_millis(200));
/// assert_eq!(b.next(), Duration::from_millis(300));
/// b.reset();
/// assert_eq!(b.next(), Duration::from_millis(100));
/// ```
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Backoff {
    /// The wait after a first failure, and again after a [`reset`](Self::reset).
    first: Duration,
    /// The wait the next call to [`next`](Self::next) returns.
    delay: Duration,
    /// The longest wait, however many failures in a row.
    max: Duration,
}

impl Backoff {
    /// A backoff that waits `first` after the first failure, doubling after
    /// each further one up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            delay: first,
            max,
        }
    }

    /// The wait before the next retry; the one after it is twice as long
    /// (at most `max`).
    #[allow(
        clippy::should_implement_trait,
        reason = "an endless sequence of waits, never `None`; an Iterator would make every caller unwrap"
    )]
    pub fn next(&mut self) -> Duration {
        let delay = self.delay;
        self.delay = (delay * 2).min(self.max);
        delay
    }

    /// Starts over from the first delay, after a success.
    pub fn reset(&mut self) {
        self.delay = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(10_000));
        let waits: Vec<_> = (0..8).map(|_| b.next()).collect();
        assert_eq!(
            waits,
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000].map(ms)
        );
        b.reset();
        assert_eq!(b.next(), ms(200));
    }
}
