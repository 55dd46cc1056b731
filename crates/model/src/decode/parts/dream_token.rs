//! Dream's token choice (`sample_tokens` in `DreamGenerationMixin._sample`): the logits divided
//! by the temperature (when positive), top-p then top-k filtered to float32's lowest value, and
//! their float32 softmax; the token is a categorical draw from it (temperature > 0) or its most
//! probable entry, and the scores (`maskgit_plus`'s probability, `topk_margin`'s margin,
//! `entropy`'s `sum p log(p + 1e-10)`) read that filtered distribution.

use tch::{Kind, Tensor};

use super::dream_filters::{
    argmax_rows, gather_rows, neg_entropy, top_k_filter, top_p_filter, TopK,
};
use super::token::TokenChoice;
use super::view::StepView;
use crate::error::ProbeError;

/// Which of the filtered distribution's per-slot values the step's score reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Reads {
    pub margin: bool,
    pub sum_p_log_p: bool,
}

/// Chooses the token of every slot of `view` and sets it, its probability and what `reads`
/// asks for into the view ([`StepView::set_choice`]). Returns the probabilities.
pub(crate) fn choose_all(
    token: &TokenChoice,
    view: &mut StepView,
    reads: Reads,
) -> Result<Vec<f32>, ProbeError> {
    let n = view.positions().len();
    if n == 0 {
        view.set_choice(Vec::new(), Vec::new(), Some(Vec::new()), Some(Vec::new()));
        return Ok(Vec::new());
    }
    let dist = filtered(token, view.logits().shallow_clone())?;
    let x0 = pick(token, &dist)?;
    let prob = gather_rows(&dist.probs, &x0)?;
    let margin = match reads.margin {
        true => {
            let (top2, _) = dist.probs.f_topk(2, -1, true, true)?;
            Some(host_f32(
                &top2.f_select(-1, 0)?.f_sub(&top2.f_select(-1, 1)?)?,
            )?)
        }
        false => None,
    };
    let sum_p_log_p = match reads.sum_p_log_p {
        true => Some(host_f32(&neg_entropy(&dist.probs, dist.support.as_ref())?)?),
        false => None,
    };
    let probs = host_f32(&prob)?;
    view.set_choice(
        Vec::<i64>::try_from(&x0.f_to_device(tch::Device::Cpu)?)?,
        probs.clone(),
        margin,
        sum_p_log_p,
    );
    Ok(probs)
}

/// The tokens and probabilities of the slots `slots` only (Dream's `origin`, which samples the
/// positions it has already chosen to commit, after drawing them).
pub(crate) fn choose_some(
    token: &TokenChoice,
    view: &StepView,
    slots: &[usize],
) -> Result<(Vec<i64>, Vec<f32>), ProbeError> {
    if slots.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let dist = filtered(token, view.rows(slots)?)?;
    let x0 = pick(token, &dist)?;
    let prob = gather_rows(&dist.probs, &x0)?;
    Ok((
        Vec::<i64>::try_from(&x0.f_to_device(tch::Device::Cpu)?)?,
        host_f32(&prob)?,
    ))
}

/// Dream's filtered distribution of logit rows `[n, V]`, and what is known of it.
struct Filtered {
    probs: Tensor,
    /// `[n, k]` indices outside which every probability is exactly 0, when known.
    support: Option<Tensor>,
    /// `[n]` index of each row's largest probability (its first maximum), when known.
    first: Option<Tensor>,
}

/// Temperature, top-p, top-k, softmax, in upstream's order.
fn filtered(token: &TokenChoice, logits: Tensor) -> Result<Filtered, ProbeError> {
    let mut logits = logits;
    if token.temperature > 0.0 {
        logits = logits.f_div_scalar(token.temperature)?;
    }
    if let Some(top_p) = token.top_p.filter(|&t| t < 1.0) {
        logits = top_p_filter(&logits, top_p)?;
    }
    let (mut support, mut first) = (None, None);
    if let Some(top_k) = token.top_k {
        let v = logits.size()[1];
        let kept;
        TopK {
            kept,
            support,
            first,
        } = top_k_filter(&logits, (top_k as i64).min(v))?;
        logits = kept;
    }
    Ok(Filtered {
        probs: logits.f_softmax(-1, Kind::Float)?,
        support,
        first,
    })
}

/// The token of each row: a categorical draw at temperature > 0, else `probs.max(-1)`'s index
/// (the first maximum), known without a pass over the rows when the top-k filter found it.
fn pick(token: &TokenChoice, dist: &Filtered) -> Result<Tensor, ProbeError> {
    if token.temperature > 0.0 {
        return sample(&dist.probs);
    }
    match &dist.first {
        Some(first) => Ok(first.shallow_clone()),
        None => argmax_rows(&dist.probs),
    }
}

/// A draw from `Categorical(probs)` per row, by inverse CDF with one `torch.rand(n, float64)`:
/// the first index whose float64 cumulative mass reaches `(1 - u)` times the row's total
/// (positive, so a zero-probability token is never drawn). Upstream's `multinomial` draws `V`
/// exponentials per row instead, which on the CPU cost more than the model call: the same
/// distribution, not its stream.
fn sample(probs: &Tensor) -> Result<Tensor, ProbeError> {
    let (n, v) = (probs.size()[0], probs.size()[1]);
    let device = probs.device();
    if n == 0 {
        return Ok(Tensor::f_zeros([0], (Kind::Int64, device))?);
    }
    let u = Tensor::f_rand([n, 1], (Kind::Double, device))?;
    let cum = probs.f_cumsum(-1, Kind::Double)?;
    let total = cum.f_narrow(-1, v - 1, 1)?;
    let target = u.f_neg()?.f_add_scalar(1.0)?.f_mul(&total)?;
    let below = cum
        .f_lt_tensor(&target)?
        .f_sum_dim_intlist(-1, false, Kind::Int64)?;
    Ok(below.f_clamp_max(v - 1)?)
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        &t.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?,
    )?)
}
