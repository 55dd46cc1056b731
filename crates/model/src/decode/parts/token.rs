//! Which token a position takes.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::view::StepView;
use crate::error::ProbeError;

/// The token choice: a temperature, optional top-k and top-p filters, and the [`TokenRule`]
/// that says how they shape the choice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenChoice {
    pub temperature: f64,
    /// Keep the `top_k` largest logits of each position.
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (always the first).
    pub top_p: Option<f64>,
    /// Never choose the mask id: its logit is set to -inf before anything is computed, so
    /// every position is filled (the `threshold` and `fixed` schedules); upstream samplers
    /// keep it.
    pub forbid_mask: bool,
    /// Never choose the caller's end-of-text / end-of-turn ids (`forbid_eot`).
    pub forbid_eot: bool,
    pub rule: TokenRule,
}

/// How the temperature and filters shape the token choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRule {
    /// Greedy argmax of the logits at temperature 0 (the filters are not applied: they never
    /// change the argmax, as in the LLaDA2.0 sampler's `sample_tokens`); otherwise Gumbel-max
    /// sampling of `softmax(logits / temperature)` after top-k and top-p (LLaDA's
    /// `add_gumbel_noise`). The scores read the model's own distribution.
    GumbelMax,
    /// Dream's `sample_tokens`: temperature, top-p, top-k and softmax at every temperature;
    /// the most probable token or a categorical draw (`dream_token.rs`). The scores read that
    /// filtered distribution.
    Dream,
}

impl TokenChoice {
    /// The greedy choice.
    pub fn argmax() -> TokenChoice {
        TokenChoice {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            forbid_mask: false,
            forbid_eot: false,
            rule: TokenRule::GumbelMax,
        }
    }

    /// Chooses the token of every slot of `view` under [`TokenRule::GumbelMax`]. Returns each
    /// one's probability under the distribution it was drawn from (float32) when sampling; at
    /// temperature 0 that is [`StepView::prob32`], left for the caller to compute where it
    /// needs it.
    pub fn choose(&self, view: &mut StepView) -> Result<Option<Vec<f32>>, ProbeError> {
        debug_assert_eq!(self.rule, TokenRule::GumbelMax);
        if self.temperature == 0.0 {
            return Ok(None);
        }
        let mut logits = view.logits().shallow_clone();
        if let Some(k) = self.top_k {
            let k = (k as i64).min(logits.size()[1]);
            let (top, _) = logits.f_topk(k, -1, true, true)?;
            let floor = top.f_narrow(1, k - 1, 1)?;
            logits = logits.f_masked_fill(&logits.f_lt_tensor(&floor)?, f64::NEG_INFINITY)?;
        }
        if let Some(p) = self.top_p {
            logits = top_p_filter(&logits, p)?;
        }
        // LLaDA's `add_gumbel_noise`: exp(logits) / (-ln u)^T in float64 samples
        // softmax(logits / T).
        let scaled = logits.f_to_kind(Kind::Double)?;
        let u = scaled.f_rand_like()?;
        let gumbel = u.f_log()?.f_neg()?.f_pow_tensor_scalar(self.temperature)?;
        let x0 = scaled.f_exp()?.f_div(&gumbel)?.f_argmax(-1, false)?;
        let probs = logits
            .f_div_scalar(self.temperature)?
            .f_softmax(-1, Kind::Float)?
            .f_gather(1, &x0.f_unsqueeze(1)?, false)?
            .f_squeeze_dim(1)?;
        view.set_tokens(Vec::<i64>::try_from(&x0.f_to_device(tch::Device::Cpu)?)?);
        Ok(Some(Vec::<f32>::try_from(
            &probs.f_to_device(tch::Device::Cpu)?,
        )?))
    }
}

/// Nucleus filtering: sorts each row, removes the tokens after the cumulative probability
/// first exceeds `top_p` (the token that crosses it stays), as transformers' `TopPLogitsWarper`.
fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    if top_p >= 1.0 {
        return Ok(logits.shallow_clone());
    }
    let (sorted, idx) = logits.f_sort(-1, true)?;
    let cum = sorted
        .f_softmax(-1, Kind::Float)?
        .f_cumsum(-1, Kind::Float)?;
    // Remove where the mass *before* the token already exceeds top_p.
    let before = cum.f_sub(&sorted.f_softmax(-1, Kind::Float)?)?;
    let remove_sorted = before.f_gt(top_p)?;
    let remove = remove_sorted.f_scatter(1, &idx, &remove_sorted)?;
    Ok(logits.f_masked_fill(&remove, f64::NEG_INFINITY)?)
}
