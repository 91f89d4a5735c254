//! Quarantining a batch: `ward batch pause ID` holds its members back
//! (each leased member is held in `ward:{Q}:held` without spending an
//! attempt, like a paused job type's jobs, see [`super::pause`]) until
//! `ward batch resume ID` puts them back in the stream. The pause is the
//! field `batch:<id>` of `ward:{Q}:paused`, so every daemon picks it up
//! with the other pauses, and the scripts that hold and release jobs read
//! it through the same helper. Attempts already running finish as usual.

use crate::priority::Priority;
use crate::store::{BATCH_PAUSE_PREFIX, Pause, Queue, QueueError};

use super::Actor;
use super::audit::{self, Action};
use super::batches::{self, BatchError};

/// Most deliveries under way [`running`] reads: far above any fleet's
/// concurrency, so only a flood of leases left behind reaches it.
const RUNNING_SCAN_MAX: usize = 20_000;
/// Deliveries read per round trip by [`running`].
const RUNNING_PAGE: usize = 500;

/// What a batch pause or resume did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BatchPaused {
    /// The queue.
    pub queue: String,
    /// The batch.
    pub batch: String,
    /// The pause now in force (for a resume: the one removed, if any).
    pub pause: Option<Pause>,
    /// For a pause: the one it replaced; for a resume, `None`.
    pub previous: Option<Pause>,
    /// For a resume: held members put back in the stream.
    pub released: u64,
}

/// The field of `ward:{Q}:paused` that pauses batch `id`.
#[must_use]
pub fn field(id: &str) -> String {
    format!("{BATCH_PAUSE_PREFIX}{id}")
}

/// Pauses (quarantines) batch `id` of `q` for the reason `note`: its
/// members are held, not run, until [`resume`], or until `until_ms` (Unix
/// ms), when any daemon serving the queue ends the pause and releases them
/// as a resume would. Pausing a paused batch replaces its pause. Leaves an
/// entry in the audit trail.
///
/// # Errors
/// No such batch, no note or an `until_ms` already past (nothing changed),
/// or Redis errors.
pub async fn pause(
    q: &Queue,
    actor: &Actor,
    id: &str,
    note: &str,
    until_ms: Option<u64>,
) -> Result<BatchPaused, BatchError> {
    if note.trim().is_empty() {
        return Err(BatchError::BadId(
            "say why you pause the batch: a note is required (`--note WHY`)".into(),
        ));
    }
    let pause = super::pause::new_pause(actor, note, until_ms)?;
    batches::exists(q, id).await?;
    let previous = q.set_pause(&field(id), &pause).await?;
    let action = Action {
        action: "batch-pause",
        queue: &q.keys.queue,
        target: id.to_string(),
        count: 0,
        note,
        detail: Some(serde_json::json!({ "until_ms": until_ms, "replaced": previous })),
    };
    audit::record(&q.store(), actor, action).await?;
    Ok(BatchPaused {
        queue: q.keys.queue.clone(),
        batch: id.to_string(),
        pause: Some(pause),
        previous,
        released: 0,
    })
}

/// Resumes batch `id` of `q`: removes its pause, then puts its held
/// members back in the stream (those whose job type or queue is not paused
/// on its own). Resuming a batch that is not paused releases what is held
/// all the same, so it finishes an interrupted resume. Audited, with
/// `note` (`""` for none) and the members released.
///
/// # Errors
/// No such batch, or Redis errors (what was released stays released).
pub async fn resume(
    q: &Queue,
    actor: &Actor,
    id: &str,
    note: &str,
) -> Result<BatchPaused, BatchError> {
    batches::exists(q, id).await?;
    let target = field(id);
    let removed = q.remove_pause(&target).await?;
    let released = q.release_held(&target).await?;
    let action = Action {
        action: "batch-resume",
        queue: &q.keys.queue,
        target: id.to_string(),
        count: released.released,
        note,
        detail: Some(serde_json::json!({ "removed": removed, "dropped": released.dropped })),
    };
    audit::record(&q.store(), actor, action).await?;
    Ok(BatchPaused {
        queue: q.keys.queue.clone(),
        batch: id.to_string(),
        pause: removed,
        previous: None,
        released: released.released,
    })
}

/// The pause of batch `id`, if it has one (in force or not yet ended).
///
/// # Errors
/// Redis errors.
pub async fn paused(q: &Queue, id: &str) -> Result<Option<Pause>, QueueError> {
    Ok(q.pauses().await?.0.remove(&field(id)))
}

/// How many members of batch `id` are under way: leased by a daemon and
/// not yet recorded (running, or about to). Reads the deliveries pending
/// in the group, at most [`RUNNING_SCAN_MAX`] of them.
///
/// # Errors
/// Redis errors.
pub async fn running(q: &Queue, id: &str) -> Result<u64, QueueError> {
    let mut count = 0;
    let mut read = 0;
    for level in Priority::ALL {
        let mut after: Option<String> = None;
        while read < RUNNING_SCAN_MAX {
            let (last, page) = q
                .scan_running(level, after.as_deref(), RUNNING_PAGE)
                .await?;
            read += RUNNING_PAGE;
            count += page
                .iter()
                .filter(|c| {
                    c.fields
                        .iter()
                        .any(|(k, v)| k == "batch" && v.as_slice() == id.as_bytes())
                })
                .count() as u64;
            match last {
                Some(l) => after = Some(l),
                None => break,
            }
        }
    }
    Ok(count)
}
