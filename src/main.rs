//! The `switchyard` binary: parses arguments and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = switchyard::cli::Cli::parse();
    match switchyard::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread that allocates under contention an arena of its
/// own; with ~20 threads (workers, arbiters, the database runtime) that cost
/// ~10 MiB of peak RSS for no measurable speed (bench/README.md). Two arenas
/// keep the gateway within its memory budget. Must run before any thread
/// starts, hence first in `main`.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called once, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
