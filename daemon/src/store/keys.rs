//! The names of a queue's keys. Every key of queue `Q` is `ward:{Q}:<name>`:
//! the hash tag `{Q}` lets one script touch any of them (and keeps them on
//! one node of a Redis Cluster).
//!
//! The shapes are stated here once; the scripts get the ones they build
//! themselves (from ids they learn inside the script) as Lua constants, see
//! [`LUA`].

use crate::priority::Priority;

/// Every key of Ward starts with this.
const NAMESPACE: &str = "ward:";
/// The stream of ready deliveries.
const JOBS: &str = "jobs";
/// Appended to the jobs stream's name: the streams of the other levels.
const HIGH: &str = ":high";
/// See [`HIGH`].
const LOW: &str = ":low";
/// The dead-letter stream.
const DEAD: &str = "dead";
/// The set of jobs waiting for their due time.
const DELAYED: &str = "delayed";
/// The pub/sub channel told of every new due time.
const WAKE: &str = "wake";
/// The counter for the ids of jobs that start delayed.
const SEQ: &str = "seq";
/// How many acknowledged entries wait in the stream to be trimmed.
const ACKED: &str = "acked";
/// When a daemon last recorded an outcome of the queue (ms, the Redis clock).
const PROGRESS: &str = "progress";
/// A fleet-wide alert claim (append `<kind>:<job type>`); see `store/alert_claim.rs`.
const ALERT: &str = "alert:";
/// The set of upstreams that have a breaker.
const BREAKERS: &str = "breakers";
/// One circuit breaker's hash (append the upstream).
const BREAKER: &str = "breaker:";
/// The set of cancel requests of running jobs (job id → request time).
const CANCELS: &str = "cancels";
/// The pub/sub channel of control messages (`cancel <id>`, ...).
const CONTROL: &str = "control";
/// The hash of pauses: `*` (the whole queue) or a job type → JSON.
const PAUSED: &str = "paused";
/// The set of jobs held back while their job type or queue is paused.
const HELD: &str = "held";
/// One upstream's flow-control hash (append the upstream).
const UPSTREAM: &str = "upstream:";
/// Appended to an upstream's hash key: its sorted set of slot holders.
const SLOTS: &str = ":slots";
/// The hash of a queue's limits that `ward_enqueue` reads (`max_backlog`).
const LIMITS: &str = "limits";
/// A schedule's state hash (append the schedule's name).
const SCHEDULE: &str = "schedule:";
/// A group's slots (append `<job type>:<group>`): job id → expiry (ms).
const GROUP: &str = "group:";
/// A group's waiting line (append `<job type>:<group>`): job id → since (ms).
const GROUP_WAITING: &str = "group-waiting:";
/// A group's jobs on their way through the stream, not yet holding a slot
/// (append `<job type>:<group>`): job id → when the entry stops counting (ms).
const GROUP_QUEUED: &str = "group-queued:";
/// The hash of a queue's grouped job types that `ward_enqueue` reads: job
/// type → `<group_concurrency> <group_by>`.
const GROUPING: &str = "grouping";
/// A job record (append the job id).
const RECORD: &str = "job:";
/// A batch's ledger hash (append the batch id); see `store/batches.rs`.
const BATCH: &str = "batch:";
/// Appended to a batch's ledger key: its failed members (job id → JSON).
const FAILED: &str = ":failed";
/// Appended to a batch's ledger key: the members a producer's plain XADD
/// named it in that a daemon has counted (job ids), so a delivery taken over
/// from a daemon that died around counting it is counted once.
const JOINED: &str = ":joined";
/// The index of a queue's batches: batch id → when it was created (ms).
const BATCHES: &str = "batches";
/// The batches not finished yet: batch id → when it was created (ms).
const BATCHES_UNFINISHED: &str = "batches:unfinished";
/// An idempotency key (append the key).
const IDEM: &str = "idem:";
/// A daemon's heartbeat hash (append its consumer name).
const DAEMON: &str = "daemon:";
/// The sorted set of the daemons that beat for a queue (name → last beat).
const DAEMONS: &str = "daemons";
/// Appended to a job record's key: the job's history list.
const HISTORY: &str = ":history";
/// Appended to a job record's key: the progress its running plugin reported.
const JOB_PROGRESS: &str = ":progress";
/// One minute's counts of finished jobs (append the minute).
const SERIES: &str = "series:";

