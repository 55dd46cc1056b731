//! The allocator of both binaries: mimalloc.
//!
//! Tokenizing a corpus allocates and frees a few small buffers per word (`tokenizers` works
//! that way), and with glibc's malloc a third of `index build`'s samples on the KJV text were
//! in `malloc` and `free`. With mimalloc (built optimised, see the workspace's Cargo.toml) the
//! KJV text indexed in 0.71-0.77 s instead of 0.84-1.00 s and 20 M pre-tokenized ids in
//! 1.27-1.60 s instead of 1.52-1.85 s (alternating runs). libtorch's own allocations are not
//! Rust's and keep glibc's malloc.
//!
//! How long freed memory is kept before it goes back to the system is a trade. The suffix
//! sort's temporaries are large and short-lived: kept 10 ms (mimalloc's default), they raised
//! an 80 M-token build's peak from 1.54 GB to 1.66-1.72 GB (glibc: 1.47 GB) at no gain in
//! speed, so memory is returned at once by default. Tokenizing reallocates the same large
//! buffers for every document, and returning them at once makes each reuse fault its pages in
//! again: the KJV text took 0.73-0.81 s so and 0.67-0.68 s with 10 ms, so an index of a text
//! corpus is built with the delay (pre-tokenized corpora, the large ones, without).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sets the allocator's options; the binaries call it first thing.
pub fn configure() {
    keep_freed_memory(false);
}

/// Whether freed memory is kept for 10 ms before it is returned to the system (else at once).
pub fn keep_freed_memory(keep: bool) {
    // mimalloc.h (v2 and v3) lists `mi_option_purge_delay` right before
    // `mi_option_use_numa_nodes`, the one of the two the binding names.
    let purge_delay = libmimalloc_sys::mi_option_use_numa_nodes - 1;
    // SAFETY: `mi_option_set` takes two integers and may be called at any time from any thread.
    unsafe { libmimalloc_sys::mi_option_set(purge_delay, if keep { 10 } else { 0 }) }
}
