//! A Ward job plugin that does nothing and succeeds with an empty result.
//!
//! Useful to measure the daemon's own overhead per job. It is also the
//! workspace's plugin built against the first version of the interface,
//! `ward:plugin@0.1.0` (`plugin-sdk/wit/v0.1.0`), straight from its WIT with
//! wit-bindgen rather than through the SDK (which targets 0.2.0): the tests
//! run it to prove the daemon still serves components built against 0.1.0.

// The generated glue is raw pointers and `extern "C"`; Clippy's findings in
// it are not ours to fix.
#[allow(clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../plugin-sdk/wit/v0.1.0",
        world: "job-plugin",
    });
}

use bindings::{Failure, Guest, Job};

struct Noop;

impl Guest for Noop {
    fn handle(_job: Job) -> Result<Vec<u8>, Failure> {
        Ok(Vec::new())
    }
}

bindings::export!(Noop with_types_in bindings);
