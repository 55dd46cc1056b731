//! Small statistics shared by the metrics: quantiles, entropies and the seeded bootstrap.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Linear-interpolation quantile (NumPy's default, polars' `Linear`) of unsorted values.
/// Returns NaN for an empty slice.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    // The two order statistics that `quantile_sorted` would read from the sorted values, found
    // by selection. Under the IEEE total order equal values are bit-identical, so this gives
    // exactly the sorted result.
    let mut v = values.to_vec();
    let h = (v.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    let b = if hi == lo {
        a
    } else {
        rest.iter().copied().min_by(f64::total_cmp).unwrap_or(a)
    };
    a + (h - lo as f64) * (b - a)
}

/// [`quantile`] of already sorted values.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

/// Shannon entropy in nats of a distribution given as (not necessarily normalised) weights.
pub fn entropy_nats(weights: &[f64]) -> f64 {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    weights
        .iter()
        .filter(|&&w| w > 0.0)
        .map(|&w| {
            let p = w / total;
            -p * p.ln()
        })
        .sum()
}

/// How a statistic is bootstrapped: `replicates` resamples of the units (prompts or
/// generations) with replacement, drawn from a ChaCha8 stream seeded with `seed` mixed with
/// the metric's name, so adding or removing a metric never changes another's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bootstrap {
    pub replicates: usize,
    pub seed: u64,
}

impl Bootstrap {
    /// The standard deviation of `statistic` over bootstrap resamples of `units` units.
    /// `statistic` receives resampled unit indices. `None` with fewer than two units or
    /// replicates, or when every replicate is undefined (NaN).
    pub fn stderr(
        &self,
        name: &str,
        units: usize,
        statistic: impl Fn(&[usize]) -> f64 + Sync,
    ) -> Option<f64> {
        if units < 2 || self.replicates < 2 {
            return None;
        }
        let base = self.seed ^ fnv1a(name.as_bytes());
        let values: Vec<f64> = (0..self.replicates)
            .into_par_iter()
            .map(|r| {
                let mut rng = ChaCha8Rng::seed_from_u64(base);
                rng.set_stream(r as u64);
                let idx: Vec<usize> = (0..units).map(|_| rng.gen_range(0..units)).collect();
                statistic(&idx)
            })
            .filter(|v| v.is_finite())
            .collect();
        if values.len() < 2 {
            return None;
        }
        let m = mean(&values);
        let var = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64;
        Some(var.sqrt())
    }
}

/// 64-bit FNV-1a: a stable, dependency-free hash for deriving per-metric seeds.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Sum of numerators over sum of denominators of the chosen units (a pooled rate).
pub(crate) fn pooled(num: &[f64], den: &[f64], idx: &[usize]) -> f64 {
    let (n, d) = idx
        .iter()
        .fold((0.0, 0.0), |(n, d), &i| (n + num[i], d + den[i]));
    if d > 0.0 {
        n / d
    } else {
        f64::NAN
    }
}

/// Mean of the chosen units' values, skipping NaN (units without data).
pub(crate) fn mean_of(values: &[f64], idx: &[usize]) -> f64 {
    let (s, c) = idx
        .iter()
        .map(|&i| values[i])
        .filter(|v| !v.is_nan())
        .fold((0.0, 0usize), |(s, c), v| (s + v, c + 1));
    if c > 0 {
        s / c as f64
    } else {
        f64::NAN
    }
}

/// Median of the chosen units' values, skipping NaN.
pub(crate) fn median_of(values: &[f64], idx: &[usize]) -> f64 {
    let v: Vec<f64> = idx
        .iter()
        .map(|&i| values[i])
        .filter(|v| !v.is_nan())
        .collect();
    quantile(&v, 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_linearly() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn entropy_of_uniform_is_ln_k() {
        for k in [1usize, 2, 7, 50] {
            assert!((entropy_nats(&vec![3.0; k]) - (k as f64).ln()).abs() < 1e-12);
        }
    }
}
