//! The local wall clock, read one way everywhere. A leaf: it imports
//! nothing from the crate, so any module may use it.

/// Unix time in milliseconds by this host's clock; 0 if the clock is set
/// before 1970.
#[must_use]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
