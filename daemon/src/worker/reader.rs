//! One queue's consumer: the reader that leases batches sized to free slots
//! and starts one task per attempt, with the completer, heartbeat and
//! reclaimer that serve it.

use std::collections::HashSet;
use std::sync::Arc;

use futures_util::FutureExt as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};

use crate::backoff::Backoff;
use crate::breaker::Breakers;
use crate::config::QueueConfig;
use crate::job::JobEntry;
use crate::priority::Picker;
use crate::runtime::{ProgressSink, World};
use crate::series::Tally;
use crate::store::{self, Leased, Pauses, Queue};
use crate::transition::Completion;
use crate::upstream::Upstreams;

use super::InFlight;
use super::attempt::run_attempt;
use super::cancels::Cancels;
use super::completer::{Completer, MAX_APPLY};
use super::held::EntryId;
use super::plugins::{JobType, SharedJobs};
use super::services::Service;
use super::services::heartbeat::Heartbeat;
use super::services::reclaim::Reclaim;
use super::services::series::SeriesFlush;
use super::shutdown::Shutdown;
use super::systemd::{BEAT_WHILE_WAITING, Beat};
use super::triage::{Builder, Gates, Work, triage};

mod orphans;

/// How long one `XREADGROUP` waits for work; also the longest a shutdown
/// waits for a reader to notice it.
pub(crate) const BLOCK: Duration = Duration::from_secs(2);
/// Most deliveries leased in one read.
const MAX_LEASE: usize = 512;
/// After a scripted read found the level streams empty and nothing that
/// needed the script, this many reads may be plain `XREADGROUP`s of the
/// normal stream (see `store/lease_plain.rs`); then the script looks at
/// every stream again, so a job retried into a level's stream waits at
/// most this many reads.
const PLAIN_READS: u32 = 16;
/// How many times a reader lets finishing attempts run before it reads
/// with fewer than half its slots free.
const GATHER_YIELDS: usize = 4;
/// Attempts typically shorter than this let the reader lease up to a slot's
/// worth of deliveries ahead of free slots.
const LEASE_AHEAD_BELOW: Duration = Duration::from_millis(2);
/// How many deliveries per slot may be leased ahead (see [`LEASE_AHEAD_BELOW`]).
const LEASE_AHEAD_SLOTS: u32 = 1;
/// Reads past a flood of one group's jobs (see [`overread`]) ask for at
/// most this many more deliveries than there are slots free.
const MAX_OVERREAD: usize = MAX_LEASE;
/// After a read Redis refused: how long to wait before the next.
const READ_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// One queue's consumer, until shutdown: then it stops reading, lets the
/// attempts in flight finish and records their outcomes.
pub(crate) struct Consumer {
    /// The queue, on the shared connection (completions, heartbeat, reclaim).
    pub(crate) queue: Queue,
    /// The queue on a connection of its own, for the blocking reads.
    pub(crate) reader: Queue,
    /// The queue's settings.
    pub(crate) cfg: QueueConfig,
    /// The queue's job types, by name.
    pub(crate) jobs: SharedJobs,
    /// This daemon's consumer name in the group.
    pub(crate) consumer: String,
    /// Told when dead letters were written (retention runs soon after).
    pub(crate) dead_written: Arc<Notify>,
    /// The queue's circuit breakers, when a job type lists upstreams.
    pub(crate) breakers: Option<Arc<Breakers>>,
    /// Cancel requests, and the attempts running here they may interrupt.
    pub(crate) cancels: Arc<Cancels>,
    /// The queue's pauses, kept fresh by the pause watch.
    pub(crate) pauses: watch::Receiver<Pauses>,
    /// The queue's upstreams' limits and holds, when a job type lists upstreams.
    pub(crate) upstreams: Option<Arc<Upstreams>>,
    /// Marked every time round the lease loop (systemd's watchdog).
    pub(crate) beat: Arc<Beat>,
}

