//! Operator actions: what a person may do to Ward's jobs, as one function
//! each, shared by the `ward` command and the admin API (neither holds a
//! copy of the logic). Every action that changes something takes an
//! [`Actor`] and leaves one entry in the audit trail ([`audit::record`]).
//!
//! # Layout
//!
//! - `audit.rs`: who acts ([`Actor`]), and the audit trail.
//! - `batches.rs`: batches: create, seal, show (failures grouped by
//!   class and code), list.
//! - `batch_actions.rs`: a batch's dead members requeued, the rest
//!   cancelled (the bulk actions on its `batch` field).
//! - `batch_pause.rs`: a batch paused (quarantined) and resumed, and its
//!   members under way counted.
//! - `breakers.rs`: the breakers as an operator sees them; overrides.
//! - `find.rs`: finding waiting and running jobs by a filter, page by
//!   page (a listing; the walk bulk cancel uses).
//! - `bulk_cancel.rs`: cancelling every job that matches a filter.
//! - `cancel.rs`: cancelling jobs, queued, delayed or running.
//! - `schedules.rs`: schedules: their state, pause, resume, fire now.
//! - `dead.rs`: requeue and discard of dead letters, by id or by filter
//!   (bulk), and edit-and-requeue.
//! - `pause.rs`: pause and resume a queue or a job type ([`pause::pause`],
//!   [`pause::resume`], [`pause::status`]).
//! - `upstreams.rs`: flow control per upstream as an operator sees it
//!   (limits, tokens, in flight, holds, breaker; read only).
//!
//! Imports: `control` uses `store`, `dlq` and the domain; `cli` and the
//! admin API use `control`; nothing here imports them.

pub mod audit;
pub mod batch_actions;
pub mod batch_pause;
pub mod batches;
pub mod breakers;
pub mod bulk_cancel;
pub mod cancel;
pub mod dead;
pub mod find;
pub mod pause;
pub mod schedules;
pub mod upstreams;

pub use audit::{Action, Actor, Via};
