//! Formatting shared by the pure modules and the command line that shows
//! their results (times, for now); it imports neither.

/// Unix ms as an RFC 3339 time (UTC, ms precision).
#[must_use]
pub fn format_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}
