//! One attempt: run the plugin in its sandbox, decide what follows (the
//! pure [`policy::decide`]), log it, and build its [`Completion`].

use std::sync::Arc;
use std::time::Duration;

use crate::job::{JobEntry, Outcome};
use crate::obs::logging::AttemptIdent;
use crate::policy::{self, Progress};
use crate::runtime::{Cancel, JobInput, ProgressSink, World};
use crate::store;
use crate::transition::{Completion, FollowOn, Ran, Transition};

use super::cancels::Cancels;
use super::plugins::JobType;
use super::triage::Builder;

/// Runs one attempt; returns its completion and how long the plugin took.
/// `payload_max`: the largest payload the queue's dead letters copy;
/// `cancel`: the attempt's cancel signal (see [`crate::runtime::Cancel`]),
/// listed in `cancels` while the plugin waits;
/// `progress`: where a 0.2.0 plugin's progress reports go.
pub(crate) async fn run_attempt(
    mut entry: JobEntry,
    queue_name: &Arc<str>,
    payload_max: usize,
    job_type: &JobType,
    (cancels, cancel): (&Cancels, &Arc<Cancel>),
    progress: Option<Arc<dyn ProgressSink>>,
) -> (Completion, Duration) {
    let _in_flight = crate::obs::events::InFlight::start(&job_type.metrics);
    // A fault tests inject (debug builds only; release builds have no such
    // switch): a panic inside an attempt must not leave its delivery renewed
    // forever.
    #[cfg(debug_assertions)]
    if std::env::var_os("WARD_TEST_PANIC_IN_JOB").is_some_and(|j| j == entry.job.as_str()) {
        panic!("injected panic in an attempt of job type {}", entry.job);
    }
    let started_ms = store::now_ms();
    let clock = std::time::Instant::now();
    let span = crate::obs::traces::attempt_span(queue_name, &entry);
    let input = JobInput {
        traceparent: span.as_ref().map(|s| s.traceparent.clone()),
        ident: AttemptIdent::of(queue_name, &entry),
        // The plugin hands the payload back; a retry or dead letter needs it.
        payload: std::mem::take(&mut entry.payload),
        // Plugins always get a key to forward upstream: the job id when the
        // enqueuer gave none, which is stable across retries.
        idempotency_key: Some(
            entry
                .idempotency_key
                .clone()
                .unwrap_or_else(|| entry.id.clone()),
        ),
        checkpoint: entry.checkpoint.clone(),
        cancel: cancel.clone(),
        // Only a plugin that can enqueue children needs it.
        batch: if job_type.plugin.world() == World::V0_2 {
            batch_of(&entry)
        } else {
            None
        },
        progress,
    };
    // Only an attempt that waits can be interrupted by a request: one that
    // ends on its first poll (most short jobs) is never listed. The call is
    // pinned where it is built: passed to a helper, its future (KiBs) was
    // held twice in this one's state (+2.9 KB per attempt in flight).
    let mut run = std::pin::pin!(job_type.plugin.run(input, &job_type.sandbox));
    let mut listed = false;
    let result = std::future::poll_fn(|cx| {
        let polled = run.as_mut().poll(cx);
        if polled.is_pending() && !listed {
            listed = true;
            cancels.list(&entry.id, cancel);
        }
        polled
    })
    .await;
    if listed {
        cancels.finish(&entry.id);
    }
    entry.payload = result.payload;
    let elapsed = clock.elapsed();
    crate::obs::events::AttemptFinished {
        metrics: &job_type.metrics,
        elapsed,
        instantiate: result.instantiate,
        // A first delivery's id is its entry id, the enqueue time in the
        // Redis clock; a job enqueued with a delay (`d…`) waited on purpose.
        waited: entry
            .is_first_delivery()
            .then(|| crate::obs::events::enqueued_ms(&entry.id))
            .flatten()
            .map(|at| Duration::from_millis(started_ms.saturating_sub(at))),
    }
    .emit();
    // The wall clock at the start plus the monotonic time since: one
    // reading of each per attempt.
    let finished_ms =
        started_ms.saturating_add(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
    let first_at_ms = entry.first_at.unwrap_or(started_ms);
    let progress = Progress {
        attempt: entry.attempt,
        first_attempt_ms: first_at_ms,
        now_ms: finished_ms,
        previous_delay: entry.last_delay_ms.map(Duration::from_millis),
    };
    let transition = policy::decide(
        &result.outcome,
        &progress,
        &job_type.policy,
        &mut rand::rng(),
    );
    log_attempt(queue_name, &entry, &result.outcome, &transition, elapsed);
    if let Some(span) = span {
        span.end(&result.outcome, &transition);
    }
    let builder = Builder {
        queue: queue_name,
        payload_max,
    };
    let ran = Ran {
        started_ms,
        first_at_ms,
        // A new checkpoint replaces the old one; without one, the old one stays.
        checkpoint: result.checkpoint,
        ..builder.ran_at(&entry, Some(job_type), &transition, finished_ms)
    };
    let mut completion = Completion::new(entry, result.outcome, transition, ran);
    next_stage(&mut completion, job_type);
    // A failed attempt's children are dropped: its next attempt enqueues
    // them again, and only a recorded success enqueues them at all. After
    // the next stage, which so keeps its place (and its derived key)
    // however many children a rerun enqueues.
    if matches!(completion.transition(), Transition::Succeed) {
        completion.follow_ons.extend(result.children);
    }
    (completion, elapsed)
}

/// The batch `entry` is a member of, when its `batch` field names one.
fn batch_of(entry: &JobEntry) -> Option<String> {
    entry
        .extra
        .iter()
        .find(|(k, _)| k == "batch")
        .and_then(|(_, v)| std::str::from_utf8(v).ok())
        .filter(|b| !b.is_empty())
        .map(str::to_string)
}

/// A success of a job type with a next stage (`then`) enqueues it, with
/// the result as its payload, in the job's batch (see [`FollowOn`]).
fn next_stage(c: &mut Completion, job_type: &JobType) {
    let Some(next) = &job_type.then else {
        return;
    };
    let Outcome::Success(result) = c.outcome() else {
        return;
    };
    if !matches!(c.transition(), Transition::Succeed) {
        return;
    }
    let follow_on = FollowOn {
        job_type: next.clone(),
        payload: result.clone(),
        key: None,
        batch: c.batch().map(str::to_string),
    };
    c.follow_ons.push(follow_on);
}

/// One line per attempt. Successes log at debug so a busy queue does not
/// drown the log; every failure logs at info or above.
pub(crate) fn log_attempt(
    queue: &str,
    entry: &JobEntry,
    outcome: &Outcome,
    transition: &Transition,
    elapsed: Duration,
) {
    let quiet = matches!(outcome, Outcome::Success(_)) && !tracing::enabled!(tracing::Level::DEBUG);
    if quiet {
        return;
    }
    let span = AttemptIdent::of(&Arc::from(queue), entry).span();
    let _entered = span.enter();
    let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Outcome::Success(_) => tracing::debug!(
            job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
            class = "success", elapsed_ms, "attempt succeeded"
        ),
        Outcome::Failure(f) => {
            let code = f.code.as_deref().unwrap_or("");
            let upstream = f.upstream.as_deref().unwrap_or("");
            match transition {
                Transition::Retry { delay } => tracing::info!(
                    job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
                    class = %f.class, code, upstream,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    next_attempt = entry.attempt + 1, elapsed_ms, error = %f.message,
                    "attempt failed; retrying"
                ),
                Transition::DeadLetter(reason) => tracing::warn!(
                    job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
                    class = %f.class, code, upstream, reason = %reason, elapsed_ms,
                    error = %f.message, "attempt failed; dead-lettering the job"
                ),
                Transition::Cancel { .. } => tracing::info!(
                    job_id = %entry.id, queue, job = %entry.job, attempt = entry.attempt,
                    elapsed_ms, "attempt interrupted: the job was cancelled"
                ),
                _ => {}
            }
        }
    }
}
