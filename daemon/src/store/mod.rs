//! The store: every Redis operation Ward performs, as named operations.
//!
//! Operations that change a job's state in more than one key run as one
//! Lua script, so a crash between two writes can neither lose a job nor
//! deliver it twice: [`Queue::apply`] acknowledges a whole batch of finished
//! attempts in one round trip, and each acknowledgement only takes effect if
//! its delivery was still pending (`XACK` returned 1), which makes a re-sent
//! batch harmless.
//!
//! # Layout
//!
//! - `connect.rs`: the connection, TLS, and the [`Store`] (what concerns
//!   the server rather than one queue: ping, the function library).
//! - `conn.rs`: the [`Connection`] every operation runs on: one server, a
//!   Redis Cluster, or the master Sentinels name (`sentinel.rs` follows it
//!   through a failover); the address forms are `config/address.rs`.
//! - `slots.rs`: cluster hash slots, and the tests that hold every key a
//!   script takes to its queue's slot.
//! - `keys.rs`: the names of a queue's keys ([`Keys`]).
//! - `entry.rs`: a raw stream entry ([`Delivery`]) read as a job ([`JobEntry`];
//!   it and [`Completion`] are domain types, re-exported here).
//! - `fields.rs`: whose fields an entry carries: the producer's, or Ward's
//!   own under the reserved prefix `ward:`; how an entry is parsed.
//! - `consume.rs`: the consumer group, leases, renewal, reclaiming, the
//!   idempotency check.
//! - `levels.rs`: leasing across the priority levels' streams.
//! - `groups.rs`: the slots and waiting lines of job groups (tenants).
//! - `apply/`: the APPLY script's argument encoder (`mod.rs`) and layout
//!   (`layout.rs`).
//! - `enqueue.rs`: enqueueing, the `ward_enqueue` library, promoting due jobs.
//! - `jobs.rs`: looking jobs up ([`JobStatus`], record fields, history).
//! - `dead.rs`: the dead-letter stream (pages, requeue, discard, retention).
//! - `audit.rs`: the audit trail of operator actions (`ward:audit`).
//! - `cancel.rs`: cancelling jobs, the cancel requests of running ones
//!   (`ward:{Q}:cancels`), the control channel (`ward:{Q}:control`).
//! - `pause.rs`: pauses (`ward:{Q}:paused`) and the jobs held meanwhile
//!   (`ward:{Q}:held`), released in chunks on resume.
//! - `breakers.rs`, `sample.rs`: circuit breakers; depth and lag.
//! - `daemons.rs`: a group's consumers, and each daemon's heartbeat hash
//!   (`ward:{Q}:daemon:<consumer>`: version, last seen).
//! - `upstreams.rs`: flow control per upstream (token buckets, slots with
//!   leases, Retry-After holds) and the backlog limit `ward_enqueue` reads.
//! - `scan.rs`: pages of waiting and running jobs, for bulk actions.
//! - `batches.rs`: batch ledgers (create, seal, read, list); the ledger's
//!   Lua helpers in `lua/batch_ledger.lua`, used by every script that
//!   changes a member's state.
//! - `schedules.rs`: each schedule's latest fire and pause
//!   (`ward:{Q}:schedule:<name>`).
//! - `series.rs`: per-minute counts of finished jobs
//!   (`ward:{Q}:series:<minute>`), for the web screen's charts.
//! - `memory.rs`: Redis' memory settings and use ([`Memory`]).
//! - `alert_claim.rs`: the fleet-wide claim on sending an alert (one
//!   daemon sends it per cooldown).
//! - `replicas.rs`: `WAIT` for replicas (a queue's `wait_replicas`).
//! - `wake.rs`: the pub/sub wake-ups of the promoter ([`Wake`]).
//! - `reply.rs`: reading Redis replies.
//! - `script.rs`: how a script is built: a preamble generated from the Rust
//!   constants the scripts share (key shapes, dead-letter fields, the library
//!   version) and `lua/common.lua`, then the script's own file.
//! - `lua/`: every script, one file each, plus `common.lua` (every script)
//!   and `dead_letter.lua` (requeue and discard).
//!
//! Keys (per queue `Q`, all sharing the hash tag `{Q}`; see `keys.rs`):
//! - `ward:{Q}:jobs`: stream of ready deliveries, consumer group `ward`;
//!   `ward:{Q}:jobs:high` and `ward:{Q}:jobs:low`, the same for those
//!   priority levels (`ward:{Q}:jobs` is `normal`);
//! - `ward:{Q}:job:<id>`: hash, the job record (`:history`, its history;
//!   `:progress`, what its running plugin last reported);
//! - `ward:{Q}:dead`: stream of dead-letter entries;
//! - `ward:{Q}:batch:<id>` (`:failed`) and `ward:{Q}:batches`: batch
//!   ledgers, their dead members, and the index of batches.
//!
//! Scripts receive the keys they touch in `KEYS` (Redis Cluster and proxies
//! route on them), except where they learn ids inside the script; each such
//! script says so.

use std::time::Duration;

use redis::{ErrorKind, RedisError};

