//! Write Ward job plugins in Rust: one function and one macro.
//!
//! A plugin is a WebAssembly component that exports `handle` from the WIT world
//! `ward:plugin/job-plugin@0.2.0` (see `wit/world.wit` in this crate; the
//! daemon still runs components built against 0.1.0, `wit/v0.1.0/`). This crate
//! hides the generated bindings: write a function from [`Job`] to
//! `Result<Vec<u8>, Failure>`, hand it to [`plugin!`], and build the crate as a
//! `cdylib` for `wasm32-wasip2`, which produces a component directly.
//!
//! ```no_run
//! use ward_plugin_sdk::{Failure, Job, log};
//!
//! #[derive(serde::Deserialize)]
//! struct Email {
//!     to: String,
//! }
//!
//! fn handle(job: Job) -> Result<Vec<u8>, Failure> {
//!     let email: Email = job.json()?;
//!     if !email.to.contains('@') {
//!         return Err(Failure::permanent("no '@' in the address").code("bad-address"));
//!     }
//!     log::info(&format!("sending attempt {} to {}", job.attempt, email.to));
//!     Ok(b"sent".to_vec())
//! }
//!
//! ward_plugin_sdk::plugin!(handle);
//! # fn main() {}
//! ```
//!
//! Return a [`Failure`] to tell the host how to retry: [`Failure::transient`]
//! (retry soon), [`Failure::recoverable`] (retry later) or [`Failure::permanent`]
//! (never retry). A panic traps the component; the host treats that as a crash
//! of the attempt, so prefer returning a failure. For HTTP APIs, [`http`]
//! turns a status code (and its `Retry-After`) or a transport error into the
//! right one.
//!
//! The crate also builds for the host target so that it can be unit-tested and
//! linted with the rest of the workspace, but the host imports ([`log`],
//! [`save_checkpoint`], [`secret`], [`jobs`]) only work inside a component:
//! called from a native build they panic.
//!
//! New in 0.2.0: [`jobs::enqueue`] fans out child jobs, enqueued only if the
//! attempt succeeds, and [`jobs::progress`] reports how far the attempt is.

mod failure;
pub mod fetch;
mod host;
pub mod http;
mod job;
pub mod jobs;
pub mod log;

pub use failure::{Failure, FailureClass};
pub use host::{save_checkpoint, secret};
pub use job::Job;

/// The wit-bindgen output for the `job-plugin` world.
///
/// Public only because [`plugin!`] expands to code in the plugin's crate that
/// must reach it; not part of the API.
#[doc(hidden)]
// The generated glue is all raw pointers and `extern "C"`; this is the only
// place in the crate where `unsafe` is allowed (see Cargo.toml). Clippy's
// findings in it (e.g. the 13-argument canonical-ABI entry point) are not ours
// to fix.
#[allow(unsafe_code, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "job-plugin",
        // The export macro is invoked from plugin crates, not from this one.
        pub_export_macro: true,
        default_bindings_module: "ward_plugin_sdk::bindings",
    });
}

/// Support code for [`plugin!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use crate::bindings;
    use crate::{Failure, Job};

    /// Runs one attempt through the plugin's handler, converting to and from
    /// the generated types.
    ///
    /// Generic rather than a `fn` pointer so that a handler with the wrong
    /// signature is reported at the `plugin!` call with both types spelled out.
    pub fn run<F>(handler: F, job: bindings::Job) -> Result<Vec<u8>, bindings::Failure>
    where
        F: FnOnce(Job) -> Result<Vec<u8>, Failure>,
    {
        handler(Job::from(job)).map_err(bindings::Failure::from)
    }
}

/// Exports a handler function as the plugin's `handle`.
///
/// The function must have the signature
/// `fn(ward_plugin_sdk::Job) -> Result<Vec<u8>, ward_plugin_sdk::Failure>`.
/// Invoke the macro exactly once per plugin crate, at module level:
///
/// ```no_run
/// use ward_plugin_sdk::{Failure, Job};
///
/// fn handle(job: Job) -> Result<Vec<u8>, Failure> {
///     Ok(job.payload)
/// }
///
/// ward_plugin_sdk::plugin!(handle);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! plugin {
    ($handler:path) => {
        #[doc(hidden)]
        struct __WardPlugin;

        impl $crate::bindings::Guest for __WardPlugin {
            fn handle(
                job: $crate::bindings::Job,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, $crate::bindings::Failure> {
                $crate::__private::run($handler, job)
            }
        }

        $crate::bindings::export!(__WardPlugin with_types_in $crate::bindings);
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A panic is how a test reports a wrong result.
mod tests {
    use super::*;

    fn raw_job(payload: &[u8]) -> bindings::Job {
        bindings::Job {
            id: "1-0".into(),
            name: "test".into(),
            payload: payload.to_vec(),
            attempt: 2,
            idempotency_key: None,
            checkpoint: None,
        }
    }

    #[test]
    fn run_passes_the_job_and_the_result_through() {
        let result = __private::run(|job: Job| Ok(job.payload), raw_job(&[0, 255]));
        assert_eq!(result.unwrap(), [0, 255]);
    }

    #[test]
    fn run_converts_a_failure() {
        let handler = |job: Job| -> Result<Vec<u8>, Failure> {
            Err(Failure::transient(format!("attempt {}", job.attempt)).code("x"))
        };
        let failure = __private::run(handler, raw_job(b"")).unwrap_err();
        assert_eq!(
            failure.class,
            bindings::ward::plugin::types::FailureClass::Transient
        );
        assert_eq!(failure.message, "attempt 2");
        assert_eq!(failure.code.as_deref(), Some("x"));
    }
}
