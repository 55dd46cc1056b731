//! Random draws on the host: Dream's inverse-CDF token draw and the uniforms of Gumbel noise.

use tch::Tensor;

use super::cpu_f32;

/// Per row of a `[n, V]` float32 CPU tensor of probabilities and its uniform draw `u`, the
/// count of float64 cumulative sums below `(1 - u)` times the row's total, capped at `V - 1`:
/// `(cumsum(p, float64) < (1 - u) * total).sum()` as `Ctx::dream_sample` computes it with
/// tensors: one sequential float64 pass (as libtorch's `cumsum`) and a bisection. `None` off
/// CPU/float32 or when a row's total is not finite.
pub(crate) fn inverse_cdf(probs: &Tensor, u: &[f64]) -> Option<Vec<i64>> {
    // SAFETY: only read while this function runs, which writes to no tensor.
    let rows = (unsafe { cpu_f32(probs) })?;
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
pub(crate) fn inverse_cdf_row(row: &[f32], u: f64, cum: &mut Vec<f64>) -> Option<usize> {
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
pub(crate) fn uniforms(seed: u64, n: usize) -> Vec<f64> {
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
