//! The dead letters counted by job type and last failure code: what the
//! web screen's summary shows above the list, so a pile of dead letters
//! reads as its few causes.

use std::collections::BTreeMap;

use super::{ACT_PAGE, DeadLetter, Filter, Pages};
use crate::store::{Queue, QueueError};

/// The dead letters of one job type and code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Group {
    /// The job type.
    pub job: String,
    /// The last failure's code (`None`: the failure gave none).
    pub code: Option<String>,
    /// How many dead letters.
    pub count: u64,
    /// When the newest of them was dead-lettered, Unix ms.
    pub newest_ms: u64,
}

/// The groups, largest first, and how far the count went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Groups {
    /// Largest first; ties by job type, then code.
    pub groups: Vec<Group>,
    /// How many dead letters were counted.
    pub counted: u64,
    /// Whether more matched than were counted (the newest `max` only).
    pub partial: bool,
}

/// Counts `letters` into `acc`, keyed by job type and code.
pub fn tally(acc: &mut BTreeMap<(String, Option<String>), Group>, letters: Vec<DeadLetter>) {
    for d in letters {
        let g = acc
            .entry((d.job.clone(), d.code.clone()))
            .or_insert_with(|| Group {
                job: d.job,
                code: d.code,
                count: 0,
                newest_ms: 0,
            });
        g.count += 1;
        g.newest_ms = g.newest_ms.max(d.dead_at_ms);
    }
}

/// `acc` as [`Groups`]: largest first.
#[must_use]
pub fn sorted(
    acc: BTreeMap<(String, Option<String>), Group>,
    counted: u64,
    partial: bool,
) -> Groups {
    let mut groups: Vec<Group> = acc.into_values().collect();
    groups.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.job.cmp(&b.job))
            .then_with(|| a.code.cmp(&b.code))
    });
    Groups {
        groups,
        counted,
        partial,
    }
}

/// The newest `max` dead letters of `q` passing `filter`, counted by job
/// type and code, read one page at a time (a page's payloads at most in
/// memory at once).
///
/// # Errors
/// Redis errors.
pub async fn groups(q: &Queue, filter: &Filter, max: u64) -> Result<Groups, QueueError> {
    let mut acc = BTreeMap::new();
    let mut pages = Pages::new(filter.clone(), ACT_PAGE);
    let mut counted = 0u64;
    while let Some((mut letters, _)) = pages.next(q).await? {
        let room = usize::try_from(max.saturating_sub(counted)).unwrap_or(usize::MAX);
        if letters.len() > room {
            letters.truncate(room);
            counted += letters.len() as u64;
            tally(&mut acc, letters);
            return Ok(sorted(acc, counted, true));
        }
        counted += letters.len() as u64;
        tally(&mut acc, letters);
    }
    Ok(sorted(acc, counted, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(job: &str, code: Option<&str>, at: u64) -> DeadLetter {
        DeadLetter {
            dead_id: format!("{at}-0"),
            dead_at_ms: at,
            id: format!("{at}-1"),
            job: job.into(),
            queue: "q".into(),
            reason: "permanent".into(),
            class: "permanent".into(),
            code: code.map(str::to_string),
            message: String::new(),
            upstream: None,
            attempts: 1,
            first_attempt_at_ms: None,
            last_attempt_at_ms: None,
            plugin_digest: None,
            entry: None,
            idempotency_key: None,
            payload: None,
            payload_hex: None,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn dead_letters_group_by_type_and_code_largest_first() {
        let mut acc = BTreeMap::new();
        tally(
            &mut acc,
            vec![
                letter("send", Some("http-503"), 5),
                letter("send", Some("http-400"), 9),
                letter("send", Some("http-503"), 7),
                letter("bill", None, 3),
                letter("send", Some("http-503"), 1),
                letter("bill", None, 4),
            ],
        );
        let g = sorted(acc, 6, false);
        let rows: Vec<(&str, Option<&str>, u64, u64)> = g
            .groups
            .iter()
            .map(|g| (g.job.as_str(), g.code.as_deref(), g.count, g.newest_ms))
            .collect();
        assert_eq!(
            rows,
            [
                ("send", Some("http-503"), 3, 7),
                ("bill", None, 2, 4),
                ("send", Some("http-400"), 1, 9),
            ]
        );
        assert_eq!((g.counted, g.partial), (6, false));
    }
}
