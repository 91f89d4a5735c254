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

/// Now by another clock that runs `offset_ms` ahead of this host's (such
/// as Redis' clock, offset as last measured), Unix ms; 0 before 1970.
#[must_use]
pub fn now_offset_ms(offset_ms: i64) -> u64 {
    let local = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    u64::try_from(local.saturating_add(offset_ms)).unwrap_or(0)
}

/// How far another clock that reads `other_ms` now runs ahead of this
/// host's, ms (negative: behind); see [`now_offset_ms`].
#[must_use]
pub fn offset_to(other_ms: u64) -> i64 {
    let local = i64::try_from(now_ms()).unwrap_or(i64::MAX);
    i64::try_from(other_ms)
        .unwrap_or(i64::MAX)
        .saturating_sub(local)
}
