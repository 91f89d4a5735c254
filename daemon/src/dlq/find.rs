//! Finding dead letters: the newest ones matching a filter, or the one of
//! a given job.

use super::{DeadLetter, Filter, PAGE, Pages};
use crate::store::{self, Queue, QueueError};

/// The newest dead letters of `q` passing `filter`, at most `limit`.
///
/// # Errors
/// Redis errors.
pub async fn list(q: &Queue, filter: &Filter, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
    let mut out = Vec::new();
    let mut pages = Pages::new(filter.clone(), PAGE);
    while out.len() < limit
        && let Some((letters, _)) = pages.next(q).await?
    {
        out.extend(letters);
    }
    out.truncate(limit);
    Ok(out)
}

/// Where a job id (or dead-letter entry id) given on the command line stands.
#[derive(Debug)]
pub enum Located {
    /// In the dead-letter stream.
    Dead(Box<DeadLetter>),
    /// The job exists but has no dead letter now.
    NotDead {
        /// The job record's state.
        state: String,
        /// Why retention removed its dead letter, if it did.
        trimmed: Option<String>,
    },
    /// Redis knows neither a job nor a dead letter by that id.
    Unknown,
}

/// Finds the dead letter of job `id` (or the dead letter whose entry id is
/// `id`), or says why there is none.
///
/// # Errors
/// Redis errors.
pub async fn locate(q: &Queue, id: &str) -> Result<Located, QueueError> {
    let mut rec = q
        .record_fields(id, &["state", "dead_entry", "dead_trimmed"])
        .await?
        .into_iter();
    let (state, dead_entry, trimmed) = (
        rec.next().flatten(),
        rec.next().flatten(),
        rec.next().flatten(),
    );
    if let Some(de) = &dead_entry
        && let Some(e) = q.dead_entry(de).await?
    {
        return Ok(Located::Dead(Box::new(DeadLetter::from_entry(e))));
    }
    if state.is_none()
        && let Some(e) = q.dead_entry(id).await?
    {
        // Not a job id: the dead letter's own entry id.
        return Ok(Located::Dead(Box::new(DeadLetter::from_entry(e))));
    }
    if trimmed.is_none() && matches!(state.as_deref(), None | Some("dead")) {
        // A dead letter written before records pointed at their entry:
        // look for it by its `id` field.
        let mut before: Option<String> = None;
        loop {
            let page = q.dead_page(before.as_deref(), None, PAGE).await?;
            let done = page.len() < PAGE;
            before = page.last().map(|d| d.entry_id.clone());
            if let Some(d) = page
                .into_iter()
                .map(DeadLetter::from_entry)
                .find(|d| d.id == id)
            {
                return Ok(Located::Dead(Box::new(d)));
            }
            if done {
                break;
            }
        }
    }
    Ok(match state {
        Some(state) => Located::NotDead { state, trimmed },
        None => Located::Unknown,
    })
}

/// Why `id` has no dead letter, for a message.
#[must_use]
pub fn not_dead(queue: &str, id: &str, located: &Located) -> String {
    match located {
        Located::NotDead {
            trimmed: Some(why), ..
        } => format!(
            "job `{id}` in queue `{queue}` is no longer in the dead-letter stream: retention removed it ({why}); its record expires {} days after that",
            store::RETIRED_TTL.as_secs() / 86400
        ),
        Located::NotDead { state, .. } => format!(
            "job `{id}` in queue `{queue}` is not in the dead-letter stream: it is `{state}` (already requeued or discarded?); see `ward job show {queue} {id}`"
        ),
        _ => format!(
            "no dead letter for job `{id}` in queue `{queue}` (neither a job id nor a dead-letter entry id there)"
        ),
    }
}
