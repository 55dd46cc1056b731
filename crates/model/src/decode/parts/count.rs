//! How many of the eligible positions commit in one step, and which.

use serde::Serialize;

use tch::{Device, Kind, Tensor};

use super::even::even_schedule;
use super::score::Scores;
use super::unique_top_k::unique_top_k;
use crate::error::ProbeError;

/// How a block's masks are spread over its steps, for the scheduled counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Curve {
    /// LLaDA's even split (`get_num_transfer_tokens`).
    Even,
    /// `k` per step, the last steps what is left.
    Fixed(usize),
    /// MaskGIT's cosine: after step `s` of `S`, `floor(n * cos(pi/2 * (s+1)/S))` stay masked.
    Cosine,
    /// Linear: after step `s` of `S`, `floor(n * (1 - (s+1)/S))` stay masked.
    Linear,
}

impl Curve {
    /// Tokens per step for `n` tokens over `steps` steps; the counts sum to `n`.
    pub fn schedule(self, n: usize, steps: usize) -> Vec<usize> {
        let left_after = |s: usize| -> usize {
            let t = (s + 1) as f64 / steps as f64;
            let left = match self {
                Curve::Even | Curve::Fixed(_) => unreachable!(),
                Curve::Cosine => (n as f64 * (std::f64::consts::FRAC_PI_2 * t).cos()).floor(),
                Curve::Linear => (n as f64 * (1.0 - t)).floor(),
            };
            if s + 1 == steps {
                0
            } else {
                (left.max(0.0) as usize).min(n)
            }
        };
        match self {
            Curve::Even => even_schedule(n, steps),
            Curve::Fixed(k) => (0..steps).map(|s| n.saturating_sub(s * k).min(k)).collect(),
            _ => {
                let mut before = n;
                (0..steps)
                    .map(|s| {
                        let after = left_after(s).min(before);
                        let k = before - after;
                        before = after;
                        k
                    })
                    .collect()
            }
        }
    }
}

/// The commit rule of a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "count", rename_all = "snake_case")]
pub enum Count {
    /// The block schedule's `k` for this step, highest scores first (LLaDA, PC-Sampler,
    /// Fast-dLLM without threshold or factor).
    TopK { curve: Curve },
    /// Fast-dLLM's threshold: the best position, and every position whose score is at least `threshold`.
    Threshold { threshold: f64 },
    /// Fast-dLLM's factor rule: the `m`-th best position needs a score of at least
    /// `1 - factor / (m + 1)`; upstream's quirks at the first and the last rank are kept.
    Factor { factor: f64 },
    /// The EB-sampler's entropy budget: in score order, the positions whose entropy sum
    /// before the largest so far stays within `gamma`; at least one.
    EntropyBudget { gamma: f64 },
    /// LLaDA2.0: every position scoring above `threshold` when there are at least the
    /// schedule's `k` of them, otherwise the top `min(k, eligible)`.
    ThresholdElseTopK { threshold: f64 },
    /// KLASS: every "ready" position (KL-stable over the history and scoring above
    /// `conf_threshold`) when there is one, otherwise the schedule's top-k.
    ReadyElseTopK {
        conf_threshold: f64,
        kl_threshold: f64,
        history: usize,
    },
    /// Dream's timestep count: at call `c` of `steps`, with timesteps
    /// `t = linspace(1, eps, steps + 1)` in float32, `int(n * (1 - t[c+1] / t[c]))` of the `n`
    /// eligible positions, all of them at the last call; the highest scores over the whole
    /// sequence (`topk`), or with `alg_temp > 0` a draw without replacement from
    /// `softmax(score / alg_temp)`.
    Timesteps {
        eps: f64,
        steps: usize,
        alg_temp: f64,
    },
    /// Dream's `origin`: each eligible position independently, with probability
    /// `1 - t[c+1] / t[c]` (1 at the last call), from one float32 uniform per position.
    Bernoulli { eps: f64, steps: usize },
}

