//! Host-side work on logit rows of a CPU model: one pass over memory libtorch already holds,
//! where the equivalent chain of tensor operations would make several (and allocate for each).
//!
//! Every function here gives exactly what its tensor counterpart in `engine.rs` gives (tests
//! compare them), and returns `None` where it does not apply (not a contiguous float32 CPU
//! tensor, NaNs), so that the caller takes the tensor path.

use tch::{Device, Kind, Tensor};

use crate::error::ProbeError;

/// The elements of a contiguous float32 CPU tensor, borrowed.
pub(super) fn cpu_f32(x: &Tensor) -> Option<&[f32]> {
    if x.device() != Device::Cpu || x.kind() != Kind::Float || !x.is_contiguous() {
        return None;
    }
    let len = x.numel();
    if len == 0 {
        return Some(&[]);
    }
    // SAFETY: `x` is a contiguous float32 CPU tensor of `len` elements; the slice borrows `x`,
    // which keeps the storage alive, and nothing writes to it while the slice is in use (the
    // callers only read tensors they or the model produced).
    Some(unsafe { std::slice::from_raw_parts(x.data_ptr() as *const f32, len) })
}

/// A new float32 CPU tensor `[n, v]`, filled row by row by `fill(row index, row)`.
///
/// Single-threaded on purpose: libtorch's OpenMP workers keep spinning on the other cores for a
/// while after each operation, and measured, a second host thread gained nothing.
pub(super) fn build_rows(
    n: usize,
    v: usize,
    mut fill: impl FnMut(usize, &mut [f32]),
) -> Result<Tensor, ProbeError> {
    let out = Tensor::f_empty([n as i64, v as i64], (Kind::Float, Device::Cpu))?;
    if n == 0 || v == 0 {
        return Ok(out);
    }
    // SAFETY: `out` is a new contiguous float32 CPU tensor of `n * v` elements that nothing else
    // references until this function returns it.
    let data = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n * v) };
    for (i, row) in data.chunks_mut(v).enumerate() {
        fill(i, row);
    }
    Ok(out)
}

/// [`select_rows`]' result: the rows, and their argmax when asked for and NaN-free.
pub(super) type SelectedRows = (Tensor, Option<Vec<i64>>);

/// The logit rows `rows` of `flat` (`[N, V]`), as `index_select` followed by `index_fill_` of
/// `forbidden` with -inf would give them, and when `want_argmax` each row's `argmax` (the first
/// maximum), in one pass over memory. With `guided = Some((half, scale))`, `flat` holds the
/// conditional rows then the unconditional ones (`half` each) and each row is classifier-free
/// guidance's `un + (cond - un) * scale`, with the three float32 roundings of libtorch's `sub`,
/// `mul` and `add` (no fused multiply-add). The argmax is `None` when a row holds a NaN.
pub(super) fn select_rows(
    flat: &Tensor,
    rows: &[i64],
    guided: Option<(usize, f64)>,
    forbidden: &[i64],
    want_argmax: bool,
) -> Result<Option<SelectedRows>, ProbeError> {
    let Some(all) = cpu_f32(flat) else {
        return Ok(None);
    };
    let v = flat.size()[1] as usize;
    let mut argmax = want_argmax.then(|| Vec::with_capacity(rows.len()));
    let out = build_rows(rows.len(), v, |i, out| {
        let r = rows[i] as usize;
        let cond = &all[r * v..(r + 1) * v];
        match guided {
            Some((half, scale)) => {
                let scale = scale as f32;
                let un = &all[(half + r) * v..(half + r + 1) * v];
                for ((o, &c), &u) in out.iter_mut().zip(cond).zip(un) {
                    *o = (c - u) * scale + u;
                }
            }
            None => out.copy_from_slice(cond),
        }
        for &id in forbidden {
            out[id as usize] = f32::NEG_INFINITY;
        }
        if let Some(found) = &mut argmax {
            match first_argmax(out) {
                Some(j) => found.push(j as i64),
                None => argmax = None,
            }
        }
    })?;
    Ok(Some((out, argmax)))
}