/// The key shapes scripts build themselves, by their Lua names.
pub(super) const LUA: [(&str, &str); 20] = [
    ("GROUP_PREFIX", GROUP),
    ("GROUP_WAITING_PREFIX", GROUP_WAITING),
    ("GROUP_QUEUED_PREFIX", GROUP_QUEUED),
    ("GROUPING_KEY", GROUPING),
    ("LIMITS_KEY", LIMITS),
    ("HIGH_SUFFIX", HIGH),
    ("LOW_SUFFIX", LOW),
    ("KEY_NAMESPACE", NAMESPACE),
    ("JOBS_KEY", JOBS),
    ("DELAYED_KEY", DELAYED),
    ("WAKE_KEY", WAKE),
    ("SEQ_KEY", SEQ),
    ("RECORD_PREFIX", RECORD),
    ("IDEM_PREFIX", IDEM),
    ("HISTORY_SUFFIX", HISTORY),
    ("BATCH_PREFIX", BATCH),
    ("FAILED_SUFFIX", FAILED),
    ("JOINED_SUFFIX", JOINED),
    ("BATCHES_KEY", BATCHES),
    ("BATCHES_UNFINISHED_KEY", BATCHES_UNFINISHED),
];

/// The keys of one group (tenant) of a job type; `ward_enqueue` builds the
/// same names (its preamble's `GROUP_*_PREFIX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKeys {
    /// `ward:{Q}:group:<job>:<group>`: the slots held (job id → when the
    /// slot expires, ms).
    pub slots: Vec<u8>,
    /// `ward:{Q}:group-waiting:<job>:<group>`: the waiting line (job id →
    /// since when, ms).
    pub waiting: Vec<u8>,
    /// `ward:{Q}:group-queued:<job>:<group>`: the jobs sent to the stream
    /// and not yet holding a slot (job id → when the entry stops counting,
    /// ms), so `ward_enqueue` can tell a group at its cap without reading
    /// the stream.
    pub queued: Vec<u8>,
}

/// The keys of one queue.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The queue's name.
    pub queue: String,
    /// `ward:{Q}:jobs`
    pub jobs: String,
    /// `ward:{Q}:jobs:high`: the stream of ready `high` deliveries (the
    /// `ward:{Q}:jobs` stream is `normal`), consumer group `ward`.
    pub jobs_high: String,
    /// `ward:{Q}:jobs:low`: the stream of ready `low` deliveries.
    pub jobs_low: String,
    /// `ward:{Q}:dead`
    pub dead: String,
    /// `ward:{Q}:delayed`
    pub delayed: String,
    /// `ward:{Q}:wake`: pub/sub channel told of every new due time.
    pub wake: String,
    /// `ward:{Q}:seq`: counter for the ids of jobs that start delayed.
    pub seq: String,
    /// `ward:{Q}:acked`: how many acknowledged entries wait in the stream
    /// to be trimmed.
    pub acked: String,
    /// `ward:{Q}:progress`: when a daemon last recorded an outcome of this
    /// queue (Unix ms, the Redis clock), written by every applied batch; the
    /// `stalled` alert reads it.
    pub progress: String,
    /// `ward:{Q}:breakers`: set of the upstreams that have a breaker hash
    /// `ward:{Q}:breaker:<upstream>`.
    pub breakers: String,
    /// `ward:{Q}:breaker:` (append an upstream): one circuit breaker's hash.
    pub breaker_prefix: String,
    /// `ward:{Q}:job:` (append a job id)
    pub record_prefix: String,
    /// `ward:{Q}:cancels`: sorted set, job id → request time (ms), of
    /// cancel requests for jobs that were running when cancelled.
    pub cancels: String,
    /// `ward:{Q}:control`: pub/sub channel of control messages to every
    /// daemon of the queue (`cancel <id>`).
    pub control: String,
    /// `ward:{Q}:paused`: hash of pauses, field `*` (the whole queue) or a
    /// job type, value JSON `{"by","at_ms","note","until_ms"}`.
    pub paused: String,
    /// `ward:{Q}:held`: sorted set, job id → when it was held (ms), of the
    /// jobs held back while their job type or queue is paused.
    pub held: String,
    /// `ward:{Q}:upstream:` (append an upstream): its flow-control hash
    /// (`tokens`, `ts`, `promised`, `held_until`); `:slots` appended, the
    /// sorted set of attempts holding one of its slots, scored by expiry.
    pub upstream_prefix: String,
    /// `ward:{Q}:limits`: hash of the queue's limits `ward_enqueue` reads
    /// (`max_backlog`), written by the daemons from their config.
    pub limits: String,
    /// `ward:{Q}:grouping`: hash of the queue's grouped job types that
    /// `ward_enqueue` reads (job type → `<group_concurrency> <group_by>`),
    /// written by the daemons from their config (see [`crate::fairness`]).
    pub grouping: String,
    /// `ward:{Q}:batches`: sorted set, batch id → when it was created
    /// (ms), of the queue's batches (see [`Keys::batch`]).
    pub batches: String,
    /// `ward:{Q}:batches:unfinished`: sorted set, batch id → when it was
    /// created (ms), of the batches not finished yet (`ward_batches_unfinished`).
    pub batches_unfinished: String,
    /// `ward:{Q}:daemons`: sorted set, consumer name → its last beat (ms),
    /// of the daemons serving the queue, including those that have not
    /// leased from it yet (which its group does not list).
    pub daemons: String,
}