impl Service for Consumer {
    async fn run(self, stop: Shutdown) {
        let Consumer {
            queue,
            reader,
            cfg,
            jobs,
            consumer,
            dead_written,
            breakers,
            cancels,
            pauses,
            upstreams,
            beat,
        } = self;
        let in_flight: InFlight = Arc::default();
        let series: Arc<Tally> = Arc::default();
        let (done_tx, done_rx) = mpsc::channel::<Completion>(MAX_APPLY * 4);
        let completer = Completer {
            queue: queue.clone(),
            rx: done_rx,
            in_flight: in_flight.clone(),
            dead_written,
            jobs: jobs.clone(),
            breakers: breakers.clone(),
            upstreams: upstreams.clone(),
            series: series.clone(),
            wait_replicas: cfg.wait_replicas,
        }
        .start(stop.clone());
        // Stops after the completer too, to write what it counted last.
        let (series_stop, series_rx) = Shutdown::new();
        let series = SeriesFlush {
            queue: queue.clone(),
            tally: series,
        }
        .start(series_rx);
        // The heartbeat stops last, after every lease it renews is recorded.
        let (beat_stop, beat_rx) = Shutdown::new();
        let heartbeat = Heartbeat {
            queue: queue.clone(),
            consumer: consumer.clone(),
            lease: cfg.lease,
            in_flight: in_flight.clone(),
        }
        .start(beat_rx);
        let reclaimer = Reclaim {
            queue: queue.clone(),
            consumer: consumer.clone(),
            lease: cfg.lease,
            jobs: jobs.clone(),
            done: done_tx.clone(),
            in_flight: in_flight.clone(),
            payload_max: cfg.dead.payload_max,
        }
        .start(stop.clone());
        let name = cfg.name.clone();
        let progress = super::progress::ProgressWriter::start(queue.clone());
        let ahead_max = cfg.concurrency.saturating_mul(LEASE_AHEAD_SLOTS);
        let reader = Reader {
            queue,
            reader,
            queue_name: cfg.name.as_str().into(),
            slots: Arc::new(Semaphore::new(cfg.concurrency as usize)),
            ahead: Arc::new(Semaphore::new(ahead_max as usize)),
            ahead_max,
            // Starts out as "long", until a few attempts have shown otherwise.
            typical_us: Arc::new(AtomicU64::new(
                u64::try_from(LEASE_AHEAD_BELOW.as_micros()).unwrap_or(u64::MAX) * 4,
            )),
            cfg,
            jobs,
            consumer,
            done_tx,
            in_flight,
            breakers,
            cancels,
            pauses,
            upstreams,
            beat,
            progress,
        };
        reader.run(&stop).await;
        let _ = reclaimer.await;
        // Every sender is gone now (the reader's went with it), so the
        // completer ends once it has recorded what it was sent.
        if completer.await.is_err() {
            tracing::error!(queue = %name, "completer panicked; pending deliveries stay in the group");
        }
        series_stop.pull();
        beat_stop.pull();
        let _ = series.await;
        let _ = heartbeat.await;
    }
}

/// A fault tests inject (debug builds only): with
/// `WARD_TEST_STALL_READER=<queue>`, that queue's reader hangs for good
/// after two seconds, as a deadlocked one would, so the watchdog test can
/// see the pings stop.
#[cfg(debug_assertions)]
async fn stall_if_asked(queue: &str) {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let started = *STARTED.get_or_init(std::time::Instant::now);
    if std::env::var_os("WARD_TEST_STALL_READER").is_some_and(|q| q == queue)
        && started.elapsed() > Duration::from_secs(2)
    {
        tracing::warn!(queue, "WARD_TEST_STALL_READER: this reader hangs now");
        std::future::pending::<()>().await;
    }
}

#[cfg(not(debug_assertions))]
async fn stall_if_asked(_queue: &str) {}

/// How many deliveries beyond the free slots the next read asks for, when
/// the last one read `read` and parked `parked` of them (their group at its
/// cap): a flood of one group's jobs in the stream (plain `XADD`s, which
/// `ward_enqueue` cannot route) is parked in reads of up to [`MAX_LEASE`]
/// instead of a few free slots' worth, so other groups' jobs behind it are
/// reached sooner. Grows while nearly all of a read is parked; the few
/// that can run wait for a slot here (a daemon holds at most a read's worth
/// of them), and it falls back to none as soon as a read parks nothing.
fn overread(read: usize, parked: usize) -> usize {
    if parked == 0 {
        0
    } else if parked * 4 >= read * 3 {
        parked.saturating_mul(2).min(MAX_OVERREAD)
    } else {
        parked.min(MAX_OVERREAD)
    }
}

/// What a leased delivery holds while it waits or runs.
enum Slot {
    /// A free slot: the attempt starts at once.
    Run(OwnedSemaphorePermit),
    /// Leased ahead: the attempt waits for a slot.
    Ahead(OwnedSemaphorePermit),
}

