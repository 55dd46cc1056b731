//! What orders the eligible positions of a step.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::background::Background;
use super::kl_history::KlHistory;
use super::view::StepView;
use crate::error::ProbeError;

/// The score that ranks eligible positions (higher first) and that threshold rules compare.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "score", rename_all = "snake_case")]
pub enum Score {
    /// `softmax(logits)[token]` in float32 (LLaDA's `low_confidence`, LLaDA2.0).
    Confidence,
    /// `softmax(logits.to(float64))[token]` (Fast-dLLM, KLASS).
    Confidence64,
    /// Top-1 minus top-2 probability.
    Margin,
    /// Negative entropy of the position's distribution (the EB-sampler's order).
    NegEntropy,
    /// Dream's `entropy` confidence: `(p * log(p + 1e-10)).sum(-1)` in float32, computed as
    /// written (of the filtered distribution under Dream's token rule).
    SumPLogP,
    /// No order: the count draws its positions without reading scores (Dream's `origin`).
    /// Tokens are then chosen after the count, for the committed positions only, and a
    /// commit's recorded score is its token's probability.
    Unranked,
    /// A uniform random number per position, drawn as LLaDA's `random` remasking draws them:
    /// `torch.rand` of one number per position of the whole sequence, on the model's device,
    /// so that a seed gives upstream's draws.
    Random,
    /// PC-Sampler's position-aware calibration: `exp(-lambda * j) * min(-p * ln(f_bg[token] + 1e-9), alpha)`
    /// with `j` the position's index in its block, all in float32.
    Pc {
        lambda: f64,
        alpha: f64,
        background: Background,
    },
    /// KL stability: minus the largest KL divergence of the position's recent history
    /// (needs the KL history, which `compose:` keeps whenever this score is chosen).
    KlStability { history: usize },
}

/// Scores aligned with the eligible positions, and the precision they were computed in:
/// float32 scores compare with a threshold cast to float32, as a float32 tensor compares
/// with a Python float in torch.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub values: Vec<f64>,
    pub float32: bool,
}

impl Scores {
    /// `threshold` in the scores' precision.
    pub fn threshold(&self, threshold: f64) -> f64 {
        if self.float32 {
            threshold as f32 as f64
        } else {
            threshold
        }
    }
}

impl Score {
    /// Scores of the eligible positions `eligible` (absolute, each held by `view`), in
    /// their order; `block_start` is the first position of the current block and `seq_len`
    /// the length of the whole sequence.
    pub fn compute(
        &self,
        view: &mut StepView,
        eligible: &[usize],
        (block_start, seq_len): (usize, usize),
        kl: Option<&mut KlHistory>,
    ) -> Result<Scores, ProbeError> {
        let slots: Vec<usize> = eligible
            .iter()
            .map(|&p| view.slot(p).expect("eligible positions are in the view"))
            .collect();
        let from32 = |all: &[f32]| Scores {
            values: slots.iter().map(|&s| all[s] as f64).collect(),
            float32: true,
        };
        Ok(match self {
            Score::Confidence => from32(view.prob32()?),
            Score::Confidence64 => Scores {
                values: view.prob64_of(&slots)?,
                float32: false,
            },
            Score::Margin => from32(view.margin()?),
            Score::SumPLogP => from32(view.sum_p_log_p()?),
            Score::Unranked => Scores {
                values: vec![0.0; eligible.len()],
                float32: true,
            },
            Score::NegEntropy => {
                let h: Vec<f32> = view.entropy()?.iter().map(|&h| -h).collect();
                from32(&h)
            }
            Score::Random => {
                let device = view.logits().device();
                let u = Tensor::f_rand([seq_len as i64], (Kind::Float, device))?;
                let u = Vec::<f32>::try_from(&u.f_to_device(tch::Device::Cpu)?)?;
                Scores {
                    values: eligible.iter().map(|&p| u[p] as f64).collect(),
                    float32: true,
                }
            }
            Score::Pc {
                lambda,
                alpha,
                background,
            } => {
                let f_bg = background.table()?;
                let tokens = view.tokens()?.to_vec();
                let p = view.prob32()?;
                let (neg_lambda, alpha, eps) = (-*lambda as f32, *alpha as f32, 1e-9f32);
                let values = eligible
                    .iter()
                    .zip(&slots)
                    .map(|(&pos, &s)| {
                        let f = f_bg[tokens[s] as usize];
                        let calibrated = (-p[s] * (f + eps).ln()).min(alpha);
                        let weight = (neg_lambda * (pos - block_start) as f32).exp();
                        (weight * calibrated) as f64
                    })
                    .collect();
                Scores {
                    values,
                    float32: true,
                }
            }
            Score::KlStability { .. } => {
                let kl = kl.expect("the KL history is kept when the score needs it");
                Scores {
                    values: kl.max_recent(eligible)?.into_iter().map(|d| -d).collect(),
                    float32: false,
                }
            }
        })
    }

    /// Whether the score reads the KL history.
    pub fn needs_kl_history(&self) -> Option<usize> {
        match self {
            Score::KlStability { history } => Some(*history),
            _ => None,
        }
    }
}
