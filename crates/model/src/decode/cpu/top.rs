//! The largest elements of a row in index order, found in vectorised passes (AVX-512 where
//! the CPU has it) instead of a sort: the selection of Dream's top-k support (`sparse.rs`).

use super::sort::{desc_key, from_desc_key};

/// The m largest elements of rows, with reused buffers.
#[derive(Default)]
pub(crate) struct TopSelect {
    maxima: Vec<u32>,
    /// The candidates of the last row: indices in ascending order, and their [`desc_key`]s.
    hits: Vec<u32>,
    keys: Vec<u32>,
    scratch: Vec<u32>,
    block: Vec<u32>,
    ordered: Vec<u32>,
}

pub(super) const GROUP: usize = 16;

/// [`TopSelect::top_in_order`]'s result for one row.
pub(crate) struct TopInOrder<'a> {
    /// The indices of the k largest elements, ascending.
    pub idx: &'a [u32],
    /// The largest, the k-th largest and the (k + 1)-th largest value.
    pub top: f32,
    pub kth: f32,
    pub next: f32,
}

impl TopSelect {
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
    pub(crate) fn top_in_order(
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
pub(super) fn nth_smallest(keys: &[u32], n: usize, scratch: &mut Vec<u32>) -> u32 {
    scratch.clear();
    scratch.extend_from_slice(keys);
    *scratch.select_nth_unstable(n).1
}

/// AVX-512 versions of [`TopSelect`]'s two passes, chosen at run time (the build targets
/// baseline x86-64): 8 or 16 floats per instruction, and the candidate indices written with
/// the compress instruction instead of a branch per element.
#[cfg(target_arch = "x86_64")]
pub(super) mod simd {
    use std::arch::x86_64::*;

    use super::GROUP;

    /// Tests clear it to run the portable loops on an AVX-512 machine too.
    #[cfg(test)]
    pub(crate) static ALLOWED: std::sync::atomic::AtomicBool =
        std::sync::atomic::AtomicBool::new(true);

    pub(crate) fn avx512() -> bool {
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
    pub(crate) unsafe fn set_maxima(row: &[f32], maxima: &mut Vec<u32>) -> bool {
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
    pub(crate) unsafe fn collect_ge<const NAN: bool>(
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
