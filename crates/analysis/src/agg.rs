//! Vec-based aggregation of per-row quantities by distance and by unit (prompt).
//!
//! The curves used to be computed with a polars `group_by(distance).agg(mean, median,
//! quantile(0.25), quantile(0.75), count)`; this module computes the same numbers bit for bit
//! without building a data frame (which dominated the analysis time):
//! - the mean is a Kahan sum of the group's non-missing values in row order, divided by their
//!   count, and a one-row group's mean is its value (polars' `agg_mean` on index groups);
//! - quantiles are polars' `Linear` method: `float_idx = (n - 1) q`, `lower` the
//!   `floor(float_idx)`-th smallest value, `upper` the next one, and
//!   `(float_idx - idx) (upper - lower) + lower` unless `lower == upper` or `float_idx` is whole.
//!
//! Order statistics are found by selection instead of a sort. Missing values are NaN here
//! (nulls in the frame). The code is written to run fast at `opt-level = 1`, the workspace's
//! setting for its own crates in dev builds.

use std::cmp::Ordering;
use std::sync::Mutex;

use cp_records::CurvePoint;
use rayon::prelude::*;

/// A per-row column read as `f64` (probe columns are `f32`, derived quantities `f64`).
pub(crate) trait Col: Sync {
    fn at(&self, i: usize) -> f64;
}

impl Col for [f32] {
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        self[i] as f64
    }
}

impl Col for [f64] {
    #[inline(always)]
    fn at(&self, i: usize) -> f64 {
        self[i]
    }
}

/// Borrowed per-row values of one quantity (NaN = missing).
#[derive(Clone, Copy)]
pub(crate) enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Values<'_> {
    pub(crate) fn all_missing(&self) -> bool {
        match self {
            Values::F32(v) => v.iter().all(|x| x.is_nan()),
            Values::F64(v) => v.iter().all(|x| x.is_nan()),
        }
    }
}

/// Calls `$body` with `$c` bound to the values as a concrete `Col` (monomorphised per type).
macro_rules! with_col {
    ($values:expr, |$c:ident| $body:expr) => {
        match $values {
            $crate::agg::Values::F32(s) => {
                let $c: &[f32] = s;
                $body
            }
            $crate::agg::Values::F64(s) => {
                let $c: &[f64] = s;
                $body
            }
        }
    };
}
pub(crate) use with_col;

/// One curve to aggregate by distance.
pub(crate) struct CurveInput<'a> {
    pub(crate) curve: &'static str,
    pub(crate) series: &'a str,
    pub(crate) values: Values<'a>,
}

/// Rows grouped by key (distance): group `g` has key `keys[g]` (ascending) and
/// `starts[g + 1] - starts[g]` rows; `gid[i]` is row `i`'s group.
pub(crate) struct Groups {
    pub(crate) keys: Vec<u32>,
    pub(crate) starts: Vec<usize>,
    pub(crate) gid: Vec<u32>,
    /// `gid` as `u16` where every group number fits: the scatters read it once per curve.
    gid16: Option<Vec<u16>>,
}

/// A row's group number, as stored.
trait GroupId: Copy {
    fn index(self) -> usize;
}

impl GroupId for u32 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

impl GroupId for u16 {
    #[inline(always)]
    fn index(self) -> usize {
        self as usize
    }
}

/// Writes the key of each row's non-missing value at its group's end (see
/// [`Groups::scatter_keys`]).
#[inline(always)]
fn scatter_rows<G: GroupId, V: Copy, K>(
    gid: &[G],
    values: &[V],
    key: impl Fn(V) -> (K, bool),
    out: &mut [K],
    end: &mut [usize],
) {
    for (&g, &v) in gid.iter().zip(values) {
        let (k, missing) = key(v);
        let e = &mut end[g.index()];
        out[*e] = k;
        *e += !missing as usize;
    }
}