/// The index of the first maximum of `row` (as libtorch's `argmax`), `None` if it holds a NaN.
fn first_argmax(row: &[f32]) -> Option<usize> {
    let lanes = row.chunks_exact(16);
    let tail = lanes.remainder();
    let mut nan = tail.iter().any(|x| x.is_nan());
    let mut max = tail
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    let (block, has_nan) = block_max(&row[..row.len() - tail.len()]);
    nan |= has_nan;
    if nan {
        return None;
    }
    if block > max {
        max = block;
    }
    // `==` also finds a -0.0 that comes before a maximum of 0.0, as `argmax` does. Groups of 16
    // are tested whole (vectorised), then the first matching one element by element.
    let (g, group) = row
        .chunks(16)
        .enumerate()
        .find(|(_, c)| c.iter().fold(0u32, |a, &x| a | u32::from(x == max)) != 0)?;
    Some(g * 16 + group.iter().position(|&x| x == max)?)
}

/// Per row of a `[n, V]` float32 CPU tensor, its `m` largest values in descending order with
/// their indices (among equal values, the lower index first): `(values, indices)`, both
/// `[n * m]` row-major. `None` off CPU/float32 or when a row holds a NaN.
pub(super) fn top_m(x: &Tensor, m: usize) -> Option<(Vec<f32>, Vec<i64>)> {
    let data = cpu_f32(x)?;
    let v = *x.size().last()? as usize;
    if m == 0 || v == 0 || m > v {
        return None;
    }
    let n = data.len() / v;
    let (mut vals, mut idx) = (Vec::with_capacity(n * m), Vec::with_capacity(n * m));
    let mut select = TopSelect::default();
    for row in data.chunks(v) {
        let found = select.select(row, m, &[])?;
        found.sort_unstable();
        for &key in found.iter() {
            let i = (key & 0xffff_ffff) as usize;
            vals.push(row[i]);
            idx.push(i as i64);
        }
    }
    Some((vals, idx))
}

/// The m largest elements of rows, with reused buffers.
#[derive(Default)]
pub(super) struct TopSelect {
    maxima: Vec<u32>,
    /// The candidates of the last row: indices in ascending order, and their [`desc_key`]s.
    hits: Vec<u32>,
    keys: Vec<u32>,
    scratch: Vec<u32>,
    block: Vec<u32>,
    found: Vec<u64>,
    ordered: Vec<u32>,
}

const GROUP: usize = 16;

/// [`TopSelect::top_in_order`]'s result for one row.
pub(super) struct TopInOrder<'a> {
    /// The indices of the k largest elements, ascending.
    pub idx: &'a [u32],
    /// The largest, the k-th largest and the (k + 1)-th largest value.
    pub top: f32,
    pub kth: f32,
    pub next: f32,
}

impl TopSelect {
    /// The `m` largest non-banned elements of `row` (NaN-free, else `None`) as keys
    /// `desc_key(value) << 32 | index`, the `m - 1` smallest keys first and the m-th at
    /// `m - 1` (ascending key is descending value, then ascending index: a total order).
    /// `banned` is empty or has one flag per element.
    ///
    /// Every element at or above a `floor` is collected, which holds the m largest when at
    /// least `m` are: the floor is the m-th largest of the maxima of `V / 16` disjoint sets of
    /// elements (lane `j` of 16 consecutive 16-element groups), at most the m-th largest
    /// element.
    pub(super) fn select(&mut self, row: &[f32], m: usize, banned: &[bool]) -> Option<&mut [u64]> {
        if !self.candidates(row, m, banned)? {
            return None;
        }
        self.found.clear();
        self.found.extend(
            self.keys
                .iter()
                .zip(&self.hits)
                .map(|(&k, &i)| (k as u64) << 32 | i as u64),
        );
        self.found.select_nth_unstable(m - 1);
        Some(&mut self.found[..m])
    }