/// What a count may read besides the scores, aligned with the eligible positions.
#[derive(Debug, Default)]
pub struct CountInputs {
    /// The schedule's `k` for this step.
    pub scheduled: usize,
    /// Entropies (float32), for the entropy budget.
    pub entropy: Option<Vec<f32>>,
    /// KL stability, for KLASS.
    pub stable: Option<Vec<bool>>,
    /// This call's timesteps `(t[c], t[c+1])` and whether it is the last, for Dream's counts.
    pub timestep: Option<(f32, f32, bool)>,
    /// The eligible positions (absolute, ascending), the sequence's length and the model's
    /// device: counts that rank or draw over the whole sequence as upstream does.
    pub positions: Vec<usize>,
    pub seq_len: usize,
    pub device: Option<Device>,
}

impl Count {
    /// Indices into the eligible positions (and `scores`) of the positions to commit.
    pub fn select(&self, scores: &Scores, inputs: &CountInputs) -> Result<Vec<usize>, ProbeError> {
        let n = scores.values.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        match self {
            Count::Timesteps { alg_temp, .. } => {
                return dream_transfer(scores, inputs, *alg_temp);
            }
            Count::Bernoulli { .. } => {
                let (t, s, last) = inputs.timestep.expect("Dream's counts are given timesteps");
                let device = inputs.device.unwrap_or(Device::Cpu);
                let draws = Tensor::f_rand([n as i64], (Kind::Float, device))?;
                let draws = Vec::<f32>::try_from(&draws.f_to_device(Device::Cpu)?)?;
                let p = if last { 1.0f32 } else { 1.0f32 - s / t };
                return Ok((0..n).filter(|&i| draws[i] < p).collect());
            }
            _ => {}
        }
        let order = rank(&scores.values);
        Ok(match self {
            Count::TopK { .. } => order[..inputs.scheduled.min(n)].to_vec(),
            Count::Threshold { threshold } => {
                let t = scores.threshold(*threshold);
                let mut picked: Vec<usize> = order
                    .iter()
                    .enumerate()
                    .filter(|&(r, &i)| r == 0 || scores.values[i] >= t)
                    .map(|(_, &i)| i)
                    .collect();
                picked.sort_unstable();
                picked
            }
            Count::Factor { factor } => {
                // Scan the ranks and stop at the first score below its threshold
                // (`thr_0 = -1`, `thr_r = 1 - f/(r+2)`); upstream then adds one when the stop is
                // at the first or the last rank, so a failing last rank is committed too.
                let mut r = n - 1;
                for (rank, &i) in order.iter().enumerate() {
                    let thr = if rank == 0 {
                        -1.0
                    } else {
                        1.0 - factor / (rank + 2) as f64
                    };
                    if scores.values[i] < thr {
                        r = rank;
                        break;
                    }
                }
                if r == 0 || r == n - 1 {
                    r += 1;
                }
                order[..r].to_vec()
            }
            Count::EntropyBudget { gamma } => {
                let h = inputs
                    .entropy
                    .as_ref()
                    .expect("the entropy budget is given entropies");
                // cumsum (accumulated in float64 as torch's CPU cumsum does, each prefix
                // rounded to float32) minus cummax, in float32.
                let gamma = *gamma as f32;
                let (mut sum, mut max) = (0f64, f32::NEG_INFINITY);
                let mut k = 0;
                for &i in &order {
                    sum += h[i] as f64;
                    max = max.max(h[i]);
                    if (sum as f32) - max <= gamma {
                        k += 1;
                    }
                }
                order[..k.clamp(1, n)].to_vec()
            }
            Count::ThresholdElseTopK { threshold } => {
                let t = scores.threshold(*threshold);
                let high: Vec<usize> = (0..n).filter(|&i| scores.values[i] > t).collect();
                let k = inputs.scheduled;
                if high.len() >= k {
                    high
                } else {
                    order[..k.min(n)].to_vec()
                }
            }
            Count::ReadyElseTopK { conf_threshold, .. } => {
                let stable = inputs
                    .stable
                    .as_ref()
                    .expect("KLASS is given the KL stability");
                let t = scores.threshold(*conf_threshold);
                let ready: Vec<usize> = (0..n)
                    .filter(|&i| stable[i] && scores.values[i] > t)
                    .collect();
                if ready.is_empty() {
                    order[..inputs.scheduled.min(n)].to_vec()
                } else {
                    ready
                }
            }
            Count::Timesteps { .. } | Count::Bernoulli { .. } => unreachable!("handled above"),
        })
    }

