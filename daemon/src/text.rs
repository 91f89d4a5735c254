//! Formatting shared by the pure modules and the command line that shows
//! their results (times, for now); it imports neither.

/// The last Unix ms RFC 3339 can write: 9999-12-31T23:59:59.999Z. Later
/// times come from producers (a record's `first_at`) or huge delays, and
/// must still print.
pub const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// Unix ms as an RFC 3339 time (UTC, ms precision); a time past year 9999
/// prints as its number of ms with a note instead, so showing a record whose
/// times a producer wrote never fails.
#[must_use]
pub fn format_ms(ms: u64) -> String {
    if ms > MAX_RFC3339_MS {
        return format!("{ms} ms since 1970 (past year 9999)");
    }
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_up_to_year_9999_print_as_rfc3339() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(MAX_RFC3339_MS), "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn times_past_year_9999_print_as_ms_with_a_note() {
        for ms in [MAX_RFC3339_MS + 1, 99_999_999_999_999_999, u64::MAX] {
            let s = format_ms(ms);
            assert!(
                s.starts_with(&ms.to_string()) && s.contains("past year 9999"),
                "{s}"
            );
        }
    }
}