    /// The `k` largest non-banned elements of `row` in ascending index order, with the
    /// largest, the k-th and the (k + 1)-th largest values: what a top-k filter keeps, without
    /// sorting it. `None` when the row holds a NaN, has fewer than `k + 1` non-banned elements,
    /// or when the k-th and the (k + 1)-th largest are the same value (a tie, which makes the k
    /// largest ambiguous).
    ///
    /// `floor_hint`, when finite, is tried as the floor first (see [`TopSelect::select`]): any
    /// value with at least k + 1 elements at or above it is one, and a good guess (such as the
    /// same position's (k + 1)-th largest logit at the previous decoding step, a little lowered)
    /// saves the pass that computes it. A guess that leaves fewer falls back to that pass.
    pub(super) fn top_in_order(
        &mut self,
        row: &[f32],
        k: usize,
        banned: &[bool],
        floor_hint: f32,
    ) -> Option<TopInOrder<'_>> {
        if k == 0 {
            return None;
        }
        let hinted =
            floor_hint.is_finite() && self.collect(row, k + 1, banned, floor_hint, true)?;
        if !hinted && !self.candidates(row, k + 1, banned)? {
            return None;
        }
        // Ascending keys are descending values: the (k + 1)-th smallest key is the (k + 1)-th
        // largest value, and the keys below it are the k largest.
        let next = nth_smallest(&self.keys, k, &mut self.scratch);
        let (mut kth, mut top) = (0u32, u32::MAX);
        self.ordered.clear();
        // The candidates come in index order.
        for (&i, &key) in self.hits.iter().zip(&self.keys) {
            if key < next {
                kth = kth.max(key);
                top = top.min(key);
                self.ordered.push(i);
            }
        }
        if self.ordered.len() != k {
            return None;
        }
        Some(TopInOrder {
            idx: &self.ordered,
            top: from_desc_key(top),
            kth: from_desc_key(kth),
            next: from_desc_key(next),
        })
    }

    /// Collects the candidates of `row` for its `m` largest elements (see [`TopSelect::select`]);
    /// whether there are at least `m`, `None` when the row holds a NaN.
    fn candidates(&mut self, row: &[f32], m: usize, banned: &[bool]) -> Option<bool> {
        let floor = self.set_floor(row, m, banned)?;
        self.collect(row, m, banned, floor, false)
    }

    /// The m-th largest of the set maxima (see [`TopSelect::select`]), or -inf where that is no
    /// bound (fewer sets than `m`, or banned elements, which can be a set's maximum). `None`
    /// when the vectorised pass finds a NaN (the portable one leaves that to `collect`).
    fn set_floor(&mut self, row: &[f32], m: usize, banned: &[bool]) -> Option<f32> {
        let groups = row.len() / GROUP;
        self.maxima.clear();
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if simd::avx512() {
            // SAFETY: the CPU has AVX-512F and AVX-512VL (checked above).
            if unsafe { simd::set_maxima(&row[..groups * GROUP], &mut self.maxima) } {
                return None;
            }
            done = groups * GROUP;
        }
        for chunk in row[done..groups * GROUP].chunks(GROUP * GROUP) {
            let mut h = [f32::NEG_INFINITY; GROUP];
            for g in chunk.chunks_exact(GROUP) {
                let g: &[f32; GROUP] = g.try_into().expect("chunks_exact");
                for i in 0..GROUP {
                    // The vector max instruction (NaNs are caught by `collect`).
                    h[i] = if g[i] > h[i] { g[i] } else { h[i] };
                }
            }
            self.maxima.extend(h.iter().map(|&x| desc_key(x)));
        }
        Some(if self.maxima.len() >= m && banned.is_empty() {
            from_desc_key(nth_smallest(&self.maxima, m - 1, &mut self.scratch))
        } else {
            f32::NEG_INFINITY
        })
    }

    /// Collects into `hits` and `keys`, in index order, every non-banned element `>= floor`
    /// (cut back to the `m` largest whenever `4m` are buffered, which raises the floor);
    /// whether at least `m` were found. `None` when the row holds a NaN; the vectorised scan
    /// looks for NaNs only when `check_nan` (`set_floor`'s pass does otherwise).
    fn collect(
        &mut self,
        row: &[f32],
        m: usize,
        banned: &[bool],
        floor: f32,
        check_nan: bool,
    ) -> Option<bool> {
        let cap = 4 * m.max(GROUP);
        let mut floor = floor;
        self.hits.clear();
        self.keys.clear();
        let groups = row.len() / GROUP;
        let mut from = 0;
        #[cfg(target_arch = "x86_64")]
        if simd::avx512() && banned.is_empty() {
            // Blocks of 16 whole groups; a tail shorter than a group is left to the loop below.
            let mut block = std::mem::take(&mut self.block);
            block.resize(GROUP * GROUP + GROUP, 0);
            while from < groups * GROUP {
                let to = (from + GROUP * GROUP).min(groups * GROUP);
                // SAFETY: the CPU has AVX-512F; `block` has room for every element of the block
                // plus a full vector.
                let (count, nan) = unsafe {
                    if check_nan {
                        simd::collect_ge::<true>(&row[from..to], from as u32, floor, &mut block)
                    } else {
                        simd::collect_ge::<false>(&row[from..to], from as u32, floor, &mut block)
                    }
                };
                if nan {
                    return None;
                }
                self.hits.extend_from_slice(&block[..count]);
                self.keys
                    .extend(block[..count].iter().map(|&i| desc_key(row[i as usize])));
                if self.hits.len() >= cap {
                    floor = self.cut_back(m);
                }
                from = to;
            }
            self.block = block;
        }
        for (g, group) in row[from..].chunks(GROUP).enumerate() {
            let at = from + g * GROUP;
            // Locals, so that the test is vectorised; NaNs are flagged too.
            let f = floor;
            let mut hit = 0u32;
            for &x in group {
                hit |= u32::from(x >= f) | u32::from(x.is_nan());
            }
            if hit == 0 {
                continue;
            }
            for (j, &x) in group.iter().enumerate() {
                if x.is_nan() {
                    return None;
                }
                if x >= f && (banned.is_empty() || !banned[at + j]) {
                    self.hits.push((at + j) as u32);
                    self.keys.push(desc_key(x));
                }
            }
            if self.hits.len() >= cap {
                floor = self.cut_back(m);
            }
        }
        Some(self.hits.len() >= m)
    }

    /// Keeps (in order) only the candidates at or above the m-th largest; returns it.
    fn cut_back(&mut self, m: usize) -> f32 {
        let mth = nth_smallest(&self.keys, m - 1, &mut self.scratch);
        let mut kept = 0;
        for j in 0..self.keys.len() {
            if self.keys[j] <= mth {
                self.keys[kept] = self.keys[j];
                self.hits[kept] = self.hits[j];
                kept += 1;
            }
        }
        self.keys.truncate(kept);
        self.hits.truncate(kept);
        from_desc_key(mth)
    }
}

