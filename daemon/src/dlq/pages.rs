//! Walking the dead-letter stream one page at a time, newest first, so a
//! command over every dead letter holds one page of them (payloads and
//! all) at a time, never the whole stream.
//!
//! The walk is keyed by entry id: each page starts just below the last id
//! of the one before, so entries removed meanwhile (a requeue or a discard
//! deletes its dead letter) neither shift nor repeat anything, and entries
//! added meanwhile (newer ids, e.g. a requeued job that died again) are
//! above the walk and never reached.

use super::{DeadLetter, Filter};
use crate::store::{Queue, QueueError};

/// A walk over the dead letters passing a filter, newest first.
#[derive(Debug)]
pub struct Pages {
    filter: Filter,
    /// Entry ids below this (exclusive) are still to come; `None` at the start.
    before: Option<String>,
    size: usize,
    done: bool,
}

impl Pages {
    /// A walk from the newest dead letter down, reading `size` entries per
    /// round trip.
    #[must_use]
    pub fn new(filter: Filter, size: usize) -> Pages {
        Pages {
            // `--until` is where the walk starts: below it, exclusive.
            before: filter.until_ms.map(|u| format!("{u}-0")),
            filter,
            size: size.max(1),
            done: false,
        }
    }

    /// A walk from entry `top` (included) down, so that a second pass sees
    /// what a first one counted and nothing added since.
    #[must_use]
    pub fn from(filter: Filter, size: usize, top: &str) -> Pages {
        Pages {
            before: Some(just_above(top)),
            ..Pages::new(filter, size)
        }
    }

    /// The next page's dead letters that pass the filter (possibly none, when
    /// none in that page does), or `None` when the walk is over. Also
    /// returns the id of the newest entry the page read, passing or not.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn next(
        &mut self,
        q: &Queue,
    ) -> Result<Option<(Vec<DeadLetter>, Option<String>)>, QueueError> {
        if self.done {
            return Ok(None);
        }
        let page = q
            .dead_page(self.before.as_deref(), self.filter.since_ms, self.size)
            .await?;
        self.done = page.len() < self.size;
        let newest = page.first().map(|d| d.entry_id.clone());
        if let Some(last) = page.last() {
            self.before = Some(last.entry_id.clone());
        }
        let letters = page
            .into_iter()
            .map(DeadLetter::from_entry)
            .filter(|d| self.filter.matches(d))
            .collect();
        Ok(Some((letters, newest)))
    }
}

/// How many dead letters pass `filter`, the job ids of the newest
/// `sample` of them, and the newest entry id there was (to start
/// [`Pages::from`] at), counted one page at a time.
///
/// # Errors
/// Redis errors.
pub async fn count(
    q: &Queue,
    filter: &Filter,
    size: usize,
    sample: usize,
) -> Result<(usize, Vec<String>, Option<String>), QueueError> {
    let mut pages = Pages::new(filter.clone(), size);
    let (mut n, mut ids, mut top) = (0, Vec::new(), None);
    while let Some((letters, newest)) = pages.next(q).await? {
        n += letters.len();
        let room = sample.saturating_sub(ids.len());
        ids.extend(letters.into_iter().take(room).map(|d| d.id));
        if top.is_none() {
            top = newest;
        }
    }
    Ok((n, ids, top))
}

/// The smallest stream id above `id` (`ms-seq`), as an exclusive bound that
/// includes `id` itself; an id that does not parse is returned as is.
fn just_above(id: &str) -> String {
    let parsed = id
        .split_once('-')
        .and_then(|(ms, seq)| Some((ms.parse::<u64>().ok()?, seq.parse::<u64>().ok()?)));
    match parsed {
        Some((ms, seq)) if seq < u64::MAX => format!("{ms}-{}", seq + 1),
        Some((ms, _)) => format!("{}-0", ms.saturating_add(1)),
        None => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_just_above_an_id_is_the_next_id() {
        assert_eq!(just_above("1700-0"), "1700-1");
        assert_eq!(just_above(&format!("5-{}", u64::MAX)), "6-0");
        assert_eq!(just_above("junk"), "junk");
    }
}
