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

#[cfg(test)]
mod tests {
    use super::*;

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
            max_memory: 64 * MIB,
            fuel: true,
            cache: None,
            perf_map: false,
        })
        .expect("engines");
        assert!(rt.pooled(), "fell back to on-demand allocation");
    }
}