/// The `n`-th smallest (from 0) of `keys` (`n < keys.len()`); `scratch` is reused.
fn nth_smallest(keys: &[u32], n: usize, scratch: &mut Vec<u32>) -> u32 {
    scratch.clear();
    scratch.extend_from_slice(keys);
    *scratch.select_nth_unstable(n).1
}

/// AVX-512 versions of [`TopSelect`]'s two passes, chosen at run time (the build targets
/// baseline x86-64): 8 or 16 floats per instruction, and the candidate indices written with
/// the compress instruction instead of a branch per element.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::GROUP;

    /// Tests clear it to run the portable loops on an AVX-512 machine too.
    #[cfg(test)]
    pub(super) static ALLOWED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(true);

    pub(super) fn avx512() -> bool {
        #[cfg(test)]
        if !ALLOWED.load(std::sync::atomic::Ordering::Relaxed) {
            return false;
        }
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }

    /// Appends to `maxima` the [`desc_key`](super::desc_key)s of the set maxima of `row` (a
    /// multiple of 16 long): per block of up to 16 groups of 16, the lane-wise maximum. Returns
    /// whether `row` holds a NaN.
    ///
    /// The NaN test is a vector compare and OR, which the CPU can issue on more ports than a
    /// compare into a mask register; `collect_ge` then needs none.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512VL.
    #[target_feature(enable = "avx2,avx512f,avx512vl")]
    pub(super) unsafe fn set_maxima(row: &[f32], maxima: &mut Vec<u32>) -> bool {
        let mut nan = _mm256_setzero_ps();
        for block in row.chunks(GROUP * GROUP) {
            let (mut lo, mut hi) = (
                _mm256_set1_ps(f32::NEG_INFINITY),
                _mm256_set1_ps(f32::NEG_INFINITY),
            );
            for g in block.chunks_exact(GROUP) {
                // SAFETY: `g` holds 16 floats. `max_ps` returns its second operand when one is
                // NaN, so NaNs are skipped by the maxima and flagged separately.
                unsafe {
                    let (a, b) = (
                        _mm256_loadu_ps(g.as_ptr()),
                        _mm256_loadu_ps(g.as_ptr().add(8)),
                    );
                    lo = _mm256_max_ps(a, lo);
                    hi = _mm256_max_ps(b, hi);
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(a, b));
                }
            }
            let mut out = [0u32; GROUP];
            for (half, h) in [lo, hi].into_iter().enumerate() {
                // SAFETY: `out[8 * half..]` holds 8 u32.
                unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(8 * half).cast(), desc_keys(h)) };
            }
            maxima.extend_from_slice(&out);
        }
        _mm256_movemask_ps(nan) != 0
    }

    /// [`desc_key`](super::desc_key) of 8 floats.
    #[target_feature(enable = "avx2")]
    fn desc_keys(x: __m256) -> __m256i {
        // Flip the magnitude bits of non-negative values.
        let bits = _mm256_castps_si256(x);
        let sign = _mm256_srai_epi32::<31>(bits);
        _mm256_xor_si256(
            bits,
            _mm256_andnot_si256(sign, _mm256_set1_epi32(0x7fff_ffff)),
        )
    }

    /// Writes to the front of `hits` the indices (`base` + offset) of the elements of `block`
    /// (a multiple of 16 long) that are `>= floor`, in ascending order; returns their count and,
    /// when `NAN`, whether `block` holds a NaN (else false: the caller has checked).
    ///
    /// # Safety
    /// The CPU must have AVX-512F, and `hits` must have room for `block.len() + 16` indices.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn collect_ge<const NAN: bool>(
        block: &[f32],
        base: u32,
        floor: f32,
        hits: &mut [u32],
    ) -> (usize, bool) {
        debug_assert!(hits.len() >= block.len() + GROUP);
        let f = _mm512_set1_ps(floor);
        let step = _mm512_set1_epi32(GROUP as i32);
        let mut idx = _mm512_add_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(base as i32),
        );
        let (mut at, mut nan) = (0usize, 0u16);
        for g in block.chunks_exact(GROUP) {
            // SAFETY: `g` holds 16 floats; `hits[at..at + 16]` is in bounds (`at` counts at most
            // the elements before this group).
            unsafe {
                let x = _mm512_loadu_ps(g.as_ptr());
                if NAN {
                    nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                }
                let k = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, f);
                // Compressing into a register and storing the whole vector is much faster than
                // the compress-to-memory form on Intel cores.
                _mm512_storeu_si512(
                    hits.as_mut_ptr().add(at).cast(),
                    _mm512_maskz_compress_epi32(k, idx),
                );
                at += k.count_ones() as usize;
            }
            idx = _mm512_add_epi32(idx, step);
        }
        (at, nan != 0)
    }
}