/// The lease loop of one queue and what it shares with its attempts.
struct Reader {
    /// The queue on the shared connection (idempotency checks, the group).
    queue: Queue,
    /// The queue on the reader's own connection.
    reader: Queue,
    /// The queue's settings.
    cfg: QueueConfig,
    /// The queue's name, shared with every attempt.
    queue_name: Arc<str>,
    /// The queue's job types, by name.
    jobs: SharedJobs,
    /// This daemon's consumer name in the group.
    consumer: String,
    /// Where finished attempts go: the completer.
    done_tx: mpsc::Sender<Completion>,
    /// The deliveries held: leased and not yet recorded.
    in_flight: InFlight,
    /// The queue's circuit breakers, when a job type lists upstreams.
    breakers: Option<Arc<Breakers>>,
    /// Cancel requests, and the attempts running here they may interrupt.
    cancels: Arc<Cancels>,
    /// One permit per attempt that may run at once (`concurrency`).
    slots: Arc<Semaphore>,
    /// Deliveries leased ahead of a free slot, when attempts are short.
    ahead: Arc<Semaphore>,
    /// How many deliveries may be leased ahead.
    ahead_max: u32,
    /// A moving average of how long attempts take, µs.
    typical_us: Arc<AtomicU64>,
    /// The queue's pauses: none is leased while the whole queue is paused,
    /// and triage holds the jobs of paused types.
    pauses: watch::Receiver<Pauses>,
    /// The queue's upstreams' limits and holds, when a job type lists upstreams.
    upstreams: Option<Arc<Upstreams>>,
    /// Marked every time round the lease loop (systemd's watchdog).
    beat: Arc<Beat>,
    /// Where the attempts of 0.2.0 plugins report progress.
    progress: Arc<super::progress::ProgressWriter>,
}

impl Reader {
    /// Leases and starts attempts until shutdown, then waits until every
    /// attempt has finished and queued its completion.
    async fn run(self, stop: &Shutdown) {
        let mut backoff = READ_RETRY;
        // The starvation guard: which priority level each read starts at.
        let mut levels = Picker::default();
        // Plain reads left before the script looks at every stream again.
        let mut plain_left = 0;
        // Deliveries read beyond the free slots, while most of what is read
        // is parked because its group is at its cap.
        let mut extra = 0;
        // A read failed: it may have left entries leased here, unseen.
        let mut orphans = false;
        while !stop.is_shutdown() {
            self.beat.now();
            stall_if_asked(&self.cfg.name).await;
            if self.paused(stop).await {
                break;
            }
            // Short attempts free their slots within microseconds, and a read
            // per handful of them costs more than the attempts: the reader may
            // lease up to a slot's worth more, to start as slots free up, and
            // reads as soon as there is room for those, so the next batch is
            // in hand before the slots run dry. Long attempts never lease
            // ahead, so a daemon cannot sit on work another one could start.
            let short =
                u128::from(self.typical_us.load(Ordering::Relaxed)) < LEASE_AHEAD_BELOW.as_micros();
            let Some(mut permits) = self.room(short, stop).await else {
                break;
            };
            if orphans {
                match self.adopt_orphans(permits.len(), &self.key_ttls()).await {
                    None => orphans = false,
                    Some(found) => {
                        extra = 0;
                        self.dispatch(found, permits).await;
                        continue;
                    }
                }
            }
            // Deliveries leased ahead by earlier reads wait for slots (some
            // perhaps held by this read): it must not sit in a blocking read
            // of an empty stream while they wait.
            let own_ahead = permits
                .iter()
                .filter(|p| matches!(p, Slot::Ahead(_)))
                .count();
            let ahead_waiting =
                self.ahead.available_permits() + own_ahead < self.ahead_max as usize;
            let block = (!ahead_waiting).then_some(BLOCK);
            // The read is not cancelled on shutdown: entries it already took
            // must be run, not left leased to a consumer that is going away.
            let order = levels.next(self.cfg.priority_weights);
            let key_ttls = self.key_ttls();
            let ask = store::LeaseAsk {
                count: (permits.len() + extra).min(MAX_LEASE),
                order,
                block,
                key_ttls: &key_ttls,
                plain: plain_left > 0,
            };
            let deliveries = match self.reader.lease_levels(&self.consumer, ask).await {
                Ok(mut lease) => {
                    backoff.reset();
                    if let Some(unfinished) = lease.unfinished.take() {
                        lease = self.finish_read(unfinished, &key_ttls).await;
                    }
                    plain_left = match (lease.plain, ask.plain) {
                        (false, _) => 0,
                        (true, false) => PLAIN_READS,
                        (true, true) => plain_left - 1,
                    };
                    lease.deliveries
                }
                Err(e) => {
                    self.read_failed(&e, backoff.next()).await;
                    orphans = true;
                    continue;
                }
            };
            if deliveries.is_empty() && ahead_waiting {
                // Nothing new: hand the slots to the deliveries leased ahead and
                // wait until each has one, then read (blocking) again.
                drop(permits);
                let _started = self.ahead.acquire_many(self.ahead_max).await;
                continue;
            }
            // Slots are handed out first, so deliveries leased ahead are the last.
            permits.reverse();
            let read = deliveries.len();
            let parked = self.dispatch(deliveries, permits).await;
            extra = overread(read, parked);
        }
        // Deliveries leased ahead all have a slot once every ahead permit is
        // back; then holding every slot means no attempt is running.
        let _all_started = self.ahead.acquire_many(self.ahead_max).await;
        let _all_done = self.slots.acquire_many(self.cfg.concurrency).await;
    }

