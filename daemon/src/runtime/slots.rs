//! How much address space the instance pool reserves per linear memory.
//!
//! The pooling allocator reserves every slot's address space up front
//! (`PROT_NONE`, no memory behind it until an instance touches a page):
//! per linear memory, wasmtime's default reservation of 4 GiB plus a
//! 32 MiB guard, which lets compiled code skip bounds checks. A process
//! has 128 TiB of address space on x86-64 and aarch64 (4-level page
//! tables), so at about 2,000 slots (8 memories each) the default no
//! longer fits and the engine would fall back to slower on-demand
//! allocation. Past that point each memory gets an equal share of a fixed
//! budget instead, never less than the largest `memory_limit`; compiled
//! code then checks bounds explicitly, a small cost per memory access
//! that only such large pools pay.

use crate::config::SlotPages;

/// Address space all pooled linear memories of the daemon may reserve
/// together: half of a 47-bit address space, leaving the rest to stacks,
/// tables, the heap and the other engine.
const BUDGET: u64 = 64 << 40;
/// The reservation that lets compiled code skip bounds checks.
const FULL: u64 = 4 << 30;
/// wasmtime's default guard region after each memory.
const GUARD: u64 = 32 << 20;
/// WebAssembly's page size; reservations are whole pages.
const WASM_PAGE: u64 = 64 << 10;

/// The `memory_reservation` for a pool of `memories` linear memories of at
/// most `max_memory` bytes, on one of `engines` engines sharing the budget;
/// `None` when wasmtime's default fits.
#[must_use]
pub(super) fn memory_reservation(memories: u32, max_memory: usize, engines: u64) -> Option<u64> {
    let share = BUDGET / engines.max(1) / u64::from(memories.max(1));
    if share >= FULL + GUARD {
        return None;
    }
    let floor = u64::try_from(max_memory)
        .unwrap_or(u64::MAX)
        .next_multiple_of(WASM_PAGE);
    let fitted = share.saturating_sub(GUARD) / WASM_PAGE * WASM_PAGE;
    Some(fitted.clamp(floor, FULL))
}

/// A pool with a queue of more slots than this keeps nothing resident
/// between instances (counted per queue: many small queues adding up past
/// it are no sign of slow upstreams). Only job types that wait on slow
/// upstreams run this many attempts at once (at one core's ~10,000
/// webhook attempts a second, 8,192 in flight means upstreams answering in
/// about a second), and an attempt that waits that long does not feel what
/// giving its pages back costs: system calls and page faults again, ~16 µs
/// an attempt (a no-op job takes 2.5 times as long). Kept resident, every
/// slot a burst used would hold its pages for as long as the daemon runs:
/// about 50 KiB a slot, 515 MiB after 10,000 webhook attempts at once.
const WIDE_QUEUE: u32 = 8192;

/// What each pooled slot keeps resident, zeroed, between instances, so
/// that a reused slot's instance starts without page faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct KeepResident {
    /// Bytes at the start of each linear memory.
    pub(super) memory: usize,
    /// Bytes of each table.
    pub(super) table: usize,
    /// Bytes of each fiber stack.
    pub(super) stack: usize,
    /// Whether a fiber stack is reset at all as its attempt ends (wasmtime
    /// leaves it as it was unless told to zero it): what is not kept is
    /// then given back.
    pub(super) reset_stacks: bool,
}

/// What the slots of a pool whose widest queue takes `widest` slots keep
/// resident, as `[daemon] slot_pages` says (`auto`: see [`WIDE_QUEUE`]).
#[must_use]
pub(super) fn keep_resident(widest: u32, pages: SlotPages) -> KeepResident {
    let release = match pages {
        SlotPages::Auto => widest > WIDE_QUEUE,
        SlotPages::Keep => false,
        SlotPages::Release => true,
    };
    if release {
        KeepResident {
            memory: 0,
            table: 0,
            stack: 0,
            reset_stacks: true,
        }
    } else {
        KeepResident {
            memory: 2 << 20,
            table: 64 << 10,
            stack: 128 << 10,
            reset_stacks: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_queue_of_thousands_of_slots_makes_the_pool_give_pages_back() {
        let auto = |widest| keep_resident(widest, SlotPages::Auto);
        assert_eq!(auto(256).memory, 2 << 20);
        assert_eq!(auto(WIDE_QUEUE), auto(1));
        let large = auto(WIDE_QUEUE + 1);
        assert_eq!((large.memory, large.table, large.stack), (0, 0, 0));
        assert!(large.reset_stacks && !auto(256).reset_stacks);
        // What the config says wins over the size.
        assert_eq!(keep_resident(WIDE_QUEUE + 1, SlotPages::Keep), auto(1));
        assert_eq!(keep_resident(1, SlotPages::Release), large);
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn small_pools_keep_the_default_reservation() {
        assert_eq!(memory_reservation(256 * 8, 64 * MIB, 1), None);
        assert_eq!(memory_reservation(900 * 8, 64 * MIB, 2), None);
    }

    #[test]
    fn large_pools_share_the_budget_but_never_go_below_the_memory_limit() {
        let r = memory_reservation(10_000 * 8, 64 * MIB, 1).expect("shrunk");
        assert!((64 << 20..FULL).contains(&r), "{r}");
        assert_eq!(r % WASM_PAGE, 0);
        assert!((r + GUARD) * 80_000 <= BUDGET, "{r}");
        // Two engines (fuel) get half each.
        let half = memory_reservation(10_000 * 8, 64 * MIB, 2).expect("shrunk");
        assert!(half < r, "{half} vs {r}");
        // A limit above the fair share wins; the pool may then not fit
        // and the engine falls back to on-demand allocation.
        let big = memory_reservation(100_000 * 8, 512 * MIB, 1).expect("shrunk");
        assert_eq!(big, 512 << 20);
    }

    #[test]
    fn a_pool_of_ten_thousand_slots_is_reserved_with_and_without_fuel() {
        let rt = super::super::Runtime::new(&super::super::RuntimeSpec {
            slots: 10_000,
            widest: 10_000,
            slot_pages: SlotPages::Auto,
            max_memory: 64 * MIB,
            fuel: true,
            cache: None,
            perf_map: false,
        })
        .expect("engines");
        assert!(rt.pooled(), "fell back to on-demand allocation");
    }
}
