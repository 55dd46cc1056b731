//! Dream's token choice (`sample_tokens` in `DreamGenerationMixin._sample`): the logits divided
//! by the temperature (when positive), top-p then top-k filtered to float32's lowest value, and
//! their float32 softmax; the token is a categorical draw from it (temperature > 0) or its most
//! probable entry, and the scores (`maskgit_plus`'s probability, `topk_margin`'s margin,
//! `entropy`'s `sum p log(p + 1e-10)`) read that filtered distribution.
//!
//! On the CPU, a top-k filtered step without top-p is computed on the filter's support only
//! (`../cpu/sparse.rs`, the same bits as the full rows).

use tch::{Kind, Tensor};

use super::dream_filters::{
    argmax_rows, gather_rows, neg_entropy, top_k_filter, top_p_filter, TopK,
};
use super::token::TokenChoice;
use super::view::StepView;
use crate::decode::cpu::{self, sparse, FastPath};
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
    hints: &mut Vec<f32>,
) -> Result<Vec<f32>, ProbeError> {
    let n = view.positions().len();
    if n == 0 {
        view.set_choice(Vec::new(), Vec::new(), Some(Vec::new()), Some(Vec::new()));
        return Ok(Vec::new());
    }
    if let Some(c) = on_support(token, view, reads, hints)? {
        cpu::ran(FastPath::DreamSupport);
        view.set_choice(c.tokens, c.probs.clone(), c.margin, c.sum_p_log_p);
        return Ok(c.probs);
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
    if cpu::enabled(FastPath::InverseCdf) {
        if let Some(picks) = cpu::inverse_cdf(probs, &Vec::<f64>::try_from(&u.f_flatten(0, -1)?)?) {
            cpu::ran(FastPath::InverseCdf);
            return Ok(Tensor::f_from_slice(&picks)?);
        }
    }
    let cum = probs.f_cumsum(-1, Kind::Double)?;
    let total = cum.f_narrow(-1, v - 1, 1)?;
    let target = u.f_neg()?.f_add_scalar(1.0)?.f_mul(&total)?;
    let below = cum
        .f_lt_tensor(&target)?
        .f_sum_dim_intlist(-1, false, Kind::Int64)?;
    Ok(below.f_clamp_max(v - 1)?)
}

/// What the support path computed, per slot.
struct OnSupport {
    tokens: Vec<i64>,
    probs: Vec<f32>,
    margin: Option<Vec<f32>>,
    sum_p_log_p: Option<Vec<f32>>,
}

/// [`choose_all`] with a top-k filter and no top-p, on the filter's support only (CPU float32
/// logits; see `../cpu/sparse.rs`): the same tokens, probabilities and scores as the full rows
/// give. `None` where the full rows are needed.
fn on_support(
    token: &TokenChoice,
    view: &StepView,
    reads: Reads,
    hints: &mut Vec<f32>,
) -> Result<Option<OnSupport>, ProbeError> {
    let Some(k) = token.top_k else {
        return Ok(None);
    };
    if token.top_p.is_some_and(|t| t < 1.0) || !cpu::enabled(FastPath::DreamSupport) {
        return Ok(None);
    }
    let logits = view.logits();
    // SAFETY: the view's logits are only read until this function returns; nothing writes
    // to them meanwhile.
    let Some(data) = (unsafe { cpu::cpu_f32(logits) }) else {
        return Ok(None);
    };
    let v = logits.size()[1] as usize;
    let n = view.positions().len();
    let rows: Vec<i64> = (0..n as i64).collect();
    hints.resize(n, f32::NAN);
    // The view's forbidden ids are already at -inf in its logits.
    let Some(support) = sparse::top_k_support(data, v, &rows, k, token.temperature, &[], hints)
    else {
        return Ok(None);
    };
    let Some((probs, sums)) = sparse::probabilities(&support, v, reads.sum_p_log_p)? else {
        return Ok(None);
    };
    // `sample`'s draw, on the same stream.
    let u = match token.temperature > 0.0 {
        true => Vec::<f64>::try_from(&Tensor::f_rand(
            [n as i64],
            (Kind::Double, logits.device()),
        )?)?,
        false => Vec::new(),
    };
    let mut out = OnSupport {
        tokens: Vec::with_capacity(n),
        probs: Vec::with_capacity(n),
        margin: reads.margin.then(|| Vec::with_capacity(n)),
        sum_p_log_p: reads.sum_p_log_p.then_some(sums),
    };
    let mut cum = Vec::with_capacity(k);
    for r in 0..n {
        let (idx, p) = (&support.idx[r * k..(r + 1) * k], &probs[r * k..(r + 1) * k]);
        let j = if token.temperature > 0.0 {
            // `sample`'s inverse CDF on the kept entries: the zeros between them add nothing
            // to the running sum.
            let Some(j) = cpu::inverse_cdf_row(p, u[r], &mut cum) else {
                return Ok(None);
            };
            j
        } else {
            // The first maximum.
            let mut best = 0;
            for j in 1..k {
                if p[j] > p[best] {
                    best = j;
                }
            }
            best
        };
        out.tokens.push(idx[j] as i64);
        out.probs.push(p[j]);
        if let Some(margin) = &mut out.margin {
            // `probs.topk(2)`: the second value is 0 (off the support) when k = 1.
            let (mut first, mut second) = (
                f32::NEG_INFINITY,
                if k == 1 { 0.0 } else { f32::NEG_INFINITY },
            );
            for &q in p {
                if q > first {
                    second = first;
                    first = q;
                } else if q > second {
                    second = q;
                }
            }
            margin.push(first - second);
        }
    }
    Ok(Some(out))
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        &t.f_to_kind(Kind::Float)?.f_to_device(tch::Device::Cpu)?,
    )?)
}
