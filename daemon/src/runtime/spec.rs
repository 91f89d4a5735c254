//! What a [`Runtime`](super::Runtime) is built for: its pool's size, the
//! largest memory, whether to meter fuel, its compile cache, its profiler
//! map.

use std::path::Path;

use super::DEFAULT_MEMORY_LIMIT;
use crate::config::SlotPages;

/// What a [`Runtime`](super::Runtime) is built for.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSpec<'a> {
    /// Instances that may run at once: the pool's slots.
    pub slots: u32,
    /// The most of them one queue takes (its `concurrency`, with kept
    /// instances). Past 8,192 the queue waits on slow upstreams, and the
    /// pool gives each slot's pages back as its attempt ends instead of
    /// keeping them for the slot's next instance.
    pub widest: u32,
    /// `[daemon] slot_pages`: whether slots keep the pages their attempts
    /// touched ([`SlotPages::Auto`] decides by `widest`).
    pub slot_pages: SlotPages,
    /// The largest linear memory a plugin may grow to, in bytes.
    pub max_memory: usize,
    /// Whether some job type meters fuel: a second engine, compiled with
    /// fuel metering, is built only then, since metering slows every
    /// instruction.
    pub fuel: bool,
    /// Where compiled components are kept between starts (see
    /// [`compile_cache`](super::compile_cache)); `None`: compiled at every start.
    pub cache: Option<&'a Path>,
    /// Whether the engines write the name of every function they compile
    /// to `/tmp/perf-<pid>.map`, so `perf report` names a plugin's own code
    /// instead of showing bare addresses (`[daemon] profiler`).
    pub perf_map: bool,
}

impl<'a> RuntimeSpec<'a> {
    /// One instance at a time with the default memory limit, no fuel, no
    /// profiler map: for a command that looks at a plugin rather than runs
    /// jobs.
    #[must_use]
    pub fn single(cache: Option<&'a Path>) -> RuntimeSpec<'a> {
        RuntimeSpec {
            slots: 1,
            widest: 1,
            slot_pages: SlotPages::Auto,
            max_memory: DEFAULT_MEMORY_LIMIT,
            fuel: false,
            cache,
            perf_map: false,
        }
    }
}
