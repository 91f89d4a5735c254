//! A Ward job plugin that succeeds with the payload bytes unchanged as its result.
//!
//! Used to check that payloads, including non-UTF-8 ones, cross the
//! host/plugin boundary byte for byte.

use ward_plugin_sdk::{Failure, Job};

fn handle(job: Job) -> Result<Vec<u8>, Failure> {
    Ok(job.payload)
}

ward_plugin_sdk::plugin!(handle);
