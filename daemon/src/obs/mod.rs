//! Observability: structured logs with per-attempt spans.
//!
//! # Layout
//!
//! - [`config`]: `[log]` (raw → validated).
//! - [`logging`]: the log filter, the flat JSON format, the attempt span.

pub mod config;
pub mod logging;
