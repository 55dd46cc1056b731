//! Sorting and filling float32 rows by value: the radix sort and the threshold fill of the
//! top-p filter, and the order-preserving keys the top-k selection shares.

use tch::Tensor;

use super::cpu_f32;
use super::rows::build_rows;
use crate::error::ProbeError;

/// Sorts `row` (no NaNs) in descending order: an LSD radix sort on [`desc_key`]s, with the four
/// byte histograms counted in one pass and the byte positions where every key agrees skipped
/// (logits of one row usually share their top byte). `keys` and `scratch` are reused buffers.
pub(crate) fn sort_descending(row: &mut [f32], keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
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
pub(crate) fn fill_below(
    x: &Tensor,
    thresholds: &[f32],
    fill: f32,
) -> Result<Option<Tensor>, ProbeError> {
    // SAFETY: only read while this function runs, which writes to no tensor.
    let Some(all) = (unsafe { cpu_f32(x) }) else {
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
pub(super) fn desc_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 0 {
        !b & 0x7fff_ffff
    } else {
        b
    }
}

/// The inverse of [`desc_key`].
pub(crate) fn from_desc_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 0 { !k & 0x7fff_ffff } else { k })
}

/// The largest of a block of values (a multiple of 16 long) and whether any is NaN, with
/// lane-wise operations on 16 lanes (which vectorise; `if x > y { x } else { y }` is the
/// vector `max` instruction, where `f32::max` would add NaN handling that the separate check
/// makes unnecessary).
pub(super) fn block_max(b: &[f32]) -> (f32, bool) {
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
