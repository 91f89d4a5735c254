//! Takes over deliveries whose daemon died.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::job::{FailureClass, JobEntry, Outcome};
use crate::policy::{self, Progress, RetryPolicy};
use crate::priority::Priority;
use crate::store::{self, Delivery, Queue};
use crate::transition::{Completion, Ran};

use super::Service;
use crate::worker::InFlight;
use crate::worker::attempt::log_attempt;
use crate::worker::completer::MAX_APPLY;
use crate::worker::plugins::SharedJobs;
use crate::worker::shutdown::Shutdown;
use crate::worker::triage::{Builder, give_back_keys, malformed};

/// Takes over deliveries whose worker died (their lease expired without a
/// heartbeat) and records each as a lost attempt: it counts, carries the
/// code `lease-expired`, and is retried like a transient failure, unless the
/// job has lost too many leases (a poison pill) and is dead-lettered.
pub(crate) struct Reclaim {
    /// The queue whose group it watches.
    pub(crate) queue: Queue,
    /// This daemon's consumer name, which takes the deliveries over.
    pub(crate) consumer: String,
    /// The queue's lease: a delivery idle this long has lost its worker.
    pub(crate) lease: Duration,
    /// The queue's job types (for their retry policies).
    pub(crate) jobs: SharedJobs,
    /// Where the lost attempts go: the queue's completer.
    pub(crate) done: mpsc::Sender<Completion>,
    /// This daemon's own deliveries, never taken as lost.
    pub(crate) in_flight: InFlight,
    /// Largest payload copied into a dead letter.
    pub(crate) payload_max: usize,
}

/// Most reclaim calls per pass: a pass goes on through the pending list
/// (ten times [`MAX_APPLY`] entries per call) until it has seen all of it
/// or made this many calls; the next pass goes on from there.
const MAX_CALLS_PER_PASS: usize = 64;

impl Service for Reclaim {
    async fn run(self, mut stop: Shutdown) {
        let every = (self.lease / 2).max(Duration::from_millis(100));
        let lease_text = humantime::format_duration(self.lease).to_string();
        // Where the scan of each priority level's stream goes on.
        let mut cursors = Priority::ALL.map(|level| (level, START.to_string()));
        while stop.sleep(every).await {
            for (level, from) in &mut cursors {
                if !self.pass(*level, from, &lease_text).await {
                    return;
                }
            }
        }
    }
}

impl Reclaim {
    /// One pass over the pending list of level `level`'s stream, from
    /// `from` (left where the next pass goes on); false once the completer
    /// is gone.
    async fn pass(&self, level: Priority, from: &mut String, lease_text: &str) -> bool {
        for _ in 0..MAX_CALLS_PER_PASS {
            let (next, mut deliveries) = match self
                .queue
                .reclaim_in(level, &self.consumer, self.lease, from, MAX_APPLY)
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(queue = %self.queue.keys.queue, error = %e, "cannot reclaim expired leases; retrying");
                    break;
                }
            };
            // Finished as their lease would have (a batch member counted,
            // an entry moved to its level) before they are recorded. When
            // that fails they are recorded all the same: a job must move on
            // (towards its lease budget) whatever its entry names.
            match self.queue.finish_taken(level, &deliveries).await {
                Ok(moved) => deliveries.retain(|d| !moved.contains(&d.entry_id)),
                Err(e) => {
                    tracing::error!(queue = %self.queue.keys.queue, error = %e, "cannot finish the deliveries taken over (count their batch, move them to their level); recording them as lost attempts all the same");
                }
            }
            if !self.take_over(deliveries, lease_text).await {
                return false;
            }
            *from = next;
            if from == START {
                break;
            }
        }
        true
    }
}

/// Where a scan of the pending list starts, and where Redis says it ended.
const START: &str = "0-0";

impl Reclaim {
    /// Records `deliveries` (taken over from a dead worker) as lost
    /// attempts; false once the completer is gone.
    async fn take_over(&self, deliveries: Vec<Delivery>, lease_text: &str) -> bool {
        for d in deliveries {
            // After a Redis outage longer than the lease, this daemon's own
            // running attempts look expired too; they are alive, leave them.
            if self.in_flight.contains(&d.entry_id) {
                continue;
            }
            let c = match d.parse() {
                Err(m) => {
                    // The read that took it may have claimed its key.
                    if let Some(key) = &m.unclaimed_key {
                        give_back_keys(&self.queue, &[(m.entry_id.clone(), key.clone())]).await;
                    }
                    malformed(self.builder(), m)
                }
                Ok(entry) => self.lost_attempt(entry, lease_text),
            };
            if self.done.send(c).await.is_err() {
                return false;
            }
        }
        true
    }

    /// How this queue's completions are built.
    fn builder(&self) -> Builder<'_> {
        Builder {
            queue: &self.queue.keys.queue,
            payload_max: self.payload_max,
        }
    }

    /// The completion of an attempt whose worker stopped: decided like a
    /// transient failure, counting one more lost lease.
    fn lost_attempt(&self, entry: JobEntry, lease_text: &str) -> Completion {
        let job_type = self.jobs.load().get(&entry.job).cloned();
        let policy = job_type
            .as_ref()
            .map_or_else(RetryPolicy::default, |jt| jt.policy);
        let now = store::now_ms();
        // Saturating: the count comes from Redis, where anyone may write.
        let expiries = entry.lease_expiries.saturating_add(1);
        let progress = Progress {
            attempt: entry.attempt,
            // A lost first attempt never recorded its start; it
            // began after the enqueue (the entry id's time).
            first_attempt_ms: entry
                .first_at
                .unwrap_or_else(|| crate::obs::events::enqueued_ms(&entry.entry_id).unwrap_or(now)),
            now_ms: now,
            previous_delay: entry.last_delay_ms.map(Duration::from_millis),
        };
        let transition = policy::decide_lost(&progress, expiries, &policy, &mut rand::rng());
        let message = format!(
            "lease expired: no heartbeat for {lease_text} while attempt {} ran (its worker stopped); lost attempt {expiries} of at most {}",
            entry.attempt, policy.max_lease_expiries
        );
        let outcome = Outcome::failure(FailureClass::Transient, message).with_code("lease-expired");
        log_attempt(
            &self.queue.keys.queue,
            &entry,
            &outcome,
            &transition,
            Duration::ZERO,
        );
        let ran = Ran {
            first_at_ms: progress.first_attempt_ms,
            lost: true,
            ..self.builder().ran(&entry, job_type.as_deref(), &transition)
        };
        Completion::new(entry, outcome, transition, ran)
    }
}
