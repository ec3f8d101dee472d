//! Per-thread tuning of the allocator (jemalloc, chosen in `main.rs`).
//!
//! The process-wide options in `main.rs` keep every thread's cache small:
//! nothing over 1 KiB, and at most 32 freed objects of a size. About twenty
//! threads each caching more cost 14-15 MB of peak RSS (bench/README.md), most
//! of it in the database threads (SQLite's pages are 4 KiB allocations). The
//! request path, though, lives on the few HTTP workers, which allocate and
//! free the same objects for every request: small ones by the hundred, and
//! 1-32 KiB ones (read and write buffers, header maps, bodies). A worker whose
//! cache holds those reuses them without a trip to its arena and the arena's
//! lock: 11% less CPU per request for ~1 MB of peak RSS (bench/README.md).

/// The largest freed object an HTTP worker's cache keeps (jemalloc's own
/// default `tcache_max`).
const WORKER_CACHE_MAX_BYTES: usize = 32 * 1024;

/// How many freed objects of each size up to 1 KiB an HTTP worker's cache
/// keeps (jemalloc's own default, `tcache_nslots_small_max`), as jemalloc's
/// `thread.tcache.ncached_max.write` takes it: "first-last:count" in bytes.
const WORKER_SMALL_SLOTS: &std::ffi::CStr = c"0-1024:200";

/// Gives the calling thread jemalloc's default cache sizes
/// ([`WORKER_CACHE_MAX_BYTES`], [`WORKER_SMALL_SLOTS`]) instead of the
/// process's small ones. Called on each HTTP worker as it starts.
pub fn widen_worker_thread_cache() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // Failures leave the thread with the process's cache sizes, which is
        // only slower: a jemalloc without these controls, or thread caches
        // turned off (`MALLOC_CONF=tcache:false`).
        mallctl_write(c"thread.tcache.max", WORKER_CACHE_MAX_BYTES);
        mallctl_write(
            c"thread.tcache.ncached_max.write",
            WORKER_SMALL_SLOTS.as_ptr(),
        );
    }
}

/// Writes `value` to jemalloc's control `name`; whether it took it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn mallctl_write<T: Copy>(name: &std::ffi::CStr, mut value: T) -> bool {
    // SAFETY: each control written here takes a value of the type and size
    // given (a `size_t`, a pointer to a NUL-terminated string that outlives
    // the call); `value` outlives the call; no old value is asked for (null
    // pointers). These controls change only the calling thread's cache.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&raw mut value).cast(),
            std::mem::size_of::<T>(),
        )
    };
    status == 0
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    /// Reads a `size_t` control, passing `input` as its argument when given.
    fn mallctl_read(name: &std::ffi::CStr, input: Option<usize>) -> usize {
        let mut out = 0usize;
        let mut out_len = std::mem::size_of::<usize>();
        let mut argument = input.unwrap_or_default();
        let (argument_ptr, argument_len) = match input {
            Some(_) => ((&raw mut argument).cast(), std::mem::size_of::<usize>()),
            None => (std::ptr::null_mut(), 0),
        };
        // SAFETY: reads a `size_t` into `out` (its size in `out_len`), with a
        // `size_t` argument when given; all outlive the call.
        let status = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr(),
                (&raw mut out).cast(),
                &raw mut out_len,
                argument_ptr,
                argument_len,
            )
        };
        assert_eq!(status, 0, "{name:?} answers");
        out
    }

    /// The calling thread's cache limit, and how many 64-byte objects it keeps.
    fn cache_sizes() -> (usize, usize) {
        (
            mallctl_read(c"thread.tcache.max", None),
            mallctl_read(c"thread.tcache.ncached_max.read_sizeclass", Some(64)),
        )
    }

    /// Runs `f` on a new thread (a thread's cache is its own); its panic,
    /// a failed assertion, fails the test.
    fn on_new_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(f)
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    #[test]
    fn a_worker_thread_gets_the_default_cache_and_no_other_thread_changes() {
        let process_default = on_new_thread(cache_sizes);
        let widened = on_new_thread(|| {
            // As `main.rs`'s options leave every thread.
            assert!(mallctl_write(c"thread.tcache.max", 1024usize));
            assert!(mallctl_write(
                c"thread.tcache.ncached_max.write",
                c"0-1024:32".as_ptr()
            ));
            assert_eq!(cache_sizes(), (1024, 32));
            widen_worker_thread_cache();
            cache_sizes()
        });
        assert_eq!(widened, (WORKER_CACHE_MAX_BYTES, 200));
        assert_eq!(on_new_thread(cache_sizes), process_default);
    }
}
