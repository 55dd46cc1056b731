//! The allocator of both binaries: mimalloc, returning freed memory at once.
//!
//! Tokenizing a corpus allocates and frees a few small buffers per word (`tokenizers` works
//! that way), and with glibc's malloc a third of `index build`'s samples on the KJV text were
//! in `malloc` and `free`. With mimalloc (built optimised, see the workspace's Cargo.toml) the
//! KJV text indexed in 0.71-0.77 s instead of 0.84-1.00 s and 20 M pre-tokenized ids in
//! 1.27-1.60 s instead of 1.52-1.85 s (alternating runs). mimalloc keeps freed memory for 10 ms
//! by default, which raised the peak of an 80 M-token index build from 1.47 GB to 1.72 GB;
//! returned at once, 1.54 GB, as fast. libtorch's own allocations are not Rust's and keep
//! glibc's malloc.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the allocator's options; the binaries call it first thing.
pub fn configure() {
    // mimalloc.h (v2 and v3) lists `mi_option_purge_delay` right before
    // `mi_option_use_numa_nodes`, the one of the two the binding names.
    let purge_delay = libmimalloc_sys::mi_option_use_numa_nodes - 1;
    // SAFETY: `mi_option_set` takes two integers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(purge_delay, 0) }
}
