//! Ward: pulls jobs from Redis streams and runs each attempt in a fresh,
//! sandboxed WebAssembly component.
//!
//! # Layout
//!
//! - [`config`]: the TOML file, raw → validated, every problem reported at once.
//! - [`job`]: the words of the domain as types (states, classes, failures).
//! - [`runtime`]: wasmtime: engine, pooling, epoch deadlines, one compiled
//!   component per plugin, a fresh instance per attempt, the host imports.
//! - [`policy`]: the pure decision after an attempt (ack, retry, dead-letter).
//! - [`redact`]: what a dead-letter entry may show of a payload (secrets
//!   redacted, oversized payloads replaced by a marker); pure.
//! - [`queue`]: every Redis operation, each one command or one Lua script.
//! - [`worker`]: the daemon loop that ties them together.
//! - [`breaker`]: circuit breakers per upstream, shared through Redis.
//! - [`schedule`]: `[[schedule]]`, jobs enqueued on a cron schedule, once
//!   per fire time however many daemons run.
//! - [`obs`]: metrics, health endpoints, log spans and alerts.
//! - [`cli`]: the `ward` command.
//! - [`dlq`]: the dead-letter stream as operators use it (`ward dlq list`,
//!   `show`, `requeue`, `discard`).
//!
//! # One job's way through
//!
//! `XADD ward:{Q}:jobs` → [`store::Queue::lease_batch`] (a blocking
//! `XREADGROUP` sized to free slots) → [`store::Delivery::parse`] →
//! [`runtime::Plugin::run`] (fresh instance, deadline) → [`policy::decide`]
//! → [`store::Queue::apply`] (one script per batch: ack and record, re-enqueue
//! as the next attempt, or move to `ward:{Q}:dead`).

pub mod backoff;
pub mod breaker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cut;
pub mod digest;
pub mod dlq;
pub mod job;
pub mod obs;
pub mod policy;
pub mod redact;
pub mod runtime;
pub mod schedule;
pub mod secret;
pub mod store;
pub mod text;
pub mod transition;
pub mod worker;