/// Sorts `row` (no NaNs) in descending order: an LSD radix sort on [`desc_key`]s, with the four
/// byte histograms counted in one pass and the byte positions where every key agrees skipped
/// (logits of one row usually share their top byte). `keys` and `scratch` are reused buffers.
pub(super) fn sort_descending(row: &mut [f32], keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
    let n = row.len();
    let mut hist = [[0u32; 256]; 4];
    keys.clear();
    keys.extend(row.iter().map(|&x| {
        let k = desc_key(x);
        for (d, h) in hist.iter_mut().enumerate() {
            h[(k >> (8 * d)) as usize & 0xff] += 1;
        }
        k
    }));
    scratch.clear();
    scratch.resize(n, 0);
    for (d, h) in hist.iter().enumerate() {
        if h.iter().any(|&c| c as usize == n) {
            continue;
        }
        let mut at = [0usize; 256];
        for b in 1..256 {
            at[b] = at[b - 1] + h[b - 1] as usize;
        }
        for &k in keys.iter() {
            let b = (k >> (8 * d)) as usize & 0xff;
            scratch[at[b]] = k;
            at[b] += 1;
        }
        std::mem::swap(keys, scratch);
    }
    for (x, &k) in row.iter_mut().zip(keys.iter()) {
        *x = from_desc_key(k);
    }
}

/// `masked_fill(x < threshold[row], fill)` of a `[n, V]` float32 CPU tensor, in one pass;
/// `None` off CPU/float32.
pub(super) fn fill_below(
    x: &Tensor,
    thresholds: &[f32],
    fill: f32,
) -> Result<Option<Tensor>, ProbeError> {
    let Some(all) = cpu_f32(x) else {
        return Ok(None);
    };
    let v = x.size()[1] as usize;
    let out = build_rows(thresholds.len(), v, move |r, out| {
        // Locals, so that the compiler keeps them in registers and emits a vector select
        // (read through the closure's captures, they were reloaded and branched on per element).
        let (t, f) = (thresholds[r], fill);
        for (o, &y) in out.iter_mut().zip(&all[r * v..(r + 1) * v]) {
            *o = if y < t { f } else { y };
        }
    })?;
    Ok(Some(out))
}

/// An order-reversing integer key of a non-NaN float: larger values get smaller keys (`-0.0`
/// sorts just after `0.0`, which compare equal as floats).
fn desc_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 0 {
        !b & 0x7fff_ffff
    } else {
        b
    }
}

/// The inverse of [`desc_key`].
pub(super) fn from_desc_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 0 { !k & 0x7fff_ffff } else { k })
}