    /// Dream's `(eps, steps)` when the count follows its timesteps.
    pub fn timesteps(&self) -> Option<(f64, usize)> {
        match self {
            Count::Timesteps { eps, steps, .. } | Count::Bernoulli { eps, steps } => {
                Some((*eps, *steps))
            }
            _ => None,
        }
    }

    /// How the block's masks are spread over its steps for this count's `k`.
    pub fn curve(&self) -> Curve {
        match self {
            Count::TopK { curve } => *curve,
            _ => Curve::Even,
        }
    }

    /// The KL history length this count needs, if any.
    pub fn needs_kl_history(&self) -> Option<usize> {
        match self {
            Count::ReadyElseTopK { history, .. } => Some(*history),
            _ => None,
        }
    }

    /// Whether every step with an eligible position commits at least one (so a block run
    /// until it is filled ends).
    pub fn always_commits(&self) -> bool {
        matches!(
            self,
            Count::Threshold { .. } | Count::Factor { .. } | Count::EntropyBudget { .. }
        )
    }
}

/// [`Count::Timesteps`]: `k` from the timesteps, then `topk` (or the `alg_temp` draw) over the
/// whole sequence's confidences, -inf where a position is not eligible, as upstream's
/// `full_confidence`.
fn dream_transfer(
    scores: &Scores,
    inputs: &CountInputs,
    alg_temp: f64,
) -> Result<Vec<usize>, ProbeError> {
    let n = scores.values.len();
    let (t, s, last) = inputs.timestep.expect("Dream's counts are given timesteps");
    // `int(n * (1 - s / t))` in float32, all remaining positions at the last call. Upstream
    // counts the batch's mean; each row's own count keeps rows independent of their batch and
    // equals upstream for one prompt.
    let k = if last {
        n
    } else {
        ((n as f32 * (1.0f32 - s / t)) as usize).min(n)
    };
    if k == 0 {
        return Ok(Vec::new());
    }
    let mut row = vec![f32::NEG_INFINITY; inputs.seq_len];
    for (&p, &v) in inputs.positions.iter().zip(&scores.values) {
        row[p] = v as f32;
    }
    let device = inputs.device.unwrap_or(Device::Cpu);
    let picked: Vec<usize> = if alg_temp > 0.0 {
        let weights = Tensor::f_from_slice(&row)?
            .f_to_device(device)?
            .f_div_scalar(alg_temp)?
            .f_softmax(-1, Kind::Float)?;
        host_indices(&weights.f_multinomial(k as i64, false)?)?
    } else if let Some(top) = unique_top_k(&row, k) {
        top
    } else {
        // A tie at the boundary: `topk`'s own order decides, as upstream.
        let (_, idx) = Tensor::f_from_slice(&row)?
            .f_to_device(device)?
            .f_topk(k as i64, -1, true, true)?;
        host_indices(&idx)?
    };
    let mut chosen: Vec<usize> = picked
        .into_iter()
        .filter_map(|p| inputs.positions.binary_search(&p).ok())
        .collect();
    chosen.sort_unstable();
    Ok(chosen)
}

fn host_indices(t: &Tensor) -> Result<Vec<usize>, ProbeError> {
    Ok(Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?)?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}