impl Groups {
    pub(crate) fn by(key: &[u32]) -> Groups {
        let n = key.len();
        let max = key.iter().copied().max().unwrap_or(0) as usize;
        // Dense table from key to group where keys are small, else a sorted key list.
        let (keys, gid): (Vec<u32>, Vec<u32>) = if max <= 2 * n + 4096 {
            let mut seen = vec![false; max + 1];
            for &k in key {
                seen[k as usize] = true;
            }
            let keys: Vec<u32> = (0..=max as u32).filter(|&k| seen[k as usize]).collect();
            let mut index = vec![0u32; max + 1];
            for (g, &k) in keys.iter().enumerate() {
                index[k as usize] = g as u32;
            }
            (keys, key.iter().map(|&k| index[k as usize]).collect())
        } else {
            let mut keys = key.to_vec();
            keys.sort_unstable();
            keys.dedup();
            let gid = key
                .iter()
                .map(|k| keys.binary_search(k).expect("key listed") as u32)
                .collect();
            (keys, gid)
        };
        let mut starts = vec![0usize; keys.len() + 1];
        for &g in &gid {
            starts[g as usize + 1] += 1;
        }
        for g in 0..keys.len() {
            starts[g + 1] += starts[g];
        }
        let gid16 = (keys.len() <= 1 << 16).then(|| gid.iter().map(|&g| g as u16).collect());
        Groups {
            keys,
            starts,
            gid,
            gid16,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Copies the non-missing values of `c` into `out` group by group, in row order inside each
    /// group: group `g`'s values end up in `out[starts[g]..end[g]]`. One sequential pass over the
    /// column (gathering group by group instead would touch a new cache line for every value).
    #[cfg(test)]
    pub(crate) fn scatter<C: Col + ?Sized>(&self, c: &C, out: &mut Vec<f64>, end: &mut Vec<usize>) {
        out.clear();
        out.resize(self.gid.len(), 0.0);
        end.clear();
        end.extend_from_slice(&self.starts[..self.len()]);
        for (i, &g) in self.gid.iter().enumerate() {
            let v = c.at(i);
            let e = &mut end[g as usize];
            out[*e] = v;
            *e += !v.is_nan() as usize;
        }
    }

    /// [`Groups::scatter`] writing each value's key (see [`key`]) instead of the value: the
    /// quartiles select on keys, and the sums read the values back from them exactly.
    pub(crate) fn scatter_keys(&self, c: &[f64], out: &mut Vec<u64>, end: &mut Vec<usize>) {
        // Every slot up to a group's end is written before it is read: a reused buffer needs
        // no clearing.
        out.resize(self.gid.len(), 0);
        end.clear();
        end.extend_from_slice(&self.starts[..self.len()]);
        let f = |v: f64| (key(v), v.is_nan());
        match &self.gid16 {
            Some(gid) => scatter_rows(gid, c, f, out, end),
            None => scatter_rows(&self.gid, c, f, out, end),
        }
    }

    /// [`Groups::scatter_keys`] of an `f32` column, as `f32` keys (see [`key32`]).
    pub(crate) fn scatter_keys32(&self, c: &[f32], out: &mut Vec<u32>, end: &mut Vec<usize>) {
        // Every slot up to a group's end is written before it is read: a reused buffer needs
        // no clearing.
        out.resize(self.gid.len(), 0);
        end.clear();
        end.extend_from_slice(&self.starts[..self.len()]);
        let f = |v: f32| (key32(v), v.is_nan());
        match &self.gid16 {
            Some(gid) => scatter_rows(gid, c, f, out, end),
            None => scatter_rows(&self.gid, c, f, out, end),
        }
    }
}

/// Polars' Kahan summation (`polars_utils::kahan_sum::KahanSum`), in the given order.
pub(crate) fn kahan_sum(values: &[f64]) -> f64 {
    let (mut sum, mut err) = (0.0f64, 0.0f64);
    for &v in values {
        let y = v - err;
        let new_sum = sum + y;
        let new_err = (new_sum - sum) - y;
        sum = new_sum;
        if new_err.is_finite() {
            err = new_err;
        }
    }
    sum
}

/// `x`'s bits mapped so that unsigned order is IEEE total order (`-0.0 < 0.0`).
#[inline(always)]
fn key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// [`key`] of an `f32`: unsigned order is the `f32` IEEE total order, which the exact widening
/// to `f64` preserves.
#[inline(always)]
fn key32(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 1 {
        !b
    } else {
        b | 1 << 31
    }
}

#[inline(always)]
fn unkey32(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & !(1 << 31) } else { !k })
}