/// The largest of a block of values (a multiple of 16 long) and whether any is NaN, with
/// lane-wise operations on 16 lanes (which vectorise; `if x > y { x } else { y }` is the
/// vector `max` instruction, where `f32::max` would add NaN handling that the separate check
/// makes unnecessary).
fn block_max(b: &[f32]) -> (f32, bool) {
    let max = |x: f32, y: f32| if x > y { x } else { y };
    let mut h = [f32::NEG_INFINITY; 16];
    let mut nan = [false; 16];
    for lanes in b.chunks_exact(16) {
        let lanes: &[f32; 16] = lanes.try_into().expect("chunks_exact");
        for i in 0..16 {
            h[i] = max(h[i], lanes[i]);
            nan[i] |= lanes[i].is_nan();
        }
    }
    let mut w = 16;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            h[i] = max(h[i], h[i + w]);
        }
    }
    (h[0], nan.iter().any(|&x| x))
}

/// Per row of a `[n, V]` float32 CPU tensor of probabilities and its uniform draw `u`, the
/// count of float64 cumulative sums below `(1 - u)` times the row's total, capped at `V - 1`:
/// `(cumsum(p, float64) < (1 - u) * total).sum()` as `Ctx::dream_sample` computes it with
/// tensors: one sequential float64 pass (as libtorch's `cumsum`) and a bisection. `None` off
/// CPU/float32 or when a row's total is not finite.
pub(super) fn inverse_cdf(probs: &Tensor, u: &[f64]) -> Option<Vec<i64>> {
    let rows = cpu_f32(probs)?;
    let v = *probs.size().last()? as usize;
    if v == 0 {
        return None;
    }
    let mut cum = Vec::with_capacity(v);
    rows.chunks(v)
        .zip(u)
        .map(|(row, &u)| inverse_cdf_row(row, u, &mut cum).map(|j| j as i64))
        .collect()
}

/// [`inverse_cdf`] of one row of probabilities (non-empty): the count of its float64 cumulative
/// sums below `(1 - u)` times its total, capped at the last index; `None` when the total is not
/// finite. `cum` is a reused buffer.
pub(super) fn inverse_cdf_row(row: &[f32], u: f64, cum: &mut Vec<f64>) -> Option<usize> {
    cum.clear();
    let mut acc = 0f64;
    cum.extend(row.iter().map(|&p| {
        acc += p as f64;
        acc
    }));
    if !acc.is_finite() {
        return None;
    }
    let target = (1.0 - u) * acc;
    // The cumulative sums never decrease: the count below the target is found by bisection.
    Some(cum.partition_point(|&c| c < target).min(row.len() - 1))
}

