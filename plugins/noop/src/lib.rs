//! A Ward job plugin that does nothing and succeeds with an empty result.
//!
//! Useful to measure the daemon's own overhead per job.

use ward_plugin_sdk::{Failure, Job};

fn handle(_job: Job) -> Result<Vec<u8>, Failure> {
    Ok(Vec::new())
}

ward_plugin_sdk::plugin!(handle);
