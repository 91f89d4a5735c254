//! Pausing and resuming a whole queue or one job type of it, fleet-wide.
//!
//! A pause is a field of `ward:{Q}:paused` (`*` for the whole queue, else
//! the job type). Every daemon reads that hash a few times a second: a
//! paused queue is not read from, and a job of a paused type that is
//! leased anyway is held in `ward:{Q}:held` without spending an attempt.
//! Attempts already running finish as usual. A resume removes the pause,
//! then puts the held jobs back in the stream in chunks (see
//! [`Queue::release_held`]); a pause with an `until` is ended by whichever
//! daemon sees its time pass first.

use crate::store::{HeldCounts, Pause, Queue, QueueError, WHOLE_QUEUE};

use super::audit::{self, Action, Actor};

/// Most held jobs [`status`] counts by job type.
pub const STATUS_COUNT_MAX: usize = 100_000;

/// Why a pause or a resume was refused (nothing changed), or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PauseError {
    /// A pause must say why.
    #[error("say why you pause it: a note is required (`--note WHY`)")]
    NoNote,
    /// The job type is not a name a job type can have.
    #[error("job type `{job}` {why}")]
    BadJobType {
        /// The name given.
        job: String,
        /// What is wrong with it.
        why: String,
    },
    /// `until` is not in the future.
    #[error(
        "the pause would end at {at} (Unix ms {until_ms}), which has already passed; give a later time or a duration such as `30m`"
    )]
    UntilPassed {
        /// The time given, Unix ms.
        until_ms: u64,
        /// The same, as text.
        at: String,
    },
    /// Redis failed; for a resume, the held jobs released by then stay
    /// released, and running the resume again releases the rest.
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// What a pause did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Paused {
    /// The queue.
    pub queue: String,
    /// `*` for the whole queue, else the job type.
    pub target: String,
    /// The pause now in force.
    pub pause: Pause,
    /// The pause it replaced, if the target was paused already.
    pub previous: Option<Pause>,
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resumed {
    /// The queue.
    pub queue: String,
    /// `*` for the whole queue, else the job type.
    pub target: String,
    /// The pause it removed; `None` when there was none (the held jobs
    /// were released all the same, so a resume can be run again).
    pub removed: Option<Pause>,
    /// Held jobs put back in the stream.
    pub released: u64,
    /// Jobs still held because their job type (or, for a job type, the
    /// whole queue) is still paused.
    pub still_held: u64,
}

/// One pause as [`status`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PauseView {
    /// `*` for the whole queue, else the job type.
    pub target: String,
    /// The pause.
    #[serde(flatten)]
    pub pause: Pause,
    /// Its `until` has passed: daemons no longer honour it, and one of
    /// them is about to remove it and release its jobs.
    pub expired: bool,
    /// Jobs held of this job type (for `*`: of every type).
    pub held: u64,
}

/// A queue's pauses and held jobs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PauseStatus {
    /// The queue.
    pub queue: String,
    /// Its pauses, the whole queue's (`*`) first.
    pub pauses: Vec<PauseView>,
    /// The held jobs, in all and by job type.
    pub held: HeldCounts,
}

/// When a pause given `until` as `s` ends, Unix ms: a duration from
/// `now_ms` (`"30m"`, `"2h"`) or an RFC 3339 time.
///
/// # Errors
/// A message showing both accepted forms.
pub fn parse_until(s: &str, now_ms: u64) -> Result<u64, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s.trim()) {
        return u64::try_from(t.timestamp_millis()).map_err(|_| format!("`{s}` is before 1970"));
    }
    match humantime::parse_duration(s.trim()) {
        Ok(d) => Ok(now_ms.saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))),
        Err(_) => Err(format!(
            "`{s}` is neither a duration from now (like \"30m\", \"2h\") nor an RFC 3339 time (like 2026-11-22T03:00:00Z)"
        )),
    }
}

/// A pause by `actor` from now, for `note`, until `until_ms` (Unix ms;
/// `None`: until a resume). Queues, job types and batches are paused with
/// it alike.
///
/// # Errors
/// [`PauseError::UntilPassed`]: `until_ms` is not in the future.
pub fn new_pause(actor: &Actor, note: &str, until_ms: Option<u64>) -> Result<Pause, PauseError> {
    let now = crate::clock::now_ms();
    if let Some(until_ms) = until_ms.filter(|u| *u <= now) {
        return Err(PauseError::UntilPassed {
            until_ms,
            at: crate::text::format_ms(until_ms),
        });
    }
    Ok(Pause {
        by: actor.name.clone(),
        at_ms: now,
        note: note.to_string(),
        until_ms,
    })
}

