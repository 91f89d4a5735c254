//! Fairness between groups (tenants), the worker's side: before a batch
//! runs, its grouped jobs take their groups' slots in one call, and those
//! whose group is at its cap are deferred (no attempt spent); as
//! completions are recorded, their slots are given back. See
//! [`crate::fairness`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::fairness::busy_delay;
use crate::store::{GroupClaim, Queue};
use crate::transition::{Completion, Deferral, Transition};

use super::plugins::{JobType, JobTypes};
use super::triage::{Builder, Work};

/// After Redis refused: how long to wait before asking again.
const RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// The slot claim of a job of type `jt` with correlation fields `extra`,
/// if its type groups its jobs and it names a group.
fn claim<'a>(
    jt: &JobType,
    job: &'a str,
    id: &'a str,
    extra: &'a [(String, Vec<u8>)],
    lease: Duration,
) -> Option<GroupClaim<'a>> {
    let limit = jt.group.as_ref()?;
    Some(GroupClaim {
        job,
        group: limit.group_of(extra)?,
        id,
        cap: limit.concurrency,
        ttl: jt.sandbox.timeout + lease,
    })
}

/// Lets through the attempts of `works` whose group has a free slot (or
/// that have no group), and turns the others into deferrals, counted in
/// the second value. A slot lasts the job type's `timeout` plus `lease`
/// (the queue's lease, plus however long an attempt of this read may wait
/// for a slot of this daemon) unless given back. Waits out a Redis outage:
/// running without a slot could break the cap.
pub(crate) async fn gate(
    queue: &Queue,
    builder: Builder<'_>,
    lease: Duration,
    works: Vec<Work>,
) -> (Vec<Work>, usize) {
    let grouped: Vec<usize> = works
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w, Work::Run(e, jt) if claim(jt, &e.job, &e.id, &e.extra, lease).is_some()))
        .map(|(i, _)| i)
        .collect();
    if grouped.is_empty() {
        return (works, 0);
    }
    let claims: Vec<GroupClaim<'_>> = grouped
        .iter()
        .filter_map(|i| match &works[*i] {
            Work::Run(e, jt) => claim(jt, &e.job, &e.id, &e.extra, lease),
            Work::Record(_) => None,
        })
        .collect();
    let mut backoff = RETRY;
    let got = loop {
        match queue.acquire_group_slots(&claims).await {
            Ok(got) => break got,
            Err(e) => {
                let delay = backoff.next();
                tracing::error!(queue = %builder.queue, error = %e, retry_in = ?delay, "cannot take group slots; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    };
    let busy: HashMap<usize, u64> = grouped
        .into_iter()
        .zip(got)
        .filter_map(|(i, place)| Some((i, place?)))
        .collect();
    drop(claims);
    let parked = busy.len();
    let works = works
        .into_iter()
        .enumerate()
        .map(|(i, w)| match w {
            Work::Run(entry, jt) if busy.contains_key(&i) => {
                let place = busy.get(&i).copied().unwrap_or(0);
                Work::Record(busy_completion(builder, entry, &jt, place))
            }
            w => w,
        })
        .collect();
    (works, parked)
}

/// The deferral of a job whose group is at its cap, at `place` in its
/// group's waiting line.
fn busy_completion(
    builder: Builder<'_>,
    entry: crate::job::JobEntry,
    jt: &Arc<JobType>,
    place: u64,
) -> Completion {
    let group = jt
        .group
        .as_ref()
        .and_then(|g| g.group_of_entry(&entry))
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .unwrap_or_default();
    tracing::debug!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, group, "group at its cap; job parked");
    let why = Deferral::GroupBusy { group };
    let outcome = why.recorded(Duration::ZERO);
    let transition = Transition::Defer {
        delay: busy_delay(place, rand::random::<u64>()),
        why,
    };
    let ran = builder.ran(&entry, Some(jt), &transition);
    Completion::new(entry, outcome, transition, ran)
}

/// Gives back the group slots of the attempts in `batch` that took effect
/// (`took`); a completion that held none changes nothing in Redis.
pub(crate) async fn release(queue: &Queue, jobs: &JobTypes, batch: &[Completion], took: &[bool]) {
    // Only what this daemon recorded: a completion another daemon got to
    // first (a reclaimed delivery) may be running there, on its slot.
    let claims: Vec<GroupClaim<'_>> = batch
        .iter()
        .zip(took)
        .filter(|(c, took)| **took && holds_a_slot(c))
        .filter_map(|(c, _)| {
            claim(
                jobs.get(c.job())?,
                c.job(),
                c.job_id(),
                c.extra(),
                Duration::ZERO,
            )
        })
        .collect();
    if let Err(e) = queue.release_group_slots(&claims).await {
        // The slots expire on their own (timeout + lease).
        tracing::warn!(queue = %queue.keys.queue, error = %e, "cannot give back group slots; they expire on their own");
    }
}

/// Whether `c`'s attempt passed the gate, so holds its group's slot. A job
/// an upstream then held back did: it waits in the delayed set, not
/// running, so it gives the slot back rather than keep its group's other
/// jobs waiting, and takes one again when it comes back. A job the gate
/// parked holds none.
fn holds_a_slot(c: &Completion) -> bool {
    !matches!(
        c.transition(),
        Transition::Defer {
            why: Deferral::GroupBusy { .. },
            ..
        }
    )
}

/// Tells `ward_enqueue` which of the queue's job types group their jobs
/// (at start and on every reload), so it parks a busy group's new jobs
/// instead of adding them to the stream. On failure `ward_enqueue` keeps
/// what it was told last; the daemons' own gate still holds the cap.
pub(crate) async fn publish(queue: &Queue, types: &JobTypes) {
    let mut grouped: Vec<(&str, &crate::fairness::GroupLimit)> = types
        .iter()
        .filter_map(|(name, jt)| Some((name.as_str(), jt.group.as_ref()?)))
        .collect();
    grouped.sort_unstable_by_key(|(name, _)| *name);
    if let Err(e) = queue.publish_grouping(&grouped).await {
        tracing::error!(queue = %queue.keys.queue, error = %e, "cannot tell Redis the queue's grouped job types; ward_enqueue keeps the last ones it was told");
    }
}
