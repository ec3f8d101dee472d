//! The `switchyard` binary: parses arguments and hands over to the library.

use clap::Parser;
use std::process::ExitCode;

/// jemalloc instead of glibc's malloc (measured in bench/README.md): with
/// glibc the two workers and the usage writer contended for two arenas (a
/// futex wait or wake for about every request), while jemalloc's per-thread
/// caches take most allocations and frees without a lock.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at its start (`MALLOC_CONF` in the
/// environment is read after them and can override any): an arena per CPU,
/// each thread allocating from the arena of the CPU it runs on, so two
/// threads rarely share one and the count follows the machine (two on the
/// bench machine; a fixed two measured the same there, but would be shared
/// by every worker on a larger one); thread caches kept small (32 objects of
/// a size, nothing over 1 KiB), since ~20 threads each holding the default
/// hundreds per size class cost 10-15 MB of RSS, while the speed is in the
/// few HTTP workers, which get the defaults back
/// (`switchyard::allocator`); free pages given back to the kernel after a
/// second instead of ten.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[unsafe(export_name = "malloc_conf")]
static MALLOC_CONF: &u8 = &b"percpu_arena:percpu,tcache_max:1024,tcache_nslots_small_max:32,\
dirty_decay_ms:1000,muzzy_decay_ms:0\0"[0];

fn main() -> ExitCode {
    let cli = switchyard::cli::Cli::parse();
    match switchyard::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("switchyard: {error:#}");
            ExitCode::FAILURE
        }
    }
}
