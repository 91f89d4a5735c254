//! The completer of one queue: finished attempts (and outcomes known
//! without running) are applied to Redis in batches, one script per batch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::series::Tally;
use crate::store::{self, Applied, Queue, QueueError};
use crate::transition::{Completion, Transition};
use crate::upstream::Upstreams;

use super::InFlight;
use super::plugins::SharedJobs;
use super::services::Service;
use super::shutdown::Shutdown;

/// Most completions applied in one script call.
pub(crate) const MAX_APPLY: usize = 256;
/// How long a shutdown keeps trying to record finished attempts while Redis
/// is unreachable before it gives up (the deliveries stay pending in Redis).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long one `WAIT` for replicas may take before the batch is sent again.
const WAIT_FOR: Duration = Duration::from_secs(1);
/// After a batch Redis did not take: how long to wait before sending it again.
const APPLY_RETRY: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));

/// Applies finished attempts in batches. A batch that fails is re-sent until
/// it lands: [`Queue::apply`] is idempotent per delivery, and dropping it
/// would leave jobs pending with their outcome forgotten. The one exception
/// is a shutdown while Redis stays unreachable: after [`SHUTDOWN_GRACE`] the
/// daemon gives up and exits, and those deliveries, still pending in Redis,
/// are reclaimed after their lease and run again (at-least-once).
///
/// It ends once every sender of completions is gone (the reader, the
/// attempts and the reclaimer), not at the shutdown signal, which only
/// bounds how long it keeps trying.
pub(crate) struct Completer {
    /// The queue the completions are applied to.
    pub(crate) queue: Queue,
    /// Finished attempts and outcomes known without running.
    pub(crate) rx: mpsc::Receiver<Completion>,
    /// The deliveries held; a recorded one is no longer renewed.
    pub(crate) in_flight: InFlight,
    /// Told when dead letters were written (retention runs soon after).
    pub(crate) dead_written: Arc<Notify>,
    /// The queue's job types (for their upstreams).
    pub(crate) jobs: SharedJobs,
    /// The queue's circuit breakers, told each recorded outcome.
    pub(crate) breakers: Option<Arc<Breakers>>,
    /// The queue's upstreams: slots to give back, Retry-Afters to hold.
    pub(crate) upstreams: Option<Arc<Upstreams>>,
    /// The per-minute counts of finished jobs, written by [`super::services::series`].
    pub(crate) series: Arc<Tally>,
    /// The queue's `wait_replicas`: replicas that must have a batch before
    /// it counts as recorded (0: none).
    pub(crate) wait_replicas: u32,
}

impl Service for Completer {
    async fn run(mut self, stop: Shutdown) {
        let mut batch = Vec::with_capacity(MAX_APPLY);
        let mut stopping_since: Option<std::time::Instant> = None;
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_APPLY {
                match self.rx.try_recv() {
                    Ok(c) => batch.push(c),
                    Err(_) => break,
                }
            }
            let any_dead = batch
                .iter()
                .any(|c| matches!(c.transition(), Transition::DeadLetter(_)));
            if let Some(applied) = self
                .apply(&batch, any_dead, &stop, &mut stopping_since)
                .await
            {
                let took = applied.took;
                crate::obs::recorded(&self.queue.keys.queue, &batch, &took);
                crate::obs::unrecordable(&self.queue.keys.queue, &batch, &applied.unrecordable);
                self.series.count(&batch, &took);
                if any_dead {
                    super::batch_alerts::check(&self.queue, &batch, &took).await;
                }
                let jobs = self.jobs.load();
                super::groups::release(&self.queue, &jobs, &batch, &took).await;
                if let Some(b) = &self.breakers {
                    b.report(&batch, &took, |job| {
                        jobs.get(job)
                            .map(|jt| jt.upstreams.as_slice())
                            .filter(|u| !u.is_empty())
                    })
                    .await;
                }
            }
            if let Some(u) = &self.upstreams {
                // After the outcomes are recorded: a slot freed now goes to
                // an attempt that cannot meet this one's delivery again.
                let jobs = self.jobs.load();
                u.finish(&batch, |job| {
                    jobs.get(job).map(|jt| jt.upstreams.as_slice())
                })
                .await;
            }
            self.in_flight
                .release(batch.iter().map(Completion::entry_id));
            batch.clear();
        }
    }
}

