//! Ward's integration tests, one module per area, in one test binary so
//! that the harness (`ward-testkit`) and the `ward` library compile and link
//! once. Each test starts its own redis-server on a free port and its own
//! `ward` processes, so tests of different areas run side by side safely.
//!
//! Run one area with `cargo test -p ward --test all backbone::`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod admin;
mod apply_contract;
mod backbone;
mod bad_input;
mod batch;
mod batch_pause;
mod bulk;
mod bulk_cancel;
mod cancel;
mod cluster;
mod dev;
mod dlq;
mod fairness;
mod fanout;
mod fleet_alerts;
mod inflight;
mod job_list;
mod keys;
mod languages;
mod observability;
mod operations;
mod overrides;
mod pause;
mod policy;
mod priorities;
mod profiling;
mod prometheus;
mod recovery;
mod reliability;
mod reload;
mod reuse;
mod sandbox;
mod schedules;
mod sentinel;
mod stages;
mod support;
mod traces;
mod upstreams;
mod web;
mod webhook;
