//! The `ward` binary: see [`ward::cli`].

// Every attempt builds and drops a store, an instance and a task: glibc's
// malloc spent a quarter of the daemon's time on them (and on consolidating
// its fast bins); jemalloc's thread caches make that a fraction.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    ward::cli::main()
}
