//! What a job type's success leaves behind: its result, kept with the
//! record (`result_ttl`, `result_max_bytes`), and its next stage (`then`).

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::jobs::size;
use crate::config::QueueConfig;
use crate::config::defaults::{DEFAULT_RESULT_MAX_BYTES, MAX_RESULT_MAX_BYTES};
use crate::config::raw::RawJob;
use crate::transition::ResultPolicy;

/// `result_ttl` (at least 1 s) and `result_max_bytes` (0 keeps no result).
pub(super) fn results(
    j: &RawJob,
    name: &str,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> ResultPolicy {
    let ttl = match &j.result_ttl {
        Some(t) if *t.get_ref() < Duration::from_secs(1) => {
            problem(
                t.span(),
                format!(
                    "job `{name}`: result_ttl must be at least 1s (Redis expires keys in whole seconds); leave it out to keep results as long as the queue's succeeded_ttl"
                ),
            );
            None
        }
        Some(t) => Some(*t.get_ref()),
        None => None,
    };
    let max_bytes = size(
        j.result_max_bytes.as_ref(),
        DEFAULT_RESULT_MAX_BYTES,
        0..=MAX_RESULT_MAX_BYTES,
        &format!("job `{name}`: result_max_bytes"),
        problem,
    );
    ResultPolicy { ttl, max_bytes }
}

/// One `then` as written: the job type that names it, its queue, the value.
pub(super) struct Then {
    /// The job type whose success enqueues the next stage.
    pub(super) job: String,
    /// Its queue.
    pub(super) queue: String,
    /// The next stage's job type, with its place in the file.
    pub(super) next: Spanned<String>,
}

/// Checks every `then` once all job types are known: it names a job type of
/// the same queue (the next stage is enqueued in the same atomic step as the
/// acknowledgement, which one queue's keys allow), and no chain of stages
/// comes back to where it started (it would never end).
pub(super) fn stages(
    thens: &[Then],
    queues: &mut [QueueConfig],
    problem: &mut dyn FnMut(Range<usize>, String),
) {
    for t in thens {
        let next = t.next.get_ref();
        let Some(q) = queues.iter_mut().find(|q| q.name == t.queue) else {
            continue;
        };
        if !q.jobs.contains_key(next) {
            let mut known: Vec<&str> = q.jobs.keys().map(String::as_str).collect();
            known.sort_unstable();
            problem(
                t.next.span(),
                format!(
                    "job `{}`: then = \"{next}\" names no job type of queue `{}` (its job types: {}); the next stage must be a [[job]] of the same queue",
                    t.job,
                    t.queue,
                    known.join(", ")
                ),
            );
        } else if let Some(job) = q.jobs.get_mut(&t.job) {
            job.then = Some(next.clone());
        }
    }
    for t in thens {
        let Some(q) = queues.iter().find(|q| q.name == t.queue) else {
            continue;
        };
        if let Some(cycle) = cycle_from(q, &t.job) {
            problem(
                t.next.span(),
                format!(
                    "job `{}`: then = \"{}\" makes a chain of stages that never ends ({}); the last stage must have no `then`",
                    t.job,
                    t.next.get_ref(),
                    cycle.join(" -> ")
                ),
            );
        }
    }
}

/// The chain of `then`s from `start`, when it comes back to `start`.
fn cycle_from(q: &QueueConfig, start: &str) -> Option<Vec<String>> {
    let mut chain = vec![start.to_string()];
    let mut at = start.to_string();
    for _ in 0..=q.jobs.len() {
        let next = q.jobs.get(&at)?.then.clone()?;
        chain.push(next.clone());
        if next == start {
            return Some(chain);
        }
        at = next;
    }
    None
}