#[inline(always)]
fn unkey(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Keys of `f32` (`u32`, see [`key32`]) or `f64` (`u64`, see [`key`]) values, selected among
/// directly: `f32` columns keep their narrower keys, whose first radix digit reaches further
/// into the mantissa.
pub(crate) trait RadixKey: Copy + Ord + Send + Sync + std::fmt::Debug {
    const MIN: Self;
    const MAX: Self;
    /// The keys of -0.0 and +0.0.
    const NEG_ZERO: Self;
    const POS_ZERO: Self;
    /// The value, widened to `f64` (exactly).
    fn value(self) -> f64;
    /// The number of bits below the common prefix of `a` and `b`.
    fn differing_bits(a: Self, b: Self) -> u32;
    /// The radix digit at `shift`.
    fn digit(self, shift: u32) -> usize;
}

impl RadixKey for u64 {
    const MIN: u64 = 0;
    const MAX: u64 = u64::MAX;
    const NEG_ZERO: u64 = !(1u64 << 63);
    const POS_ZERO: u64 = 1u64 << 63;
    #[inline(always)]
    fn value(self) -> f64 {
        unkey(self)
    }
    #[inline(always)]
    fn differing_bits(a: u64, b: u64) -> u32 {
        64 - (a ^ b).leading_zeros()
    }
    #[inline(always)]
    fn digit(self, shift: u32) -> usize {
        ((self >> shift) & (RADIX - 1) as u64) as usize
    }
}

impl RadixKey for u32 {
    const MIN: u32 = 0;
    const MAX: u32 = u32::MAX;
    const NEG_ZERO: u32 = !(1u32 << 31);
    const POS_ZERO: u32 = 1u32 << 31;
    #[inline(always)]
    fn value(self) -> f64 {
        unkey32(self) as f64
    }
    #[inline(always)]
    fn differing_bits(a: u32, b: u32) -> u32 {
        32 - (a ^ b).leading_zeros()
    }
    #[inline(always)]
    fn digit(self, shift: u32) -> usize {
        ((self >> shift) & (RADIX - 1) as u32) as usize
    }
}

const RADIX_BITS: u32 = 11;
const RADIX: usize = 1 << RADIX_BITS;

/// Writes the `ranks[i]`-th smallest of `keys` into `out[i]` (`ranks` ascending, in range, at
/// most six) by radix selection: a histogram of the 11 bits below the keys' common prefix
/// locates each rank's bucket, whose keys are then gathered and selected among recursively.
fn select_ranks<K: RadixKey>(keys: &[K], ranks: &[usize], out: &mut [K]) {
    let (mut min, mut max) = (K::MAX, K::MIN);
    for &k in keys {
        min = min.min(k);
        max = max.max(k);
    }
    select_ranks_within(keys, min, max, ranks, out);
}

/// [`select_ranks`] of keys whose minimum and maximum are known.
fn select_ranks_within<K: RadixKey>(keys: &[K], min: K, max: K, ranks: &[usize], out: &mut [K]) {
    if keys.len() <= 48 {
        let mut small = [K::MIN; 48];
        let small = &mut small[..keys.len()];
        small.copy_from_slice(keys);
        // Insertion sort: the slices are tiny.
        for i in 1..small.len() {
            let x = small[i];
            let mut j = i;
            while j > 0 && x < small[j - 1] {
                small[j] = small[j - 1];
                j -= 1;
            }
            small[j] = x;
        }
        for (o, &r) in out.iter_mut().zip(ranks) {
            *o = small[r];
        }
        return;
    }
    if min == max {
        out.fill(min);
        return;
    }
    let top = K::differing_bits(min, max);
    let shift = top.saturating_sub(RADIX_BITS);
    let mut hist = [0u32; RADIX];
    for &k in keys {
        hist[k.digit(shift)] += 1;
    }
    // For each rank: its bucket and its rank inside the bucket.
    let mut at = [(0usize, 0usize); 6];
    let (mut b, mut below) = (0usize, 0usize);
    for (a, &r) in at.iter_mut().zip(ranks) {
        while below + hist[b] as usize <= r {
            below += hist[b] as usize;
            b += 1;
        }
        *a = (b, r - below);
    }
    let at = &at[..ranks.len()];
    // The distinct buckets wanted (at most six), gathered in one pass.
    let mut wanted: Vec<usize> = at.iter().map(|a| a.0).collect();
    wanted.dedup();
    let mut slot = [u8::MAX; RADIX];
    let mut subs: Vec<Vec<K>> = Vec::with_capacity(wanted.len());
    for (i, &w) in wanted.iter().enumerate() {
        slot[w] = i as u8;
        subs.push(Vec::with_capacity(hist[w] as usize));
    }
    for &k in keys {
        let s = slot[k.digit(shift)];
        if s != u8::MAX {
            subs[s as usize].push(k);
        }
    }
    let mut i = 0;
    for (w, sub) in wanted.iter().zip(&subs) {
        let j = i + at[i..].iter().take_while(|a| a.0 == *w).count();
        let mut sub_ranks = [0usize; 6];
        for (sr, a) in sub_ranks.iter_mut().zip(&at[i..j]) {
            *sr = a.1;
        }
        select_ranks(sub, &sub_ranks[..j - i], &mut out[i..j]);
        i = j;
    }
}

/// Polars' linear interpolation between the `idx`-th and next order statistics.
#[inline]
fn interpolate(
    lower: f64,
    upper: impl FnOnce() -> f64,
    float_idx: f64,
    idx: usize,
    top: usize,
) -> f64 {
    if idx == top {
        return lower;
    }
    let upper = upper();
    if lower == upper {
        lower
    } else {
        (float_idx - idx as f64) * (upper - lower) + lower
    }
}

/// Polars' index arithmetic for quantile `q` of `n` values: `(floor, float_idx, ceil)`.
#[inline]
fn quantile_idx(n: usize, q: f64) -> (usize, f64, usize) {
    let float_idx = (n as f64 - 1.0) * q;
    let idx = (float_idx as usize).min(n - 1);
    (idx, float_idx, float_idx.ceil() as usize)
}

/// Median, 25th and 75th percentiles of `v` (non-empty, no NaN); `keys` is scratch space.
#[cfg(test)]
fn quartiles(v: &[f64], keys: &mut Vec<u64>) -> (f64, f64, f64) {
    keys.clear();
    keys.extend(v.iter().map(|&x| key(x)));
    let min = keys.iter().copied().min().unwrap_or(u64::MAX);
    let max = keys.iter().copied().max().unwrap_or(0);
    quartiles_of_keys(keys, min, max)
}

/// [`quartiles`] of values given as their keys (row order), whose minimum and maximum are known.
fn quartiles_of_keys<K: RadixKey>(keys: &[K], min: K, max: K) -> (f64, f64, f64) {
    let n = keys.len();
    if n == 1 {
        let v = keys[0].value();
        return (v, v, v);
    }
    // With both signed zeros present, which zero polars returns depends on its selection
    // order (its comparison treats them as equal): reproduce that path exactly.
    if min <= K::NEG_ZERO
        && max >= K::POS_ZERO
        && keys.contains(&K::NEG_ZERO)
        && keys.contains(&K::POS_ZERO)
    {
        let v: Vec<f64> = keys.iter().map(|&k| k.value()).collect();
        let polars = |q: f64| {
            let mut w = v.clone();
            let (idx, float_idx, top) = quantile_idx(n, q);
            let cmp = |a: &f64, b: &f64| a.partial_cmp(b).unwrap_or(Ordering::Equal);
            let (_, &mut lower, rest) = w.select_nth_unstable_by(idx, cmp);
            interpolate(
                lower,
                || rest.iter().copied().min_by(cmp).unwrap_or(lower),
                float_idx,
                idx,
                top,
            )
        };
        return (polars(0.5), polars(0.25), polars(0.75));
    }
    // Otherwise equal values are bit-identical and any selection method gives polars' values.
    let qs = [
        quantile_idx(n, 0.25),
        quantile_idx(n, 0.5),
        quantile_idx(n, 0.75),
    ];
    let mut ranks = [0usize; 6];
    let mut m = 0;
    for &(idx, _, _) in &qs {
        for r in [idx, (idx + 1).min(n - 1)] {
            if m == 0 || ranks[m - 1] != r {
                ranks[m] = r;
                m += 1;
            }
        }
    }
    let mut stats = [K::MIN; 6];
    select_ranks_within(keys, min, max, &ranks[..m], &mut stats[..m]);
    let stat = |r: usize| {
        (stats[ranks[..m]
            .iter()
            .position(|&x| x == r)
            .expect("rank selected")])
        .value()
    };
    let [a, b, c] = qs
        .map(|(idx, float_idx, top)| interpolate(stat(idx), || stat(idx + 1), float_idx, idx, top));
    (b, a, c)
}

/// One Kahan step (see [`kahan_sum`]).
#[inline(always)]
fn kahan_step(sum: &mut f64, err: &mut f64, v: f64) {
    let y = v - *err;
    let new_sum = *sum + y;
    let new_err = (new_sum - *sum) - y;
    *sum = new_sum;
    if new_err.is_finite() {
        *err = new_err;
    }
}

/// [`kahan_sum`], minimum and maximum of each slice of keys (values in key form). A Kahan sum
/// is one long chain of dependent additions, so the slices are summed four at a time,
/// interleaved, to overlap their chains.
fn kahan_sums<K: RadixKey>(slices: &[&[K]]) -> Vec<(f64, K, K)> {
    let mut out = Vec::with_capacity(slices.len());
    for chunk in slices.chunks(4) {
        let empty: &[K] = &[];
        let get = |i: usize| chunk.get(i).copied().unwrap_or(empty);
        let (a, b, c, d) = (get(0), get(1), get(2), get(3));
        let n = a.len().min(b.len()).min(c.len()).min(d.len());
        let (a0, b0, c0, d0) = (&a[..n], &b[..n], &c[..n], &d[..n]);
        let (mut s0, mut s1, mut s2, mut s3) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut e0, mut e1, mut e2, mut e3) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut l0, mut l1, mut l2, mut l3) = (K::MAX, K::MAX, K::MAX, K::MAX);
        let (mut h0, mut h1, mut h2, mut h3) = (K::MIN, K::MIN, K::MIN, K::MIN);
        for i in 0..n {
            let (ka, kb, kc, kd) = (a0[i], b0[i], c0[i], d0[i]);
            kahan_step(&mut s0, &mut e0, ka.value());
            kahan_step(&mut s1, &mut e1, kb.value());
            kahan_step(&mut s2, &mut e2, kc.value());
            kahan_step(&mut s3, &mut e3, kd.value());
            (l0, l1, l2, l3) = (l0.min(ka), l1.min(kb), l2.min(kc), l3.min(kd));
            (h0, h1, h2, h3) = (h0.max(ka), h1.max(kb), h2.max(kc), h3.max(kd));
        }
        let s = [s0, s1, s2, s3];
        let e = [e0, e1, e2, e3];
        let lo = [l0, l1, l2, l3];
        let hi = [h0, h1, h2, h3];
        for (k, slice) in chunk.iter().enumerate() {
            let (mut sum, mut err, mut min, mut max) = (s[k], e[k], lo[k], hi[k]);
            for &v in &slice[n..] {
                kahan_step(&mut sum, &mut err, v.value());
                min = min.min(v);
                max = max.max(v);
            }
            out.push((sum, min, max));
        }
    }
    out
}

