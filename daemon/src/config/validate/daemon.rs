//! `[daemon]`: the process itself.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::config::SlotPages;
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

/// `[daemon] profiler`: whether the daemon names the machine code it
/// compiles from plugins for `perf` (`perfmap`), or not (`off`, the default).
pub(super) fn perf_map(
    raw: Option<Spanned<String>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> bool {
    let Some(raw) = raw else { return false };
    match raw.get_ref().as_str() {
        "perfmap" => true,
        "off" => false,
        other => {
            problem(
                raw.span(),
                format!(
                    "[daemon] profiler \"{other}\" is not one Ward knows; use \"perfmap\" (a /tmp/perf-<pid>.map for perf) or \"off\""
                ),
            );
            false
        }
    }
}

/// `[daemon] slot_pages`: `auto` (the default), `keep` or `release`.
pub(super) fn slot_pages(
    raw: Option<Spanned<String>>,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> SlotPages {
    let Some(raw) = raw else {
        return SlotPages::Auto;
    };
    match raw.get_ref().as_str() {
        "auto" => SlotPages::Auto,
        "keep" => SlotPages::Keep,
        "release" => SlotPages::Release,
        other => {
            problem(
                raw.span(),
                format!(
                    "[daemon] slot_pages \"{other}\" is not one Ward knows; use \"auto\", \"keep\" (fast reuse; a burst's pages stay) or \"release\" (given back as each attempt ends)"
                ),
            );
            SlotPages::Auto
        }
    }
}

/// `[daemon] compile_cache`: a folder (relative to the config's), `off`, or
/// when not set the default ([`crate::config::defaults::compile_cache_dir`]).
pub(super) fn compile_cache(
    raw: Option<Spanned<String>>,
    base: &Path,
    problem: &mut dyn FnMut(Range<usize>, String),
) -> Option<PathBuf> {
    let Some(raw) = raw else {
        return crate::config::defaults::compile_cache_dir();
    };
    match raw.get_ref().trim() {
        "off" => None,
        "" => {
            problem(
                raw.span(),
                "[daemon] compile_cache is empty; give a folder, or \"off\" to compile every plugin at each start".to_string(),
            );
            None
        }
        dir => Some(base.join(dir)),
    }
}
