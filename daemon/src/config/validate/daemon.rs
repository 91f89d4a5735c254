//! `[daemon]`: the process itself.

use std::ops::Range;

use crate::config::defaults::MAX_THREADS;
use crate::config::raw::RawDaemon;

/// `[daemon] threads`, when set and in range.
pub(super) fn threads(
    raw: RawDaemon,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<usize> {
    match raw.threads {
        Some(t) if !(1..=MAX_THREADS).contains(t.get_ref()) => {
            problem(
                t.span(),
                format!(
                    "[daemon] threads {} is out of range; use 1 to {MAX_THREADS}, or leave it out for one less than the CPU count",
                    t.get_ref()
                ),
            );
            None
        }
        Some(t) => usize::try_from(t.into_inner()).ok(),
        None => None,
    }
}