impl Keys {
    /// The keys of queue `queue`.
    #[must_use]
    pub fn new(queue: &str) -> Keys {
        let key = |name: &str| format!("{NAMESPACE}{{{queue}}}:{name}");
        Keys {
            queue: queue.to_string(),
            jobs: key(JOBS),
            jobs_high: key(&format!("{JOBS}{HIGH}")),
            jobs_low: key(&format!("{JOBS}{LOW}")),
            dead: key(DEAD),
            delayed: key(DELAYED),
            wake: key(WAKE),
            seq: key(SEQ),
            acked: key(ACKED),
            progress: key(PROGRESS),
            breakers: key(BREAKERS),
            breaker_prefix: key(BREAKER),
            record_prefix: key(RECORD),
            cancels: key(CANCELS),
            control: key(CONTROL),
            paused: key(PAUSED),
            held: key(HELD),
            upstream_prefix: key(UPSTREAM),
            limits: key(LIMITS),
            grouping: key(GROUPING),
            batches: key(BATCHES),
            batches_unfinished: key(BATCHES_UNFINISHED),
            daemons: key(DAEMONS),
        }
    }

    /// `ward:{Q}:`, the start of every key of the queue, for the scripts
    /// that derive keys from ids they learn inside.
    #[must_use]
    pub fn prefix(&self) -> String {
        format!("{NAMESPACE}{{{}}}:", self.queue)
    }

    /// The stream of ready deliveries of level `p`.
    #[must_use]
    pub fn stream(&self, p: Priority) -> &str {
        match p {
            Priority::High => &self.jobs_high,
            Priority::Normal => &self.jobs,
            Priority::Low => &self.jobs_low,
        }
    }

    /// `ward:{Q}:alert:<kind>:<job type>`: which daemon sends the alert of
    /// that kind and job type this cooldown (see `store/alert_claim.rs`).
    #[must_use]
    pub fn alert_claim(&self, kind: &str, job: &str) -> String {
        format!("{NAMESPACE}{{{}}}:{ALERT}{kind}:{job}", self.queue)
    }

    /// `ward:{Q}:job:<id>`
    #[must_use]
    pub fn record(&self, id: &str) -> String {
        joined(&[&self.record_prefix, id])
    }

    /// `ward:{Q}:job:<id>:history`: the job's history, oldest first.
    #[must_use]
    pub fn history(&self, id: &str) -> String {
        joined(&[&self.record_prefix, id, HISTORY])
    }

    /// `ward:{Q}:job:<id>:progress`: the progress job `id`'s plugin last
    /// reported (a hash of its own, so a report never touches the record a
    /// completion writes; it expires a day after the last report).
    #[must_use]
    pub fn job_progress(&self, id: &str) -> String {
        joined(&[&self.record_prefix, id, JOB_PROGRESS])
    }

    /// `ward:{Q}:idem:<key>`: which job owns idempotency key `key`, and
    /// whether it completed.
    #[must_use]
    pub fn idempotency(&self, key: &str) -> String {
        joined(&[NAMESPACE, "{", &self.queue, "}:", IDEM, key])
    }

    /// `ward:{Q}:daemon:<consumer>`: what that daemon's heartbeat says of
    /// itself (version, last seen), expiring when it stops beating.
    #[must_use]
    pub fn daemon(&self, consumer: &str) -> String {
        joined(&[NAMESPACE, "{", &self.queue, "}:", DAEMON, consumer])
    }

    /// `ward:{Q}:series:<minute>`: the counts of jobs that finished in
    /// that minute (minutes since the Unix epoch), by count and job type
    /// (see [`crate::series`]); it expires after a day.
    #[must_use]
    pub fn series(&self, minute: u64) -> String {
        format!("{NAMESPACE}{{{}}}:{SERIES}{minute}", self.queue)
    }

    /// `ward:{Q}:schedule:<name>`: schedule `name`'s latest fire and pause.
    #[must_use]
    pub fn schedule(&self, name: &str) -> String {
        joined(&[NAMESPACE, "{", &self.queue, "}:", SCHEDULE, name])
    }