/// Indices sorted by score, highest first; equal scores keep position order.
fn rank(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(v: &[f64]) -> Scores {
        Scores {
            values: v.to_vec(),
            float32: false,
        }
    }

    #[test]
    fn curves_sum_to_n() {
        for curve in [Curve::Even, Curve::Cosine, Curve::Linear] {
            for (n, s) in [(32, 8), (7, 3), (5, 9), (0, 4)] {
                let k = curve.schedule(n, s);
                assert_eq!(k.len(), s);
                assert_eq!(k.iter().sum::<usize>(), n, "{curve:?} {n} over {s}");
            }
        }
        assert_eq!(Curve::Fixed(4).schedule(10, 3), vec![4, 4, 2]);
        // Cosine commits few early and many late.
        assert_eq!(Curve::Cosine.schedule(16, 4), vec![2, 3, 5, 6]);
        assert_eq!(Curve::Linear.schedule(16, 4), vec![4, 4, 4, 4]);
    }

    #[test]
    fn threshold_keeps_the_best_and_everything_above() {
        let c = Count::Threshold { threshold: 0.5 };
        let inputs = CountInputs::default();
        assert_eq!(
            c.select(&scores(&[0.2, 0.6, 0.5, 0.1]), &inputs).unwrap(),
            vec![1, 2]
        );
        assert_eq!(
            c.select(&scores(&[0.2, 0.3, 0.1]), &inputs).unwrap(),
            vec![1]
        );
    }

    #[test]
    fn factor_rule_keeps_upstreams_quirks() {
        let c = Count::Factor { factor: 1.0 };
        let inputs = CountInputs::default();
        // Thresholds: rank 1 needs 1 - 1/3, rank 2 needs 1 - 1/4.
        // Stop at rank 2 (0.7 < 0.75): commit 2.
        assert_eq!(
            c.select(&scores(&[0.9, 0.8, 0.7, 0.1]), &inputs)
                .unwrap()
                .len(),
            2
        );
        // Stop at rank 1, the middle: commit 1.
        assert_eq!(
            c.select(&scores(&[0.9, 0.5, 0.4]), &inputs).unwrap().len(),
            1
        );
        // First failure at the last rank: every position, the failing one included.
        assert_eq!(
            c.select(&scores(&[0.9, 0.8, 0.1]), &inputs).unwrap().len(),
            3
        );
        // One eligible position: 1.
        assert_eq!(c.select(&scores(&[0.01]), &inputs).unwrap().len(), 1);
    }

    #[test]
    fn entropy_budget_sums_all_but_the_largest() {
        let c = Count::EntropyBudget { gamma: 1.0 };
        let inputs = CountInputs {
            entropy: Some(vec![0.5, 0.2, 0.9, 3.0]),
            ..Default::default()
        };
        // Order by -entropy: 0.2, 0.5, 0.9, 3.0; budgets 0, 0.2, 0.7, 1.6.
        let s = scores(&[-0.5, -0.2, -0.9, -3.0]);
        assert_eq!(c.select(&s, &inputs).unwrap(), vec![1, 0, 2]);
        let tight = Count::EntropyBudget { gamma: 0.0 };
        assert_eq!(tight.select(&s, &inputs).unwrap(), vec![1]);
    }

    #[test]
    fn threshold_else_top_k_takes_either_branch() {
        let c = Count::ThresholdElseTopK { threshold: 0.5 };
        let s = scores(&[0.9, 0.6, 0.1, 0.7]);
        let two = CountInputs {
            scheduled: 2,
            ..Default::default()
        };
        assert_eq!(c.select(&s, &two).unwrap(), vec![0, 1, 3]);
        let four = CountInputs {
            scheduled: 4,
            ..Default::default()
        };
        assert_eq!(c.select(&s, &four).unwrap(), vec![0, 3, 1, 2]);
    }
}
