//! The last gate before attempts start: the upstreams they call. A job
//! whose upstream holds its jobs (a Retry-After), has no token left, or has
//! every slot in use is held back without spending an attempt, until the
//! earliest time it could run (see [`crate::upstream`]).

use std::sync::Arc;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::job::JobEntry;
use crate::store::{Refusal, Refused};
use crate::transition::{Completion, Deferral, Transition};
use crate::upstream::Upstreams;

use super::plugins::JobType;
use super::triage::{Builder, Work};

/// After Redis refused an admission: how long to wait before asking again.
const ADMIT_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// `works` with every attempt its upstreams do not admit now turned into a
/// deferral; one Redis call for the whole batch (none when no upstream has
/// a limit).
pub(crate) async fn admit(
    builder: Builder<'_>,
    upstreams: Option<&Upstreams>,
    works: Vec<Work>,
) -> Vec<Work> {
    let Some(ups) = upstreams else {
        return works;
    };
    // Held by a Retry-After, as this daemon last saw it: no need to ask.
    let works: Vec<Work> = works
        .into_iter()
        .map(|w| match w {
            Work::Run(entry, jt) => match ups.held_among(&jt.upstreams) {
                Some((upstream, wait)) => {
                    let why = Refused {
                        why: Refusal::Held,
                        upstream: 0,
                        wait,
                    };
                    Work::Record(refused(builder, entry, &jt, upstream, why))
                }
                None => Work::Run(entry, jt),
            },
            other => other,
        })
        .collect();
    if !ups.any_limited() {
        return works;
    }
    let answers = {
        let asks: Vec<(&str, &[String])> = works
            .iter()
            .filter_map(|w| match w {
                Work::Run(e, jt) => Some((e.entry_id.as_str(), jt.upstreams.as_slice())),
                Work::Record(_) => None,
            })
            .collect();
        let mut backoff = ADMIT_RETRY;
        loop {
            match ups.admit(&asks).await {
                Ok(a) => break a,
                Err(e) => {
                    // Running without asking could break the upstream's
                    // limit; the deliveries stay leased (and renewed).
                    let delay = backoff.next();
                    tracing::error!(queue = %builder.queue, error = %e, retry_in = ?delay, "cannot admit attempts to their upstreams; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    };
    let mut answers = answers.into_iter();
    works
        .into_iter()
        .map(|w| match w {
            Work::Run(entry, jt) => match answers.next().flatten() {
                None => Work::Run(entry, jt),
                Some((upstream, why)) => Work::Record(refused(builder, entry, &jt, upstream, why)),
            },
            other => other,
        })
        .collect()
}

/// A job its upstream did not admit: back to the delayed set for the wait
/// the upstream gave, plus jitter so the jobs held back together do not
/// all come back at once, without using an attempt.
fn refused(
    builder: Builder<'_>,
    entry: JobEntry,
    jt: &Arc<JobType>,
    upstream: String,
    r: Refused,
) -> Completion {
    let wait_ms = u64::try_from(r.wait.as_millis()).unwrap_or(u64::MAX);
    // A rate's waiters are already spread one token apart: a little jitter
    // only. A busy upstream's and a hold's are not.
    let (why, spread) = match r.why {
        Refusal::RateLimited => (
            Deferral::RateLimited {
                upstream,
                retry_after: false,
            },
            10,
        ),
        Refusal::Held => (
            Deferral::RateLimited {
                upstream,
                retry_after: true,
            },
            250,
        ),
        Refusal::Busy => (Deferral::UpstreamBusy { upstream }, wait_ms / 2 + 1),
    };
    let code = match &why {
        Deferral::UpstreamBusy { .. } => crate::transition::UPSTREAM_BUSY_CODE,
        _ => crate::transition::RATE_LIMITED_CODE,
    };
    if let Deferral::RateLimited { upstream, .. } | Deferral::UpstreamBusy { upstream } = &why {
        crate::obs::events::upstream_deferred(builder.queue, upstream, code, 1);
        tracing::debug!(queue = %builder.queue, job_id = %entry.id, job = %entry.job, upstream, reason = code, wait = ?r.wait, "upstream limit; job held back");
    }
    let outcome = why.recorded(r.wait);
    let jitter = rand::random::<u64>() % spread.max(1);
    let delay = Duration::from_millis(wait_ms.saturating_add(jitter).max(1));
    builder.not_run(entry, Some(jt), outcome, Transition::Defer { delay, why })
}
