//! Ward: pulls jobs from Redis streams and runs each attempt in a fresh,
//! sandboxed WebAssembly component.
//!
//! # Layout
//!
//! The domain, pure (no Redis, no wasm, no I/O):
//! - [`job`]: the words of the domain as types: an entry read as a job
//!   ([`job::JobEntry`]), states, failure classes, dead-letter reasons.
//! - [`transition`]: what follows an attempt ([`transition::Transition`]:
//!   succeed, retry, defer, dead-letter, duplicate) and the
//!   [`transition::Completion`] that carries it to be recorded.
//! - [`follow_on`]: jobs a success enqueues atomically with its
//!   acknowledgement (the next stage of `then`, a plugin's children).
//! - [`policy`]: the pure decision after an attempt (backoff, budgets).
//! - [`priority`]: priority levels and the weights that share reads.
//! - [`fairness`]: groups (tenants) with a fleet-wide cap on attempts; a
//!   busy group's new jobs are parked at enqueue (`ward_enqueue`), out of
//!   the stream.
//! - [`redact`]: what a dead-letter entry may show of a payload.
//! - [`schedule`]: cron fire times and their keys.
//! - [`series`]: per-minute counts of finished jobs (the screen's charts),
//!   tallied in memory and flushed by the daemons.
//!
//! Leaves every module may use (they import nothing from the crate):
//! [`clock`] (Unix ms), [`cut`] (bounded text), [`digest`] (sha256),
//! [`secret`] (reading secrets, the `[redacted]` marker), [`text`] (time
//! formatting), [`backoff`] (the retry delay every loop shares).
//!
//! The parts that talk to the world:
//! - [`config`]: the TOML file, raw → validated by section, every problem
//!   reported at once with file and line; every default in
//!   [`config::defaults`].
//! - [`store`]: the only module that speaks Redis: a [`store::Store`] and a
//!   per-queue [`store::Queue`], one file per concern, every Lua script in
//!   `store/lua/` (the APPLY argument layout is a type, checked against the
//!   script by a test).
//! - [`runtime`]: wasmtime: engine, pooling, epoch deadlines, one compiled
//!   component per plugin, a fresh instance per attempt, the host imports.
//! - [`worker`]: the daemon: the reader → attempt → completer path of each
//!   queue, and its background loops as services in `worker/services/`
//!   (heartbeat, reclaim, promote, retention, consumer sweep, function
//!   check, breakers, schedules, pauses), all stopped by one shutdown
//!   signal.
//! - [`breaker`]: circuit breakers per upstream, shared through Redis.
//! - [`upstream`]: flow control per upstream (rate, concurrency,
//!   Retry-After holds), shared through Redis.
//! - [`obs`]: metrics, health endpoints, log spans and alerts; its events
//!   only log and count.
//! - [`dlq`]: the dead-letter stream's logic (listing, filters, paging,
//!   requeue and discard); prints nothing.
//! - [`control`]: operator actions (pause, cancel, requeue, discard, bulk
//!   actions, batches), one implementation shared by the `ward` command and the
//!   admin API, each leaving an entry in the audit trail.
//! - [`admin`]: the admin HTTP API (JSON, bearer tokens with roles), over
//!   the same `control` functions as the command line, and the web admin
//!   screen (`admin/web/`: HTML pages and forms over the API's functions).
//! - [`dev`]: `ward dev`'s parts: the example plugins it finds, the config
//!   it writes, its private `redis-server` and temp dir.
//! - [`cli`]: the `ward` command, one file per subcommand.
//!
//! Imports go one way: `cli` → `control`/`worker` → `store`/`runtime`/`obs` →
//! `config` → the domain and the leaves; nothing imports back up. `admin`
//! sits beside `cli` (which starts it): it uses `control`, `dlq` and
//! `store`, never `worker`, and nothing but `cli` uses it.
//!
//! # One job's way through
//!
//! `XADD ward:{Q}:jobs` → [`store::Queue::lease_batch`] (a blocking
//! `XREADGROUP` sized to free slots, in `worker/reader.rs`) →
//! [`store::Delivery::parse`] (see [`store::fields`] for whose fields are
//! whose) → triage (idempotency keys, open breakers, job types without a
//! plugin) → [`runtime::Plugin::run`] (fresh instance, deadline) →
//! [`policy::decide`] → a [`transition::Completion`] →
//! [`store::Queue::apply`] in the completer (one script per batch: ack and
//! record, re-enqueue as the next attempt, or move to `ward:{Q}:dead`).

pub mod admin;
pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod cut;
pub mod dev;
pub mod digest;
pub mod dlq;
pub mod fairness;
pub mod follow_on;
pub mod job;
pub mod obs;
pub mod policy;
pub mod priority;
pub mod redact;
pub mod runtime;
pub mod schedule;
pub mod secret;
pub mod series;
pub mod store;
pub mod text;
pub mod transition;
pub mod upstream;
pub mod worker;