/// The field of `ward:{Q}:paused` for `job` (`None`: the whole queue).
fn target(job: Option<&str>) -> Result<String, PauseError> {
    let Some(job) = job else {
        return Ok(WHOLE_QUEUE.to_string());
    };
    let why = if job == WHOLE_QUEUE {
        Some(
            "is the name of the whole queue's pause; leave out the job type to pause the queue"
                .to_string(),
        )
    } else if let Some(batch) = job.strip_prefix(crate::store::BATCH_PAUSE_PREFIX) {
        Some(format!(
            "is the form of a batch's pause; pause a batch with `ward batch pause QUEUE {batch}`"
        ))
    } else {
        crate::config::check_name(job).map(|w| w.to_string())
    };
    match why {
        Some(why) => Err(PauseError::BadJobType {
            job: job.to_string(),
            why,
        }),
        None => Ok(job.to_string()),
    }
}

/// Pauses queue `q` (`job`: `None`), or job type `job` of it, for the
/// reason `note`, until `until_ms` (Unix ms; `None`: until a resume);
/// pausing what is paused already replaces its pause. Leaves one entry
/// in the audit trail.
///
/// # Errors
/// [`PauseError::NoNote`], [`PauseError::BadJobType`] and
/// [`PauseError::UntilPassed`] (nothing changed), or Redis errors.
pub async fn pause(
    q: &Queue,
    actor: &Actor,
    job: Option<&str>,
    note: &str,
    until_ms: Option<u64>,
) -> Result<Paused, PauseError> {
    let target = target(job)?;
    if note.trim().is_empty() {
        return Err(PauseError::NoNote);
    }
    let pause = new_pause(actor, note, until_ms)?;
    let previous = q.set_pause(&target, &pause).await?;
    let detail = serde_json::json!({ "until_ms": until_ms, "replaced": previous });
    let action = Action {
        action: "pause",
        queue: &q.keys.queue,
        target: target.clone(),
        count: 0,
        note,
        detail: Some(detail),
    };
    audit::record(&q.store(), actor, action).await?;
    Ok(Paused {
        queue: q.keys.queue.clone(),
        target,
        pause,
        previous,
    })
}

/// Resumes queue `q` (`job`: `None`) or job type `job` of it: removes the
/// pause, then puts the held jobs back in the stream (for the whole
/// queue, those of every job type not paused on its own), in chunks.
/// Resuming what is not paused releases what is held all the same, so it
/// is the way to finish a resume that was interrupted. Leaves one entry in
/// the audit trail, with `note` (`""` for none) and the jobs released.
///
/// # Errors
/// [`PauseError::BadJobType`] (nothing changed), or Redis errors.
pub async fn resume(
    q: &Queue,
    actor: &Actor,
    job: Option<&str>,
    note: &str,
) -> Result<Resumed, PauseError> {
    let target = target(job)?;
    let removed = q.remove_pause(&target).await?;
    let released = q.release_held(&target).await?;
    let still_held = q.held_counts(0).await?.total;
    let detail = serde_json::json!({
        "removed": removed,
        "dropped": released.dropped,
        "still_held": still_held,
    });
    let action = Action {
        action: "resume",
        queue: &q.keys.queue,
        target: target.clone(),
        count: released.released,
        note,
        detail: Some(detail),
    };
    audit::record(&q.store(), actor, action).await?;
    Ok(Resumed {
        queue: q.keys.queue.clone(),
        target,
        removed,
        released: released.released,
        still_held,
    })
}

/// Queue `q`'s pauses, each with the jobs it holds, and the held jobs by
/// job type (counted for up to [`STATUS_COUNT_MAX`] of them). Reads only.
///
/// # Errors
/// Redis errors.
pub async fn status(q: &Queue) -> Result<PauseStatus, PauseError> {
    let pauses = q.pauses().await?;
    let held = q.held_counts(STATUS_COUNT_MAX).await?;
    let now = crate::clock::now_ms();
    let mut views: Vec<PauseView> = pauses
        .0
        .into_iter()
        .map(|(target, pause)| PauseView {
            held: if target == WHOLE_QUEUE {
                held.total
            } else {
                held.by_type.get(&target).copied().unwrap_or(0)
            },
            expired: !pause.in_force(now),
            target,
            pause,
        })
        .collect();
    // `*` sorts before letters already; keep it first whatever the names.
    views.sort_by_key(|v| (v.target != WHOLE_QUEUE, v.target.clone()));
    Ok(PauseStatus {
        queue: q.keys.queue.clone(),
        pauses: views,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_is_a_duration_from_now_or_a_time() {
        assert_eq!(parse_until("30s", 1_000), Ok(31_000));
        assert_eq!(parse_until("1970-01-01T00:00:02Z", 1_000), Ok(2_000));
        assert!(parse_until("soon", 1_000).is_err());
    }

    #[test]
    fn the_target_is_star_for_the_queue_and_never_star_for_a_job_type() {
        assert_eq!(target(None).unwrap(), "*");
        assert_eq!(target(Some("send")).unwrap(), "send");
        assert!(matches!(
            target(Some("*")),
            Err(PauseError::BadJobType { .. })
        ));
    }
}