/// The aggregates of each group's values (`keys[g]`: the keys of its values, in row order,
/// without missing values; `sizes[g]` rows): `(mean, median, q25, q75, n)`, `None` where no row
/// has a value.
fn summarize<K: RadixKey>(keys: &[&[K]], sizes: &[usize]) -> Vec<Option<[f64; 5]>> {
    let sums = kahan_sums(keys);
    keys.iter()
        .zip(sizes)
        .zip(sums)
        .map(|((buf, &size), (sum, min, max))| {
            if buf.is_empty() {
                return None;
            }
            let n = buf.len();
            let mean = if size == 1 {
                buf[0].value()
            } else {
                sum / n as f64
            };
            let (median, q25, q75) = quartiles_of_keys(buf, min, max);
            Some([mean, median, q25, q75, n as f64])
        })
        .collect()
}

/// [`summarize`] of every group of a column whose rows are in the regular layout (row `i` in
/// group `i % ng`): the groups are the columns of a row-major `len / ng` by `ng` matrix. A job
/// gathers the keys of one cache line's worth of adjacent groups (64 bytes of values per
/// matrix row) into a buffer that stays in cache while it is summarised, so the column is read
/// from memory once and never written back grouped (a per-value scatter wrote and re-read a
/// full grouped copy of every column).
fn summarize_strided<V: Copy + Sync, K: RadixKey + Default>(
    c: &[V],
    ng: usize,
    sizes: &[usize],
    pool: &Mutex<Vec<Vec<K>>>,
    key: impl Fn(V) -> (K, bool) + Sync,
) -> Vec<Option<[f64; 5]>> {
    const MAX_WIDTH: usize = 16;
    const PREFETCH_ROWS: usize = 32;
    let width = (64 / std::mem::size_of::<V>()).clamp(1, MAX_WIDTH);
    let rows = c.len() / ng;
    let chunks: Vec<std::ops::Range<usize>> = (0..ng)
        .step_by(width)
        .map(|g| g..(g + width).min(ng))
        .collect();
    let parts: Vec<Vec<Option<[f64; 5]>>> = chunks
        .par_iter()
        .map(|gs| {
            let w = gs.len();
            let mut buf = pool.lock().expect("pool").pop().unwrap_or_default();
            if buf.len() < w * rows {
                // Every slot up to a group's end is written before it is read: a reused
                // buffer needs no clearing.
                buf.resize(w * rows, K::default());
            }
            let mut end = [0usize; MAX_WIDTH];
            for (j, e) in end[..w].iter_mut().enumerate() {
                *e = j * rows;
            }
            for r in 0..rows {
                // Each matrix row's line is a new page every few rows, which the hardware
                // prefetchers do not follow: without a hint every line is a full miss.
                let ahead = (r + PREFETCH_ROWS) * ng;
                crate::hint::prefetch(c, ahead + gs.start);
                crate::hint::prefetch(c, ahead + gs.end - 1);
                let line = &c[r * ng + gs.start..r * ng + gs.end];
                for (e, &v) in end[..w].iter_mut().zip(line) {
                    let (k, missing) = key(v);
                    buf[*e] = k;
                    *e += !missing as usize;
                }
            }
            let slices: Vec<&[K]> = (0..w).map(|j| &buf[j * rows..end[j]]).collect();
            // Four groups at a time: their Kahan sums run interleaved.
            let out: Vec<Option<[f64; 5]>> = slices
                .chunks(4)
                .zip(sizes[gs.clone()].chunks(4))
                .flat_map(|(keys, sizes)| summarize(keys, sizes))
                .collect();
            pool.lock().expect("pool").push(buf);
            out
        })
        .collect();
    parts.concat()
}