    /// Waits while the whole queue is paused (until a resume, or its
    /// `until`); true on shutdown meanwhile.
    async fn paused(&self, stop: &Shutdown) -> bool {
        let mut pauses = self.pauses.clone();
        let mut stop = stop.clone();
        while pauses
            .borrow_and_update()
            .queue_paused(crate::clock::now_ms())
        {
            self.beat.now();
            tokio::select! {
                changed = pauses.changed() => {
                    // The watch is gone only on shutdown; do not spin meanwhile.
                    if changed.is_err() {
                        tokio::time::sleep(super::services::pause::POLL).await;
                    }
                }
                // An `until` passes without a change being published.
                () = tokio::time::sleep(super::services::pause::POLL) => {}
                () = stop.recv() => return true,
            }
        }
        false
    }

    /// Waits for room for at least one delivery, then takes all there is;
    /// `None` on shutdown.
    async fn room(&self, short: bool, stop: &Shutdown) -> Option<Vec<Slot>> {
        let mut stop_wait = stop.clone();
        // Every slot may be held by long attempts: still alive meanwhile.
        let first = loop {
            tokio::select! {
                biased;
                p = self.slots.clone().acquire_owned() => break Slot::Run(p.ok()?),
                p = self.ahead.clone().acquire_owned(), if short => break Slot::Ahead(p.ok()?),
                () = stop_wait.recv() => return None,
                () = tokio::time::sleep(BEAT_WHILE_WAITING) => self.beat.now(),
            }
        };
        let mut permits = vec![first];
        // Under load, room frees up one attempt at a time. Letting the
        // attempts that are ready to finish run first (a yield, a few
        // microseconds) turns many small reads into one larger one; an
        // idle queue has every slot free and does not wait at all.
        let mut yields = 0;
        loop {
            self.take_all(&mut permits, short);
            if permits.len() >= MAX_LEASE.min(self.cfg.concurrency as usize) / 2
                || yields == GATHER_YIELDS
            {
                break;
            }
            tokio::task::yield_now().await;
            yields += 1;
            if self.slots.available_permits() == 0
                && (!short || self.ahead.available_permits() == 0)
            {
                // Nothing finished meanwhile: read what there is room for.
                break;
            }
        }
        Some(permits)
    }

