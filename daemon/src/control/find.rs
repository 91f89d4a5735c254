//! Finding the jobs that wait or run by a filter: job type, where it is
//! (queued, delayed, paused, running), when it was enqueued, correlation
//! fields. [`Pages`] walks them a bounded page at a time (`ZSCAN` of the
//! delayed and held sets, `XRANGE` of each level's stream, `XPENDING` of
//! the running), so 50,000 jobs never hold Redis or memory for long; a
//! listing ([`list`], `ward job list`, `GET /v1/queues/{queue}/jobs`) and a
//! bulk cancel ([`super::bulk_cancel`]) both walk it. A job is also found
//! by its idempotency key ([`by_idempotency_key`]), in any state.

use crate::obs::events::enqueued_ms;
use crate::priority::Priority;
use crate::store::{Candidate, KeyOwner, Queue, QueueError, Waiting};

/// How many jobs one page looks at.
pub const PAGE: usize = 500;
/// The most jobs one listing returns.
pub const LIST_MAX: usize = 1_000;

/// Which waiting or running jobs a listing or a bulk cancel takes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobFilter {
    /// Only this job type.
    pub job: Option<String>,
    /// Only jobs in these states (empty: queued, delayed and paused; a
    /// running job is only taken when `running` is named).
    pub states: Vec<Waiting>,
    /// Only jobs enqueued at or after this (Unix ms, from the job id).
    pub since_ms: Option<u64>,
    /// Only jobs enqueued before this (Unix ms).
    pub until_ms: Option<u64>,
    /// Only jobs whose field `name` is exactly `value`, for every pair.
    pub fields: Vec<(String, String)>,
}

impl JobFilter {
    /// The states walked, in order: those named, else the three waiting ones.
    #[must_use]
    pub fn states(&self) -> Vec<Waiting> {
        if self.states.is_empty() {
            vec![Waiting::Queued, Waiting::Delayed, Waiting::Paused]
        } else {
            self.states.clone()
        }
    }

    /// Whether `c` matches (its state is the page's, already chosen).
    #[must_use]
    pub fn matches(&self, c: &Candidate) -> bool {
        if self.job.as_ref().is_some_and(|j| *j != c.job) {
            return false;
        }
        let at = enqueued_ms(&c.id);
        if self.since_ms.is_some_and(|s| at.is_none_or(|t| t < s)) {
            return false;
        }
        if self.until_ms.is_some_and(|u| at.is_none_or(|t| t >= u)) {
            return false;
        }
        self.fields.iter().all(|(k, v)| {
            c.fields
                .iter()
                .any(|(name, value)| name == k && value.as_slice() == v.as_bytes())
        })
    }

    /// The filter as one line, for the audit trail and messages.
    #[must_use]
    pub fn describe(&self) -> String {
        let mut parts = vec![format!(
            "state {}",
            self.states()
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("|")
        )];
        if let Some(j) = &self.job {
            parts.push(format!("job {j}"));
        }
        if let Some(s) = self.since_ms {
            parts.push(format!("since {}", crate::text::format_ms(s)));
        }
        if let Some(u) = self.until_ms {
            parts.push(format!("until {}", crate::text::format_ms(u)));
        }
        for (k, v) in &self.fields {
            parts.push(format!("{k}={v}"));
        }
        parts.join(", ")
    }
}

/// Where a walk is: the state under way and its place in it.
#[derive(Debug)]
enum Place {
    /// A `ZSCAN` cursor of the delayed or held set (0: start).
    Set(u64),
    /// A priority level's stream (or its pending list), after this id.
    Level(usize, Option<String>),
}

/// The pages of jobs in `filter`'s states, in order: each state's set or,
/// for queued and running, each priority level from high to low. A page is
/// unfiltered (the caller applies [`JobFilter::matches`]).
#[derive(Debug)]
pub struct Pages {
    /// The states still to walk, the one under way first.
    states: Vec<Waiting>,
    /// The place in `states[0]`.
    place: Place,
}

impl Pages {
    /// A walk over the states `filter` names.
    #[must_use]
    pub fn new(filter: &JobFilter) -> Pages {
        let mut pages = Pages {
            states: filter.states(),
            place: Place::Set(0),
        };
        pages.start_state();
        pages
    }

    fn start_state(&mut self) {
        self.place = match self.states.first() {
            Some(Waiting::Queued | Waiting::Running) => Place::Level(0, None),
            _ => Place::Set(0),
        };
    }

    /// The next page (possibly empty), or `None` when every state has been
    /// walked.
    ///
    /// # Errors
    /// Redis errors.
    pub async fn next(&mut self, q: &Queue) -> Result<Option<Vec<Candidate>>, QueueError> {
        let Some(&state) = self.states.first() else {
            return Ok(None);
        };
        let (page, done) = match &mut self.place {
            Place::Set(cursor) => {
                let (next, page) = q.scan_set(state, *cursor, PAGE).await?;
                *cursor = next;
                (page, next == 0)
            }
            Place::Level(level, after) => {
                let priority = Priority::ALL[*level];
                let (last, page) = if state == Waiting::Queued {
                    q.scan_stream(priority, after.as_deref(), PAGE).await?
                } else {
                    q.scan_running(priority, after.as_deref(), PAGE).await?
                };
                let level_done = last.is_none();
                *after = last;
                if level_done && *level + 1 < Priority::ALL.len() {
                    *level += 1;
                    *after = None;
                    (page, false)
                } else {
                    (page, level_done)
                }
            }
        };
        if done {
            self.states.remove(0);
            self.start_state();
        }
        Ok(Some(page))
    }
}

/// One job a listing found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListedJob {
    /// The job id.
    pub id: String,
    /// Its job type.
    pub job: String,
    /// Where it is: `queued`, `delayed`, `paused`, `running`.
    pub state: Waiting,
    /// When it was enqueued (Unix ms, from its id), when the id says.
    pub enqueued_at_ms: Option<u64>,
    /// Its producer's fields (correlation ids such as `order_id`), as text.
    pub fields: std::collections::BTreeMap<String, String>,
}

/// What a listing found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Listing {
    /// The first `limit` matching jobs, state by state.
    pub jobs: Vec<ListedJob>,
    /// Whether more matched than were returned.
    pub more: bool,
}

/// The job that owns idempotency key `key` in `q`, whatever its state,
/// read from the key's record (`ward:{Q}:idem:<key>`, kept for the job
/// type's `idempotency_ttl`); `None` when no job used it, or its record
/// expired.
///
/// # Errors
/// Redis errors.
pub async fn by_idempotency_key(q: &Queue, key: &str) -> Result<Option<KeyOwner>, QueueError> {
    q.key_owner(key).await
}

/// The first `limit` (at most [`LIST_MAX`]) jobs of `q` that `filter`
/// matches, walking no further than needed. Read only.
///
/// # Errors
/// Redis errors.
pub async fn list(q: &Queue, filter: &JobFilter, limit: usize) -> Result<Listing, QueueError> {
    let limit = limit.clamp(1, LIST_MAX);
    let mut out = Listing::default();
    let mut pages = Pages::new(filter);
    while let Some(page) = pages.next(q).await? {
        for c in page.into_iter().filter(|c| filter.matches(c)) {
            if out.jobs.len() == limit {
                out.more = true;
                return Ok(out);
            }
            out.jobs.push(ListedJob {
                enqueued_at_ms: enqueued_ms(&c.id),
                fields: c
                    .fields
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
                    .collect(),
                id: c.id,
                job: c.job,
                state: c.state,
            });
        }
    }
    Ok(out)
}