/// `n` uniform float64 draws in `[0, 1)` with 53 random bits each, from a generator seeded by
/// `seed` (SplitMix64: fast, and statistically ample for sampling).
pub(super) fn uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
        .collect()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_m_is_topk() {
        each_path(top_m_is_topk_on_this_path);
    }

    /// Runs `test` with the AVX-512 loops (where the CPU has them) and with the portable ones.
    fn each_path(test: fn()) {
        test();
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::atomic::Ordering;
            simd::ALLOWED.store(false, Ordering::Relaxed);
            let result = std::panic::catch_unwind(test);
            simd::ALLOWED.store(true, Ordering::Relaxed);
            if let Err(e) = result {
                std::panic::resume_unwind(e);
            }
        }
    }

    fn top_m_is_topk_on_this_path() {
        tch::manual_seed(7);
        for (n, v, m) in [
            (4, 100, 1),
            (3, 8192, 51),
            (5, 64, 64),
            (2, 17, 5),
            (3, 2048, 51),
            (2, 20000, 51),
        ] {
            let x = Tensor::randn([n, v], (Kind::Float, Device::Cpu));
            let (vals, idx) = top_m(&x, m as usize).unwrap();
            let (tv, ti) = x.topk(m, -1, true, true);
            assert_eq!(
                vals,
                Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap(),
                "{n}x{v} top {m}"
            );
            assert_eq!(
                idx,
                Vec::<i64>::try_from(&ti.flatten(0, -1)).unwrap(),
                "{n}x{v} top {m}"
            );
        }
        // Ties: the values match topk's, and equal values come lowest index first.
        let tied = Tensor::randint(4, [6, 300], (Kind::Float, Device::Cpu));
        let (vals, idx) = top_m(&tied, 20).unwrap();
        let (tv, _) = tied.topk(20, -1, true, true);
        assert_eq!(vals, Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap());
        let rows = Vec::<f32>::try_from(&tied.flatten(0, -1)).unwrap();
        for (r, (vs, is)) in vals.chunks(20).zip(idx.chunks(20)).enumerate() {
            for j in 0..20 {
                assert_eq!(rows[r * 300 + is[j] as usize], vs[j]);
                if j > 0 && vs[j] == vs[j - 1] {
                    assert!(is[j] > is[j - 1]);
                }
            }
        }
        let with_inf = tied.index_fill(1, &Tensor::from_slice(&[3i64, 250]), f64::INFINITY);
        assert_eq!(top_m(&with_inf, 2).unwrap().1[..2], [3, 250]);
        // A NaN in the tail after the last whole group, and one inside the groups.
        for at in [299i64, 5] {
            let with_nan = tied.index_fill(1, &Tensor::from_slice(&[at]), f64::NAN);
            assert!(top_m(&with_nan, 3).is_none());
        }
    }

    #[test]
    fn top_in_order_is_topk_by_index() {
        each_path(top_in_order_on_this_path);
    }

    fn top_in_order_on_this_path() {
        tch::manual_seed(9);
        let mut select = TopSelect::default();
        for (n, v, k) in [
            (3usize, 2048usize, 50usize),
            (2, 300, 7),
            (2, 17, 1),
            (3, 4100, 50),
            (2, 40000, 50),
            (4, 64, 40),
        ] {
            let x = Tensor::randn([n as i64, v as i64], (Kind::Float, Device::Cpu)) * 3.0;
            let (tv, ti) = x.topk(k as i64 + 1, -1, true, true);
            let (tv, ti) = (
                Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap(),
                Vec::<i64>::try_from(&ti.flatten(0, -1)).unwrap(),
            );
            let rows = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
            for r in 0..n {
                let at = |j: usize| tv[r * (k + 1) + j];
                let mut want: Vec<u32> = ti[r * (k + 1)..r * (k + 1) + k]
                    .iter()
                    .map(|&i| i as u32)
                    .collect();
                want.sort_unstable();
                // No floor hint, an exact one, one too high (fewer than k + 1 above it: the
                // computed floor is used), and one far too low (the candidates are cut back).
                for hint in [f32::NAN, at(k), at(k - 1), at(0) + 1.0, at(k) - 100.0] {
                    let top = select
                        .top_in_order(&rows[r * v..(r + 1) * v], k, &[], hint)
                        .expect("untied random rows");
                    assert_eq!(top.idx, want, "{v} top {k}, hint {hint}");
                    assert_eq!(
                        (top.top, top.kth, top.next),
                        (at(0), at(k - 1), at(k)),
                        "{v} top {k}, hint {hint}"
                    );
                }
            }
        }
        // A banned element is never kept; a tie with the (k + 1)-th or a NaN gives None.
        let x = Vec::<f32>::try_from(&(Tensor::randn([3000], (Kind::Float, Device::Cpu)) * 2.0))
            .unwrap();
        let best = (0..x.len()).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap();
        let mut banned = vec![false; x.len()];
        banned[best] = true;
        let top = select.top_in_order(&x, 10, &banned, f32::NAN).unwrap();
        assert!(!top.idx.contains(&(best as u32)) && top.idx.len() == 10);
        let kth = select.top_in_order(&x, 10, &[], f32::NAN).unwrap().kth;
        let mut tied = x.clone();
        let other = (0..x.len()).find(|&i| x[i] < kth).unwrap();
        tied[other] = kth;
        assert!(select.top_in_order(&tied, 10, &[], f32::NAN).is_none());
        let mut nan = x.clone();
        nan[40] = f32::NAN;
        assert!(select.top_in_order(&nan, 10, &[], f32::NAN).is_none());
        // Also when a floor hint skips the pass that otherwise finds NaNs.
        assert!(select.top_in_order(&nan, 10, &[], kth - 1.0).is_none());
    }

    #[test]
    fn select_rows_is_index_select_fill_and_argmax() {
        tch::manual_seed(8);
        let flat = Tensor::randn([2 * 6, 333], (Kind::Float, Device::Cpu)) * 7.0;
        let rows = [0i64, 2, 5, 3];
        let idx = Tensor::from_slice(&rows);
        let forbidden = [4i64, 300];
        let fill = |x: Tensor| x.index_fill(1, &Tensor::from_slice(&forbidden), f64::NEG_INFINITY);
        for scale in [2.0, 1.7, 0.3] {
            let (host, argmax) = select_rows(&flat, &rows, Some((6, scale)), &forbidden, true)
                .unwrap()
                .unwrap();
            let cond = flat.index_select(0, &idx);
            let un = flat.index_select(0, &(&idx + 6));
            let expected = fill((cond - &un) * scale + un);
            assert!(host.equal(&expected), "scale {scale}");
            assert_eq!(
                Tensor::from_slice(&argmax.unwrap()),
                expected.argmax(-1, false)
            );
        }
        // Ties, a row of -inf, and a 0.0 maximum after a -0.0: the first maximum, as argmax.
        let tied = Tensor::randint(3, [6, 333], (Kind::Float, Device::Cpu)).index_fill(
            0,
            &Tensor::from_slice(&[1i64]),
            f64::NEG_INFINITY,
        );
        let signed = Tensor::from_slice(&[-1.0f32, -0.0, 0.0, -2.0]).view([1, 4]);
        for x in [&tied, &signed] {
            let all: Vec<i64> = (0..x.size()[0]).collect();
            let (host, argmax) = select_rows(x, &all, None, &[], true).unwrap().unwrap();
            assert!(host.equal(x));
            assert_eq!(Tensor::from_slice(&argmax.unwrap()), x.argmax(-1, false));
        }
        let nan = flat.index_fill(1, &Tensor::from_slice(&[7i64]), f64::NAN);
        assert!(select_rows(&nan, &rows, None, &[], true)
            .unwrap()
            .unwrap()
            .1
            .is_none());
    }

    #[test]
    fn radix_sort_sorts_descending() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut row = vec![
            1.5f32,
            -0.0,
            0.0,
            f32::NEG_INFINITY,
            -3.25,
            7.0,
            f32::INFINITY,
            1e-30,
            -1e-30,
            1.5,
            f32::MIN,
        ];
        let mut expected = row.clone();
        expected.sort_by(|a, b| b.total_cmp(a));
        sort_descending(&mut row, &mut Vec::new(), &mut Vec::new());
        assert_eq!(bits(&row), bits(&expected));
        let mut big =
            Vec::<f32>::try_from(&(Tensor::randn([5000], (Kind::Float, Device::Cpu)) * 100.0))
                .unwrap();
        let mut expected = big.clone();
        expected.sort_by(|a, b| b.total_cmp(a));
        sort_descending(&mut big, &mut Vec::new(), &mut Vec::new());
        assert_eq!(big, expected);
    }

    #[test]
    fn inverse_cdf_is_the_tensor_count() {
        tch::manual_seed(9);
        let logits = Tensor::randn([30, 500], (Kind::Float, Device::Cpu)) * 3.0;
        // Zero-probability entries (as after a top-k or top-p fill) and an all-in-one row.
        let filled = logits.masked_fill(&logits.lt(1.0), f32::MIN as f64);
        let one = logits.index_fill(1, &Tensor::from_slice(&[499i64]), 1e4);
        for x in [&logits, &filled, &one] {
            let probs = x.softmax(-1, Kind::Float);
            let u = Tensor::rand([30, 1], (Kind::Double, Device::Cpu));
            let cum = probs.cumsum(-1, Kind::Double);
            let target = u.neg().f_add_scalar(1.0).unwrap() * cum.narrow(-1, 499, 1);
            let want = cum
                .lt_tensor(&target)
                .sum_dim_intlist(-1, false, Kind::Int64)
                .clamp_max(499);
            let got =
                inverse_cdf(&probs, &Vec::<f64>::try_from(&u.flatten(0, -1)).unwrap()).unwrap();
            assert_eq!(got, Vec::<i64>::try_from(&want).unwrap());
        }
        // Draws at the ends of [0, 1): the first and the last token of nonzero mass.
        let probs = filled.softmax(-1, Kind::Float);
        let p = Vec::<f32>::try_from(&probs.get(0)).unwrap();
        let got = inverse_cdf(&probs.narrow(0, 0, 1), &[0.0]).unwrap()[0] as usize;
        assert_eq!(got, p.iter().rposition(|&q| q > 0.0).unwrap());
        let nan = probs.index_fill(1, &Tensor::from_slice(&[3i64]), f64::NAN);
        assert!(inverse_cdf(&nan, &[0.5; 30]).is_none());
    }

    #[test]
    fn uniforms_are_in_range_and_seeded() {
        let a = uniforms(5, 10_000);
        assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        assert_eq!(a, uniforms(5, 10_000));
        assert_ne!(a, uniforms(6, 10_000));
    }
}
