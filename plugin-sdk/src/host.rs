//! The host's imports other than logging.

use crate::bindings::ward::plugin::host;

/// Saves progress for this job.
///
/// The next attempt of the same job receives `data` in [`Job::checkpoint`](crate::Job::checkpoint);
/// a later call in the same attempt replaces an earlier one. Use it to skip
/// work that already succeeded (e.g. the first 400 of 1000 rows) when the
/// attempt fails part-way.
pub fn save_checkpoint(data: &[u8]) {
    host::save_checkpoint(data);
}

/// Reads the secret `name`, or `None` if this job type has not been granted it
/// in the daemon's config (or it is not set).
pub fn secret(name: &str) -> Option<String> {
    host::secret(name)
}
