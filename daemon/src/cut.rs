//! Cutting text to a size, marked the same way wherever Ward does it (trap
//! messages, history, alerts, log fields, protocol errors). A leaf: it
//! imports nothing from the crate.

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("…[truncated]");
    }
}