/// Mean, median, quartiles and count of every input by distance; distances where an input has
/// no value give no point. Points come input by input, distances ascending.
pub(crate) fn distance_curves(distance: &[u32], inputs: &[CurveInput<'_>]) -> Vec<CurvePoint> {
    let groups = Groups::by(distance);
    let ng = groups.len();
    let sizes: Vec<usize> = (0..ng)
        .map(|g| groups.starts[g + 1] - groups.starts[g])
        .collect();
    // Scatter buffers are reused from input to input (`map_init` would start fresh ones per
    // rayon job, and zeroing new pages cost more than the aggregation itself).
    let pool64: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
    let pool32: Mutex<Vec<Vec<u32>>> = Mutex::new(Vec::new());
    // Rows in a regular layout (row `i` in group `i % groups`, e.g. every prompt probed at the
    // same distances, rows ordered by prompt then distance): the groups are the columns of a
    // row-major matrix, gathered a cache line of groups at a time (see `summarize_strided`).
    let regular = ng > 0
        && groups.gid.len().is_multiple_of(ng)
        && groups
            .gid
            .iter()
            .enumerate()
            .all(|(i, &g)| g as usize == i % ng);
    if regular {
        let stats: Vec<Vec<Option<[f64; 5]>>> = inputs
            .par_iter()
            .map(|input| match input.values {
                Values::F64(c) => {
                    summarize_strided(c, ng, &sizes, &pool64, |v: f64| (key(v), v.is_nan()))
                }
                Values::F32(c) => {
                    summarize_strided(c, ng, &sizes, &pool32, |v: f32| (key32(v), v.is_nan()))
                }
            })
            .collect();
        return curve_points(&groups, inputs, &stats);
    }
    let stats: Vec<Vec<Option<[f64; 5]>>> = inputs
        .par_iter()
        .map(|input| {
            let mut end = Vec::new();
            // Four groups per job: their Kahan sums run interleaved.
            let parts: Vec<Vec<Option<[f64; 5]>>> = match input.values {
                Values::F64(c) => {
                    let mut buf = pool64.lock().expect("pool").pop().unwrap_or_default();
                    groups.scatter_keys(c, &mut buf, &mut end);
                    let slices: Vec<&[u64]> =
                        (0..ng).map(|g| &buf[groups.starts[g]..end[g]]).collect();
                    let parts = slices
                        .par_chunks(4)
                        .zip(sizes.par_chunks(4))
                        .map(|(keys, sizes)| summarize(keys, sizes))
                        .collect();
                    pool64.lock().expect("pool").push(buf);
                    parts
                }
                Values::F32(c) => {
                    // `f32` columns scatter half as many bytes, and are summarised on their own
                    // keys (the widening to `f64` is exact and keeps their order).
                    let mut buf = pool32.lock().expect("pool").pop().unwrap_or_default();
                    groups.scatter_keys32(c, &mut buf, &mut end);
                    let slices: Vec<&[u32]> =
                        (0..ng).map(|g| &buf[groups.starts[g]..end[g]]).collect();
                    let parts = slices
                        .par_chunks(4)
                        .zip(sizes.par_chunks(4))
                        .map(|(keys, sizes)| summarize(keys, sizes))
                        .collect();
                    pool32.lock().expect("pool").push(buf);
                    parts
                }
            };
            parts.concat()
        })
        .collect();
    curve_points(&groups, inputs, &stats)
}

/// The curve points of every input's per-group aggregates (groups without a value give none).
fn curve_points(
    groups: &Groups,
    inputs: &[CurveInput<'_>],
    stats: &[Vec<Option<[f64; 5]>>],
) -> Vec<CurvePoint> {
    let mut points = Vec::new();
    for (input, per_group) in inputs.iter().zip(stats) {
        for (g, s) in per_group.iter().enumerate() {
            if let Some([mean, median, q25, q75, n]) = *s {
                points.push(CurvePoint {
                    curve: input.curve.into(),
                    series: input.series.to_owned(),
                    x: groups.keys[g] as f64,
                    mean,
                    median,
                    q25,
                    q75,
                    n: n as u64,
                });
            }
        }
    }
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted_quantile(v: &[f64], q: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let (idx, float_idx, top) = quantile_idx(s.len(), q);
        interpolate(s[idx], || s[idx + 1], float_idx, idx, top)
    }

    #[test]
    fn quartiles_match_a_sort() {
        let mut x = 99u64;
        for n in (1..200usize).chain([1000, 5000, 20_000]) {
            for distinct in [1u64, 2, 7, 1000, 1 << 40] {
                let v: Vec<f64> = (0..n)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % distinct) as f64 / 3.0 - 1.0
                    })
                    .collect();
                let (m, a, b) = quartiles(&v, &mut Vec::new());
                assert_eq!(m.to_bits(), sorted_quantile(&v, 0.5).to_bits(), "{v:?}");
                assert_eq!(a.to_bits(), sorted_quantile(&v, 0.25).to_bits(), "{v:?}");
                assert_eq!(b.to_bits(), sorted_quantile(&v, 0.75).to_bits(), "{v:?}");
            }
        }
    }

    #[test]
    fn interleaved_kahan_sums_match_one_at_a_time() {
        let v: Vec<f64> = (0..1000)
            .map(|i| ((i * 7919) % 1013) as f64 / 7.0 - 50.0)
            .collect();
        let keys: Vec<u64> = v.iter().map(|&x| key(x)).collect();
        let slices: Vec<&[f64]> = (0..11).map(|k| &v[k * 13..k * 13 + 37 * k]).collect();
        let key_slices: Vec<&[u64]> = (0..11).map(|k| &keys[k * 13..k * 13 + 37 * k]).collect();
        let got = kahan_sums(&key_slices);
        for ((s, k), (g, min, max)) in slices.iter().zip(&key_slices).zip(got) {
            assert_eq!(kahan_sum(s).to_bits(), g.to_bits());
            assert_eq!(k.iter().copied().min().unwrap_or(u64::MAX), min);
            assert_eq!(k.iter().copied().max().unwrap_or(0), max);
        }
    }

    #[test]
    fn regular_layout_gathers_each_group_in_row_order() {
        let bits = |s: Vec<Option<[f64; 5]>>| -> Vec<Option<[u64; 5]>> {
            s.into_iter()
                .map(|o| o.map(|a| a.map(f64::to_bits)))
                .collect()
        };
        let mut x = 7u64;
        for (ng, per) in [(1usize, 3usize), (5, 100), (23, 61), (40, 1)] {
            let v: Vec<f32> = (0..ng * per)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match x % 9 {
                        0 => f32::NAN,
                        1 => -0.0,
                        2 => 0.0,
                        k => (x % 1000) as f32 / (k as f32) - 40.0,
                    }
                })
                .collect();
            let w: Vec<f64> = v.iter().map(|&a| a as f64 * 1.5).collect();
            let distance: Vec<u32> = (0..v.len()).map(|i| (i % ng) as u32 * 3 + 1).collect();
            let groups = Groups::by(&distance);
            let sizes: Vec<usize> = (0..ng)
                .map(|g| groups.starts[g + 1] - groups.starts[g])
                .collect();
            let got32 = summarize_strided(&v, ng, &sizes, &Mutex::new(Vec::new()), |a: f32| {
                (key32(a), a.is_nan())
            });
            let got64 = summarize_strided(&w, ng, &sizes, &Mutex::new(Vec::new()), |a: f64| {
                (key(a), a.is_nan())
            });
            for g in 0..ng {
                let k32: Vec<u32> = v
                    .iter()
                    .skip(g)
                    .step_by(ng)
                    .filter(|a| !a.is_nan())
                    .map(|&a| key32(a))
                    .collect();
                let k64: Vec<u64> = w
                    .iter()
                    .skip(g)
                    .step_by(ng)
                    .filter(|a| !a.is_nan())
                    .map(|&a| key(a))
                    .collect();
                assert_eq!(
                    bits(vec![got32[g]]),
                    bits(summarize(&[&k32[..]], &sizes[g..g + 1]))
                );
                assert_eq!(
                    bits(vec![got64[g]]),
                    bits(summarize(&[&k64[..]], &sizes[g..g + 1]))
                );
            }
        }
    }

    #[test]
    fn groups_keep_row_order() {
        for key in [
            vec![3u32, 1, 3, 0, 1, 3],
            vec![u32::MAX, 5, u32::MAX, 5],
            vec![],
        ] {
            let g = Groups::by(&key);
            let mut expected: Vec<u32> = (0..key.len() as u32).collect();
            expected.sort_by_key(|&i| key[i as usize]);
            let rows: Vec<f64> = (0..key.len()).map(|i| i as f64).collect();
            let (mut out, mut end) = (Vec::new(), Vec::new());
            g.scatter(&rows[..], &mut out, &mut end);
            assert_eq!(out, expected.iter().map(|&i| i as f64).collect::<Vec<_>>());
            assert_eq!(end, g.starts[1..].to_vec());
            for i in 0..g.len() {
                assert!(out[g.starts[i]..end[i]]
                    .iter()
                    .all(|&r| key[r as usize] == g.keys[i]));
            }
        }
    }
}