    /// Takes every free slot (and, for short attempts, every lease-ahead
    /// permit) up to [`MAX_LEASE`] in all.
    fn take_all(&self, permits: &mut Vec<Slot>, short: bool) {
        while permits.len() < MAX_LEASE {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(Slot::Run(p)),
                Err(_) => break,
            }
        }
        while short && permits.len() < MAX_LEASE {
            match self.ahead.clone().try_acquire_owned() {
                Ok(p) => permits.push(Slot::Ahead(p)),
                Err(_) => break,
            }
        }
    }

    /// The job types whose idempotency keys a lease claims, each with its
    /// key's TTL in ms: every job type this daemon runs.
    fn key_ttls(&self) -> Vec<(String, u64)> {
        self.jobs
            .load()
            .iter()
            .map(|(name, jt)| {
                let ttl = u64::try_from(jt.idempotency_ttl.as_millis()).unwrap_or(u64::MAX);
                (name.clone(), ttl.max(1))
            })
            .collect()
    }

    /// Says a read failed and waits `delay` before the next one.
    async fn read_failed(&self, e: &store::QueueError, delay: Duration) {
        if matches!(e, store::QueueError::Redis(r) if r.code() == Some("NOGROUP")) {
            // Redis lost the group (restarted without persistence, or
            // someone deleted the stream): make it again.
            tracing::warn!(queue = %self.cfg.name, "consumer group missing; creating it again");
            let _ = self.queue.ensure_group().await;
        }
        tracing::error!(queue = %self.cfg.name, error = %e, retry_in = ?delay, "cannot read from Redis; retrying");
        tokio::time::sleep(delay).await;
    }

    /// Finishes a plain read whose entries Redis would not let the lease
    /// finish (`lease_fix.lua` failed; Redis out of memory, say): they are
    /// taken, so they are held as this daemon's (renewed, never reclaimed
    /// as lost attempts) while the call is tried again, until it succeeds.
    /// Giving up would leave them leased to this consumer until their
    /// lease expired, each then spending an attempt it never ran.
    async fn finish_read(
        &self,
        unfinished: store::Unfinished,
        key_ttls: &[(String, u64)],
    ) -> store::Lease {
        let store::Unfinished { read, mut error } = unfinished;
        self.hold(read.iter().map(|d| d.entry_id.as_str()));
        let mut backoff = READ_RETRY;
        let lease = loop {
            let delay = backoff.next();
            tracing::error!(queue = %self.cfg.name, entries = read.len(), error = %error, retry_in = ?delay, "cannot finish a read (moving entries to their priority level, counting batch members); its entries stay leased to this daemon; retrying");
            tokio::time::sleep(delay).await;
            self.beat.now();
            match self.reader.finish_plain(&read, key_ttls).await {
                Ok(lease) => break lease,
                Err(e) => error = e,
            }
        };
        // Those moved to their level's stream are read from there.
        let kept: HashSet<&str> = lease
            .deliveries
            .iter()
            .map(|(d, _)| d.entry_id.as_str())
            .collect();
        self.in_flight.release(
            read.iter()
                .map(|d| d.entry_id.as_str())
                .filter(|id| !kept.contains(id)),
        );
        lease
    }

    /// Counts the deliveries `ids` as held by this daemon: renewed by the
    /// heartbeat, never taken over as lost.
    fn hold<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        self.in_flight.hold(ids);
    }

    /// Starts an attempt for each delivery that needs one, each holding one
    /// of `permits` (popped from the end; one read past a group's flood may
    /// have more attempts than permits: those wait for a slot), and sends
    /// the outcomes already known to the completer. Returns how many were
    /// parked because their group is at its cap.
    async fn dispatch(&self, deliveries: Vec<Leased>, mut permits: Vec<Slot>) -> usize {
        self.hold(deliveries.iter().map(|(d, _)| d.entry_id.as_str()));
        let builder = Builder {
            queue: &self.cfg.name,
            payload_max: self.cfg.dead.payload_max,
        };
        let pauses = self.pauses.borrow().clone();
        let jobs = self.jobs.load();
        let works = triage(
            &self.queue,
            builder,
            &jobs,
            deliveries,
            Gates {
                breakers: self.breakers.as_deref(),
                pauses: &pauses,
                cancels: &self.cancels,
            },
            self.cfg.max_payload,
        )
        .await;
        // A read past a group's flood may hold more attempts than free
        // slots; the last of them waits a round of attempts (each within
        // its timeout) per `concurrency` ahead of it, and its group slot
        // must not expire meanwhile, or the cap could be exceeded.
        let runs = works.iter().filter(|w| matches!(w, Work::Run(..))).count();
        let rounds = runs
            .saturating_sub(permits.len())
            .div_ceil(self.cfg.concurrency.max(1) as usize);
        let longest = jobs
            .values()
            .map(|jt| jt.sandbox.timeout)
            .max()
            .unwrap_or_default();
        let waits = longest.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX));
        let (works, parked) = super::groups::gate(
            &self.queue,
            builder,
            self.cfg.lease.saturating_add(waits),
            works,
        )
        .await;
        // Last: a token is spent only on an attempt that will run.
        let works = super::admit::admit(builder, self.upstreams.as_deref(), works).await;
        for work in works {
            match work {
                Work::Record(c) => {
                    if self.done_tx.send(c).await.is_err() {
                        tracing::error!(queue = %self.cfg.name, "completer gone; the delivery stays pending");
                    }
                }
                Work::Run(entry, job_type) => {
                    let slot = permits.pop();
                    self.spawn_attempt(entry, job_type, slot);
                }
            }
        }
        parked
    }

    /// Runs one attempt as its own task, once it has a slot.
    fn spawn_attempt(&self, entry: JobEntry, job_type: Arc<JobType>, slot: Option<Slot>) {
        let done = self.done_tx.clone();
        let name = self.queue_name.clone();
        let payload_max = self.cfg.dead.payload_max;
        let slots = self.slots.clone();
        let typical_us = self.typical_us.clone();
        let in_flight = self.in_flight.clone();
        // For a panic's sake only: numbers, not a copy of the id.
        let entry_id = EntryId::parse(&entry.entry_id);
        let cancels = self.cancels.clone();
        let upstreams = self.upstreams.clone();
        // Only a plugin that can report progress holds the writer.
        let progress = (job_type.plugin.world() == World::V0_2)
            .then(|| self.progress.clone() as Arc<dyn ProgressSink>);
        // Each attempt holds its slot until its completion is
        // queued, so holding every slot means none is running. The task
        // is boxed: tokio moves a task's future as it spawns it and at
        // each change of stage, five copies of over a KiB a job
        // (cachegrind); boxed, only a pointer moves.
        tokio::spawn(Box::pin(async move {
            let _permit = match slot {
                Some(Slot::Run(p)) => Some(p),
                Some(Slot::Ahead(ahead)) => {
                    let p = slots.acquire_owned().await.ok();
                    drop(ahead);
                    p
                }
                // Read past a group's flood: waits its turn for a slot.
                None => slots.acquire_owned().await.ok(),
            };
            let cancel = cancels.signal(&entry.id);
            // Boxed on its own although the task is boxed too: held
            // inline, its 3.2 KB are moved into the task's state through
            // more copies (+2,000 instructions a job, cachegrind).
            let attempt = Box::pin(run_attempt(
                entry,
                &name,
                payload_max,
                &job_type,
                (&cancels, &cancel),
                progress,
            ));
            let ended = std::panic::AssertUnwindSafe(attempt).catch_unwind().await;
            let (c, elapsed) = match ended {
                Ok(done) => done,
                Err(panic) => {
                    cancels.finish_signal(&cancel);
                    // Nothing is known of how it ended: the heartbeat stops
                    // renewing the delivery, whose lease then runs out and
                    // which is reclaimed as a lost attempt (so a job that
                    // keeps doing this is dead-lettered as a poison pill).
                    let entry = entry_id.map(|id| id.to_string()).unwrap_or_default();
                    tracing::error!(
                        queue = %name, entry,
                        panic = crate::worker::services::panic_message(panic.as_ref()),
                        "an attempt panicked in the daemon; its delivery is left to expire and be reclaimed"
                    );
                    if let Some(id) = entry_id {
                        in_flight.abandon(id);
                    }
                    if let Some(u) = &upstreams {
                        u.forget(&entry);
                    }
                    return;
                }
            };
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
            // A rough moving average; racing updates only blur it.
            let old = typical_us.load(Ordering::Relaxed);
            typical_us.store(old - old / 8 + us / 8, Ordering::Relaxed);
            // The completer only stops once every sender is gone. The
            // channel is rarely full: the wait for room is boxed, so that
            // its future (holding the completion) does not enlarge every
            // attempt's task, allocated and held for as long as it runs.
            let sent = match done.try_send(c) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(c)) => Box::pin(done.send(c)).await.is_ok(),
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !sent {
                tracing::error!(queue = %name, "completer gone; the delivery stays pending");
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grow_past_a_parked_flood_and_shrink_when_it_ends() {
        assert_eq!(overread(4, 0), 0, "nothing parked: read what slots allow");
        assert_eq!(overread(2, 2), 4, "all parked: read more next time");
        assert_eq!(overread(400, 400), MAX_OVERREAD, "never past a full lease");
        assert_eq!(overread(10, 5), 5, "half parked: no growth");
        let mut extra = 0;
        let mut reads = 0;
        while extra < MAX_OVERREAD {
            extra = overread(2 + extra, 2 + extra);
            reads += 1;
        }
        assert!(reads <= 10, "full-size reads after {reads}");
    }
}
