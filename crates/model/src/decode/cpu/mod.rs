//! The CPU fast paths of the samplers' steps, behind one boundary.
//!
//! On the CPU the device memory is the host's: where one pass over the logit rows libtorch
//! already holds beats a chain of tensor operations (each a pass and an allocation), the loop
//! reads the rows in place here. Every fast path gives exactly what its tensor path gives
//! (values, indices, float32 roundings; `tests.rs` and the engine's tests compare them), and
//! returns `None` where it does not apply (not a contiguous float32 CPU tensor, NaNs), so the
//! caller takes the tensor path.
//!
//! Each fast path is a [`FastPath`]: a step asks [`enabled`] before taking it and calls
//! [`ran`] when it did, so that tests can assert that a comparison of host and tensor paths did
//! not pass by both sides taking the same path ([`runs_on_this_thread`], and
//! [`tensor_paths_only`] for the tensor side), and benchmarks can switch a path off
//! (`COLLAPSE_PROBE_CPU_FAST_PATHS=off`, or a comma-separated list of paths to switch off) to
//! measure what it saves (docs/performance.md).

mod draw;
mod rows;
mod sort;
pub(crate) mod sparse;
#[cfg(test)]
mod tests;
mod top;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tch::{Device, Kind, Tensor};

pub(crate) use self::draw::{inverse_cdf, inverse_cdf_row, uniforms};
pub(crate) use self::rows::build_rows;
pub(crate) use self::top::TopSelect;

/// The fast paths, by what they replace. Each is kept because it saves at least 10 % of a
/// whole decode on the 60M-parameter bench model (docs/performance.md, "CPU fast paths";
/// `scripts/bench-fast-paths.sh`); the others measured were removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// Dream's categorical draw by inverse CDF over float64 cumulative sums (`draw.rs`),
    /// instead of `multinomial`'s `V` exponentials per row.
    InverseCdf,
    /// Dream's top-k filtered softmax and entropy on the kept entries only (`sparse.rs`),
    /// finished on the host.
    DreamSupport,
}

const PATHS: [(FastPath, &str); 2] = [
    (FastPath::InverseCdf, "inverse_cdf"),
    (FastPath::DreamSupport, "dream_support"),
];

/// The environment variable that switches fast paths off, for benchmarks.
pub const FAST_PATHS_ENV: &str = "COLLAPSE_PROBE_CPU_FAST_PATHS";

static RUNS: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

thread_local! {
    /// Runs of each path on this thread, and whether this thread takes tensor paths only.
    static THREAD_RUNS: [Cell<usize>; 2] = const { [const { Cell::new(0) }; 2] };
    static TENSOR_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every fast path switched off on this thread (decoding runs on its caller's
/// thread): the tensor paths a fast path is compared with.
pub fn tensor_paths_only<R>(f: impl FnOnce() -> R) -> R {
    let before = TENSOR_ONLY.with(|t| t.replace(true));
    let out = f();
    TENSOR_ONLY.with(|t| t.set(before));
    out
}

/// How many times `path` has run on this thread (tests that run beside others compare it).
pub fn runs_on_this_thread(path: FastPath) -> usize {
    THREAD_RUNS.with(|r| r[path.index()].get())
}

impl FastPath {
    fn index(self) -> usize {
        PATHS
            .iter()
            .position(|(p, _)| *p == self)
            .expect("every path is listed")
    }

    /// The name `COLLAPSE_PROBE_CPU_FAST_PATHS` uses.
    pub fn name(self) -> &'static str {
        PATHS[self.index()].1
    }

    /// Every fast path.
    pub fn all() -> impl Iterator<Item = FastPath> {
        PATHS.iter().map(|(p, _)| *p)
    }
}

/// Whether `path` may run: not switched off by [`FAST_PATHS_ENV`] (read once per process) nor
/// by [`tensor_paths_only`].
pub fn enabled(path: FastPath) -> bool {
    if TENSOR_ONLY.with(Cell::get) {
        return false;
    }
    static OFF: OnceLock<Vec<FastPath>> = OnceLock::new();
    let off = OFF.get_or_init(|| match std::env::var(FAST_PATHS_ENV) {
        Ok(v) if v.trim() == "off" => FastPath::all().collect(),
        Ok(v) => v
            .split(',')
            .filter(|name| !name.trim().is_empty())
            .filter_map(|name| {
                let found = PATHS.iter().find(|(_, n)| *n == name.trim());
                if found.is_none() {
                    // A benchmark knob: a misspelt name would silently measure nothing.
                    eprintln!(
                        "warning: {FAST_PATHS_ENV}: no fast path is called `{}` (known: {}, or `off`)",
                        name.trim(),
                        PATHS.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                    );
                }
                found
            })
            .map(|(p, _)| *p)
            .collect(),
        Err(_) => Vec::new(),
    });
    !off.contains(&path)
}

/// Records that `path` ran.
pub(crate) fn ran(path: FastPath) {
    RUNS[path.index()].fetch_add(1, Ordering::Relaxed);
    THREAD_RUNS.with(|r| r[path.index()].set(r[path.index()].get() + 1));
}

/// How many times `path` has run in this process (tests compare it before and after).
pub fn runs(path: FastPath) -> usize {
    RUNS[path.index()].load(Ordering::Relaxed)
}

/// The elements of a contiguous float32 CPU tensor, borrowed; `None` for any other tensor.
///
/// # Safety
///
/// The slice aliases `x`'s storage, which libtorch can write through any tensor that shares
/// it (`x` itself, a view, a shallow clone). The caller must not run an in-place operation on
/// such a tensor, or hand one to code that might, while the slice is alive. The borrow of `x`
/// keeps the storage itself alive.
pub(crate) unsafe fn cpu_f32(x: &Tensor) -> Option<&[f32]> {
    if x.device() != Device::Cpu || x.kind() != Kind::Float || !x.is_contiguous() {
        return None;
    }
    let len = x.numel();
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: `x` is a contiguous float32 CPU tensor of `len` elements that outlives the
    // slice; the caller guarantees no write through its storage while the slice is in use.
    Some(unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, len) })
}
