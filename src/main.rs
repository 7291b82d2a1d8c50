//! The `syncproof` binary: parse the command line, run it, return an exit code.

// mimalloc instead of the system allocator: evaluation allocates millions of
// small, short-lived values across threads, where glibc's malloc spent about a
// quarter of the run (measured with `perf` on the W1 workload, see
// docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> syncproof::cli::ExitCode {
    syncproof::cli::main()
}