    /// The keys of group `group` of job type `job` (see [`GroupKeys`] and
    /// [`crate::fairness`]).
    #[must_use]
    pub fn group(&self, job: &str, group: &[u8]) -> GroupKeys {
        let key = |name: &str| {
            let mut k = format!("{NAMESPACE}{{{}}}:{name}{job}:", self.queue).into_bytes();
            k.extend_from_slice(group);
            k
        };
        GroupKeys {
            slots: key(GROUP),
            waiting: key(GROUP_WAITING),
            queued: key(GROUP_QUEUED),
        }
    }

    /// `ward:{Q}:batch:<id>`: batch `id`'s ledger (members by state, open
    /// or sealed, times), and `ward:{Q}:batch:<id>:failed`, its dead
    /// members (job id → JSON with class, code, message).
    #[must_use]
    pub fn batch(&self, id: &str) -> (String, String) {
        let ledger = joined(&[NAMESPACE, "{", &self.queue, "}:", BATCH, id]);
        let failed = joined(&[&ledger, FAILED]);
        (ledger, failed)
    }

    /// `ward:{Q}:breaker:<upstream>`: the circuit breaker of `upstream`.
    #[must_use]
    pub fn breaker(&self, upstream: &str) -> String {
        format!("{}{upstream}", self.breaker_prefix)
    }
}

impl Keys {
    /// `ward:{Q}:upstream:<name>`: the flow-control hash of `upstream`.
    #[must_use]
    pub fn upstream(&self, upstream: &str) -> String {
        joined(&[&self.upstream_prefix, upstream])
    }

    /// `ward:{Q}:upstream:<name>:slots`: who holds `upstream`'s slots.
    #[must_use]
    pub fn upstream_slots(&self, upstream: &str) -> String {
        joined(&[&self.upstream_prefix, upstream, SLOTS])
    }
}

/// The parts, one after the other. Built per job on the hot path (a record
/// key per completion), where `format!`'s machinery costs more than the copy.
fn joined(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        out.push_str(p);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_queue_hash_tag() {
        let k = Keys::new("emails");
        assert_eq!(k.jobs, "ward:{emails}:jobs");
        assert_eq!(k.record("1-0"), "ward:{emails}:job:1-0");
        assert_eq!(k.dead, "ward:{emails}:dead");
        assert_eq!(k.history("1-0"), "ward:{emails}:job:1-0:history");
        assert_eq!(k.job_progress("1-0"), "ward:{emails}:job:1-0:progress");
        assert_eq!(k.idempotency("k"), "ward:{emails}:idem:k");
        assert_eq!(k.breaker("smtp"), "ward:{emails}:breaker:smtp");
        assert_eq!(k.daemon("h-1-ab"), "ward:{emails}:daemon:h-1-ab");
        assert_eq!(k.daemons, "ward:{emails}:daemons");
        assert_eq!(k.schedule("nightly"), "ward:{emails}:schedule:nightly");
        assert_eq!(k.series(29_000_000), "ward:{emails}:series:29000000");
        assert_eq!(k.cancels, "ward:{emails}:cancels");
        assert_eq!(k.control, "ward:{emails}:control");
        assert_eq!(k.paused, "ward:{emails}:paused");
        assert_eq!(k.held, "ward:{emails}:held");
        assert_eq!(k.upstream("api"), "ward:{emails}:upstream:api");
        assert_eq!(k.upstream_slots("api"), "ward:{emails}:upstream:api:slots");
        assert_eq!(k.limits, "ward:{emails}:limits");
        assert_eq!(k.batches, "ward:{emails}:batches");
        assert_eq!(k.batches_unfinished, "ward:{emails}:batches:unfinished");
        assert_eq!(
            k.batch("b1"),
            (
                "ward:{emails}:batch:b1".to_string(),
                "ward:{emails}:batch:b1:failed".to_string()
            )
        );
        assert_eq!(k.stream(Priority::High), "ward:{emails}:jobs:high");
        assert_eq!(k.stream(Priority::Low), "ward:{emails}:jobs:low");
        assert_eq!(k.stream(Priority::Normal), k.jobs);
        let g = k.group("send", b"acme");
        assert_eq!(g.slots, b"ward:{emails}:group:send:acme");
        assert_eq!(g.waiting, b"ward:{emails}:group-waiting:send:acme");
        assert_eq!(g.queued, b"ward:{emails}:group-queued:send:acme");
        assert_eq!(k.grouping, "ward:{emails}:grouping");
    }
}