mod alert_claim;
mod apply;
mod audit;
mod batches;
mod breakers;
mod cancel;
mod conn;
mod connect;
mod consume;
mod daemons;
mod dead;
mod enqueue;
mod entry;
pub mod fields;
mod groups;
mod jobs;
mod keys;
mod lease_plain;
mod levels;
mod memory;
mod orphans;
mod pause;
mod progress;
mod replicas;
mod reply;
mod sample;
mod scan;
mod schedules;
mod script;
mod sentinel;
mod series;
mod slots;
mod upstreams;
mod wake;

pub use crate::config::address::{SentinelTarget, Target, redacted_url};
pub use apply::Applied;
pub use audit::{AUDIT_KEY, AUDIT_MAX, AuditRecord};
pub use batches::{BatchLedger, Callbacks, FailedMember, MAX_BATCH_ID, Sealed, bad_batch_id};
pub use breakers::{BreakerForced, BreakerState, BreakerUpdate};
pub use cancel::{Cancelled, ControlFeed, ControlMessage};
pub use conn::Connection;
pub use connect::{Store, client, connect, trust_ca};
pub use consume::KeyCheck;
pub use daemons::{ConsumerInfo, DaemonBeat};
pub use dead::{
    DEAD_ENTRY_FIELDS, DeadLetterAct, DeadRef, PayloadEdit, RETIRED_TTL, Resolution, Trimmed,
};
pub use enqueue::{
    BACKPRESSURE, BATCH_SEALED, EnqueueOptions, Enqueued, FUNCTIONS, FUNCTIONS_VERSION, Promoted,
};
pub use entry::{Completion, Delivery, JobEntry, Malformed};
pub use groups::GroupClaim;
pub use jobs::{CancelInfo, JobStatus, KeyOwner, LastError};
pub use keys::Keys;
pub use lease_plain::Unfinished;
pub use levels::{Lease, LeaseAsk, Leased};
pub use memory::Memory;
pub use pause::{
    BATCH_PAUSE_PREFIX, HeldCounts, Pause, Pauses, RELEASE_CHUNK, Released, WHOLE_QUEUE,
};
pub use progress::{JobProgress, PROGRESS_TTL, ProgressReport};
pub use sample::QueueSample;
pub use scan::{Candidate, Waiting};
pub use schedules::ScheduleState;
pub use sentinel::Followed;
pub use slots::{CrossSlot, one_slot, slot};
pub use upstreams::{Limit, Refusal, Refused, Release, UpstreamState};
pub use wake::Wake;

/// The consumer group every Ward daemon of a queue joins.
pub const GROUP: &str = "ward";
pub use crate::config::defaults::SUCCEEDED_TTL;

/// Errors talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// Redis refused or failed a command.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Redis answered something Ward did not expect.
    #[error("unexpected reply from redis to {what}: {detail}")]
    Protocol {
        /// Which operation.
        what: &'static str,
        /// What came back.
        detail: String,
    },
}

/// One queue's Redis operations over a shared, self-reconnecting connection.
#[derive(Clone)]
pub struct Queue {
    /// This queue's keys.
    pub keys: Keys,
    con: Connection,
    succeeded_ttl: Duration,
}

// The clock moved to a leaf; kept reachable here for callers.
pub use crate::clock::now_ms;

/// Longest history kept per job (oldest entries are trimmed).
pub const MAX_HISTORY: usize = 50;

/// Whether a Redis error means the connection is gone (worth a reconnect and
/// retry) rather than a command that Redis refused.
#[must_use]
pub fn is_connection_error(e: &QueueError) -> bool {
    match e {
        QueueError::Redis(e) => {
            e.is_connection_dropped()
                || e.is_connection_refusal()
                || e.is_timeout()
                || e.is_io_error()
                || matches!(e.kind(), ErrorKind::Io)
        }
        QueueError::Protocol { .. } => false,
    }
}

/// Whether Redis refused a write because it is at its `maxmemory` (`OOM`,
/// under `noeviction`): worth waiting for room rather than giving up.
#[must_use]
pub fn is_out_of_memory(e: &QueueError) -> bool {
    matches!(e, QueueError::Redis(e) if e.code() == Some("OOM"))
}

impl Queue {
    /// Operations on queue `keys.queue` over `con`.
    #[must_use]
    pub fn new(keys: Keys, con: Connection) -> Queue {
        Queue {
            keys,
            con,
            succeeded_ttl: SUCCEEDED_TTL,
        }
    }

    /// The same queue, keeping records of succeeded jobs for `ttl` (whole
    /// seconds; zero keeps none).
    #[must_use]
    pub fn with_succeeded_ttl(mut self, ttl: Duration) -> Queue {
        self.succeeded_ttl = ttl;
        self
    }

    /// The same queue over another connection. A blocking read holds up
    /// every command queued behind it on its connection, so the reader gets
    /// a connection of its own.
    #[must_use]
    pub fn with_connection(&self, con: Connection) -> Queue {
        Queue {
            keys: self.keys.clone(),
            con,
            succeeded_ttl: self.succeeded_ttl,
        }
    }

    /// The store this queue's connection belongs to.
    #[must_use]
    pub fn store(&self) -> Store {
        Store::new(self.con.clone())
    }
}
