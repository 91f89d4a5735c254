//! Priority levels and the starvation guard that shares reads between them.
//!
//! A job runs at one of three fixed levels. Each level has a stream of its
//! own (`ward:{Q}:jobs` is `normal`, so a plain `XADD` keeps working); a
//! producer names a level with the entry field [`FIELD`] (`priority high`),
//! and the daemon's read moves such entries to their level's stream before
//! anything else reads them. A reader reads the levels in an order that
//! [`Picker`] turns by weight: with weights 8:3:1, eight reads in twelve
//! start with `high`, three with `normal`, one with `low`, and each read
//! goes on to the other levels (highest first) while it has room. A level
//! with nothing ready gives its turn away, so the weights only matter when
//! several levels have a backlog: then none of them starves.
//!
//! Pure: no Redis, no I/O.

use std::fmt;

/// The producer's entry field that names a job's level (`high`, `normal`,
/// `low`). Like `idempotency_key`, it is a field Ward reads, not one of its
/// own (`ward:`) fields, and it travels with the job to its retries, its
/// record (`x:priority`) and its dead letter, which is how a job keeps its
/// level.
pub const FIELD: &str = "priority";

/// A job's priority level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Priority {
    /// Runs before the others while the starvation guard lets it.
    High,
    /// The default: a job that names no level.
    #[default]
    Normal,
    /// Runs when the others leave room, and on its own weighted turns.
    Low,
}

impl Priority {
    /// Every level, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The level as written in the [`FIELD`] field and on the command line.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// The level named `s`, if it is one.
    #[must_use]
    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Position in [`Priority::ALL`].
    fn rank(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many read turns each level gets when all have a backlog:
/// `[high, normal, low]`. Every weight is at least 1, so no level starves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weights(pub [u32; 3]);

impl Default for Weights {
    fn default() -> Self {
        Weights([8, 3, 1])
    }
}

impl Weights {
    /// Weights from a config list `[high, normal, low]`; `None` unless it
    /// has three entries, each at least 1.
    #[must_use]
    pub fn from_list(list: &[u32]) -> Option<Weights> {
        match list {
            [h, n, l] if *h >= 1 && *n >= 1 && *l >= 1 => Some(Weights([*h, *n, *l])),
            _ => None,
        }
    }
}

/// Turns the order in which a reader reads the levels: smooth weighted
/// round robin (each turn, every level earns its weight; the richest goes
/// first and pays the total), so a level's turns are spread evenly rather
/// than bunched.
#[derive(Debug, Clone, Default)]
pub struct Picker {
    /// Each level's credit, by rank.
    credit: [i64; 3],
}

impl Picker {
    /// The order of the next read: the level whose turn it is, then the
    /// others highest first.
    pub fn next(&mut self, w: Weights) -> [Priority; 3] {
        let total: i64 = w.0.iter().map(|x| i64::from(*x)).sum();
        for (c, x) in self.credit.iter_mut().zip(w.0) {
            *c += i64::from(x);
        }
        let mut first = 0;
        for (i, c) in self.credit.iter().enumerate() {
            if *c > self.credit[first] {
                first = i;
            }
        }
        self.credit[first] -= total;
        order_from(Priority::ALL[first])
    }
}

/// `first`, then the other levels highest first.
#[must_use]
pub fn order_from(first: Priority) -> [Priority; 3] {
    let mut out = [first; 3];
    let mut k = 1;
    for p in Priority::ALL {
        if p.rank() != first.rank() {
            out[k] = p;
            k += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_their_names() {
        for p in Priority::ALL {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
        assert_eq!(Priority::parse("urgent"), None);
        assert_eq!(Priority::default(), Priority::Normal);
    }

    #[test]
    fn turns_follow_the_weights_and_spread_out() {
        let mut p = Picker::default();
        let firsts: Vec<Priority> = (0..12).map(|_| p.next(Weights::default())[0]).collect();
        let count = |l| firsts.iter().filter(|f| **f == l).count();
        assert_eq!(
            (
                count(Priority::High),
                count(Priority::Normal),
                count(Priority::Low)
            ),
            (8, 3, 1)
        );
        // Spread: never more than three high turns in a row with 8:3:1.
        let runs = firsts
            .windows(4)
            .filter(|w| w.iter().all(|f| *f == Priority::High))
            .count();
        assert_eq!(runs, 0, "{firsts:?}");
    }

    #[test]
    fn every_level_gets_a_turn_even_with_lopsided_weights() {
        let mut p = Picker::default();
        let w = Weights([1000, 1, 1]);
        let firsts: Vec<Priority> = (0..1002).map(|_| p.next(w)[0]).collect();
        assert!(firsts.contains(&Priority::Low));
        assert!(firsts.contains(&Priority::Normal));
    }

    #[test]
    fn an_order_names_each_level_once_highest_first_after_the_turn() {
        assert_eq!(
            order_from(Priority::Low),
            [Priority::Low, Priority::High, Priority::Normal]
        );
        assert_eq!(order_from(Priority::High), Priority::ALL);
        assert_eq!(Weights::from_list(&[8, 3, 0]), None);
        assert_eq!(Weights::from_list(&[2, 2, 1]), Some(Weights([2, 2, 1])));
    }
}