impl Completer {
    /// With `wait_replicas`, waits until that many replicas have the batch
    /// just applied. Falling short is reported as a connection error, so the
    /// batch is sent again (harmless where it landed; recorded on a new
    /// master that lacked it) and its deliveries stay held and renewed.
    async fn replicated(&self, batch: &[Completion]) -> Result<(), QueueError> {
        let want = self.wait_replicas;
        if want == 0 {
            return Ok(());
        }
        let got = self.queue.wait_replicas(want, WAIT_FOR).await?;
        if got >= want {
            return Ok(());
        }
        Err(QueueError::Redis(redis::RedisError::from(
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "{got} of the {want} replicas of wait_replicas confirmed {} outcomes within {WAIT_FOR:?}",
                    batch.len()
                ),
            ),
        )))
    }

    /// A batch Redis refused for a reason in its data, not its connection:
    /// each completion goes on its own, so one it cannot take does not hold
    /// the others back. That one is logged with its job id and stays
    /// pending; once the heartbeat stops renewing it, its lease runs out and
    /// it is reclaimed as a lost attempt, so it is neither lost nor retried
    /// here forever. Completions before it in the batch may have been
    /// recorded by the refused call itself (a script is not rolled back),
    /// so each that lands counts as having taken effect.
    async fn apply_one_by_one(&self, batch: &[Completion], error: &QueueError) -> Applied {
        tracing::warn!(queue = %self.queue.keys.queue, error = %error, jobs = batch.len(), "Redis refused a batch of outcomes; recording them one by one");
        let mut took = Vec::with_capacity(batch.len());
        let mut unrecordable = Vec::new();
        for (i, c) in batch.iter().enumerate() {
            let mut backoff = APPLY_RETRY;
            let landed = loop {
                match self.queue.apply(std::slice::from_ref(c)).await {
                    Ok(one) => {
                        // Dead-lettered as unrecordable: counted as that,
                        // not as the outcome it asked for.
                        let recorded = one.unrecordable.is_empty();
                        unrecordable.extend(one.unrecordable.into_iter().map(|(_, why)| (i, why)));
                        break recorded;
                    }
                    Err(e) if store::is_connection_error(&e) => {
                        tokio::time::sleep(backoff.next()).await;
                    }
                    Err(e) => {
                        tracing::error!(
                            queue = %self.queue.keys.queue, job_id = c.job_id(), entry = c.entry_id(), error = %e,
                            "Redis refused this job's outcome; its delivery stays pending and is reclaimed when its lease expires"
                        );
                        break false;
                    }
                }
            };
            took.push(landed);
        }
        Applied { took, unrecordable }
    }

    /// Sends `batch` until Redis takes it; which completions took effect, or
    /// `None` when a shutdown gave up on an unreachable Redis.
    async fn apply(
        &self,
        batch: &[Completion],
        any_dead: bool,
        stop: &Shutdown,
        stopping_since: &mut Option<std::time::Instant>,
    ) -> Option<Applied> {
        let mut backoff = APPLY_RETRY;
        let mut resent = false;
        loop {
            let applied = match self.queue.apply(batch).await {
                Ok(took) => self.replicated(batch).await.map(|()| took),
                Err(e) => Err(e),
            };
            match applied {
                Ok(mut applied) => {
                    if any_dead || !applied.unrecordable.is_empty() {
                        self.dead_written.notify_one();
                    }
                    // After a failed send, a completion reported as not
                    // taking effect may have taken effect in that send: count
                    // the whole batch once rather than none of it.
                    if resent {
                        applied.took = vec![true; batch.len()];
                        // What the lost send dead-lettered is not known; one
                        // that this send did is not counted twice.
                        for (i, _) in &applied.unrecordable {
                            applied.took[*i] = false;
                        }
                    }
                    return Some(applied);
                }
                Err(e) if !store::is_connection_error(&e) => {
                    return Some(self.apply_one_by_one(batch, &e).await);
                }
                Err(e) => {
                    resent = true;
                    if stop.is_shutdown() {
                        let since = *stopping_since.get_or_insert_with(std::time::Instant::now);
                        if since.elapsed() >= SHUTDOWN_GRACE {
                            tracing::error!(
                                queue = %self.queue.keys.queue, error = %e, jobs = batch.len(),
                                "shutting down with Redis unreachable: these finished attempts are not recorded; their deliveries stay pending and are run again after their lease expires"
                            );
                            return None;
                        }
                    }
                    let first_job = batch.first().map_or("", Completion::job_id);
                    let delay = backoff.next();
                    tracing::error!(
                        queue = %self.queue.keys.queue, error = %e, jobs = batch.len(), first_job,
                        retry_in = ?delay, "cannot record finished attempts; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}
