//! What one model call says about the positions a step asked for.

use tch::{Device, Kind, Tensor};

use crate::error::ProbeError;

/// The logits of some masked positions at one step, and the per-position values the
/// published samplers compute from them, each computed once and on request.
///
/// Values are indexed by *slot*: slot `i` is `positions()[i]`. The `[n, V]` logits stay on
/// the model's device; only per-position values (`[n]`) are copied to the host. Every value
/// is computed with the operations, dtypes and order of the upstream samplers (noted on each
/// method), so that their traces are reproduced bit for bit.
pub struct StepView {
    positions: Vec<usize>,
    logits: Tensor,
    tokens: Option<Vec<i64>>,
    /// Whether `tokens` were chosen by [`StepView::set_tokens`] rather than the argmax.
    sampled: bool,
    prob32: Option<Vec<f32>>,
    /// The float64 softmax of some slots, and which: the score and the KL history of a step
    /// ask for the same slots, so it is computed once.
    softmax64: Option<(Vec<usize>, Tensor)>,
    entropy: Option<Vec<f32>>,
    margin: Option<Vec<f32>>,
    sum_p_log_p: Option<Vec<f32>>,
}

impl StepView {
    /// `logits` is float32 `[positions.len(), V]`, row `i` predicting `positions[i]`.
    pub fn new(positions: Vec<usize>, logits: Tensor) -> StepView {
        StepView {
            positions,
            logits,
            tokens: None,
            sampled: false,
            prob32: None,
            softmax64: None,
            entropy: None,
            margin: None,
            sum_p_log_p: None,
        }
    }

    /// Sets the logits of `ids` to -inf in every slot, before any value is computed from them.
    pub fn forbid(&mut self, ids: &[i64]) -> Result<(), ProbeError> {
        debug_assert!(self.tokens.is_none() && self.prob32.is_none());
        if ids.is_empty() {
            return Ok(());
        }
        let ids = Tensor::f_from_slice(ids)?.f_to_device(self.logits.device())?;
        let _ = self.logits.f_index_fill_(1, &ids, f64::NEG_INFINITY)?;
        Ok(())
    }

    /// The absolute positions of the slots, ascending.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }

    /// The slot of `position`, if the view holds it.
    pub fn slot(&self, position: usize) -> Option<usize> {
        self.positions.binary_search(&position).ok()
    }

    /// The float32 logits `[n, V]`, on the model's device.
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// The token of each slot: the argmax (first maximum) unless [`StepView::set_tokens`]
    /// chose others.
    pub fn tokens(&mut self) -> Result<&[i64], ProbeError> {
        if self.tokens.is_none() {
            // `max` over a dimension returns the first maximum's index, as `argmax` does,
            // and measured faster on the CPU.
            let (_, x0) = self.logits.f_max_dim(-1, false)?;
            self.tokens = Some(host_i64(&x0)?);
        }
        Ok(self.tokens.as_deref().unwrap_or_default())
    }

    /// [`StepView::tokens`] of some slots only, computed on their rows alone unless every
    /// slot's token is already known.
    pub fn tokens_of(&mut self, slots: &[usize]) -> Result<Vec<i64>, ProbeError> {
        if let Some(all) = &self.tokens {
            return Ok(slots.iter().map(|&s| all[s]).collect());
        }
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        let rows = Tensor::f_from_slice(&rows)?.f_to_device(self.logits.device())?;
        let (_, at) = self.logits.f_index_select(0, &rows)?.f_max_dim(-1, false)?;
        host_i64(&at)
    }

    /// Replaces the tokens (a sampled choice); confidences follow the new tokens.
    pub fn set_tokens(&mut self, tokens: Vec<i64>) {
        debug_assert_eq!(tokens.len(), self.positions.len());
        self.tokens = Some(tokens);
        self.sampled = true;
        self.prob32 = None;
    }

    /// Sets what a token rule that shapes the distribution itself (Dream's `sample_tokens`)
    /// computed from it: each slot's token and its probability, and where computed, the
    /// margin and `sum p log(p + 1e-10)` of that distribution. The scores read these instead
    /// of computing them from the raw logits.
    pub(crate) fn set_choice(
        &mut self,
        tokens: Vec<i64>,
        prob32: Vec<f32>,
        margin: Option<Vec<f32>>,
        sum_p_log_p: Option<Vec<f32>>,
    ) {
        debug_assert_eq!(tokens.len(), self.positions.len());
        self.tokens = Some(tokens);
        self.sampled = true;
        self.prob32 = Some(prob32);
        self.margin = margin;
        self.sum_p_log_p = sum_p_log_p;
    }

    /// Dream's entropy confidence `(p * log(p + 1e-10)).sum(-1)` of each slot's distribution,
    /// float32 (the softmax of the logits unless the token rule set it).
    pub fn sum_p_log_p(&mut self) -> Result<&[f32], ProbeError> {
        if self.sum_p_log_p.is_none() {
            let p = self.logits.f_softmax(-1, Kind::Float)?;
            let h = super::dream_filters::neg_entropy(&p, None)?;
            self.sum_p_log_p = Some(host_f32(&h)?);
        }
        Ok(self.sum_p_log_p.as_deref().unwrap_or_default())
    }

    /// `softmax(logits)[token]` in float32 (LLaDA's `low_confidence`, PC-Sampler, LLaDA2.0).
    pub fn prob32(&mut self) -> Result<&[f32], ProbeError> {
        if self.prob32.is_none() {
            let probs = self.logits.f_softmax(-1, Kind::Float)?;
            let p = match self.sampled {
                true => probs
                    .f_gather(1, &self.token_tensor()?, false)?
                    .f_squeeze_dim(1)?,
                // At the argmax token this is the row's largest probability (the softmax
                // keeps the logits' order), found without the argmax itself.
                false => probs.f_amax([-1i64].as_slice(), false)?,
            };
            self.prob32 = Some(host_f32(&p)?);
        }
        Ok(self.prob32.as_deref().unwrap_or_default())
    }

    /// [`StepView::prob32`] of some slots only, computed on their rows alone unless every
    /// slot's value is already known (a step that ranks by another score needs the
    /// probability of the committed positions only).
    pub fn prob32_of(&mut self, slots: &[usize]) -> Result<Vec<f32>, ProbeError> {
        if let Some(all) = &self.prob32 {
            return Ok(slots.iter().map(|&s| all[s]).collect());
        }
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let picked = self.tokens_of(slots)?;
        let device = self.logits.device();
        let rows: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        let rows = Tensor::f_from_slice(&rows)?.f_to_device(device)?;
        let idx = Tensor::f_from_slice(&picked)?
            .f_unsqueeze(1)?
            .f_to_device(device)?;
        let p = self
            .logits
            .f_index_select(0, &rows)?
            .f_softmax(-1, Kind::Float)?
            .f_gather(1, &idx, false)?
            .f_squeeze_dim(1)?;
        host_f32(&p)
    }

    /// `softmax(logits.to(float64))[token]` of some slots (Fast-dLLM, KLASS).
    pub fn prob64_of(&mut self, slots: &[usize]) -> Result<Vec<f64>, ProbeError> {
        if slots.is_empty() {
            return Ok(Vec::new());
        }
        let p = match self.sampled {
            true => {
                let tokens = self.tokens_of(slots)?;
                let idx = Tensor::f_from_slice(&tokens)?
                    .f_unsqueeze(1)?
                    .f_to_device(self.logits.device())?;
                self.softmax64_of(slots)?
                    .f_gather(1, &idx, false)?
                    .f_squeeze_dim(1)?
            }
            false => self
                .softmax64_of(slots)?
                .f_amax([-1i64].as_slice(), false)?,
        };
        Ok(Vec::<f64>::try_from(&p.f_to_device(Device::Cpu)?)?)
    }

    /// The float64 softmax `[slots.len(), V]` of some slots (KLASS's distributions), row `i`
    /// for slot `slots[i]`.
    pub fn softmax64_of(&mut self, slots: &[usize]) -> Result<&Tensor, ProbeError> {
        let known = matches!(&self.softmax64, Some((s, _)) if s == slots);
        if !known {
            // `softmax(dtype=float64)` casts its input first: `softmax(logits.to(float64))`,
            // row by row, so a row's values do not depend on which other rows are computed.
            let p = self.rows(slots)?.f_softmax(-1, Kind::Double)?;
            self.softmax64 = Some((slots.to_vec(), p));
        }
        Ok(&self.softmax64.as_ref().expect("just computed").1)
    }

    /// The logits of some slots, `[slots.len(), V]` (the view's own tensor when they are all
    /// of its slots, in order).
    pub fn rows(&self, slots: &[usize]) -> Result<Tensor, ProbeError> {
        if slots.len() == self.positions.len() && slots.iter().enumerate().all(|(i, &s)| i == s) {
            return Ok(self.logits.shallow_clone());
        }
        let rows: Vec<i64> = slots.iter().map(|&s| s as i64).collect();
        let rows = Tensor::f_from_slice(&rows)?.f_to_device(self.logits.device())?;
        Ok(self.logits.f_index_select(0, &rows)?)
    }

    /// Entropy in nats, float32, the quantity `torch.distributions.Categorical(logits=l).entropy()`
    /// computes (the EB-sampler's).
    pub fn entropy(&mut self) -> Result<&[f32], ProbeError> {
        if self.entropy.is_none() {
            // `log_softmax` is `l - logsumexp(l)` in one kernel; its exp is the softmax of the
            // normalised logits. Both may differ from the three-step form in the last bit,
            // far below any decision margin of the traces (SCHEDULES.md: >= 2e-4).
            // H = logsumexp(l) - sum softmax(l) * l, with logsumexp(l) = max(l) - ln(max(p)):
            // the softmax at the row's maximum is 1 / sum exp(l - max). Two cheap maxima, one
            // softmax and one dot product per row instead of six passes; the result differs
            // from the upstream form in the last bits only, far below any decision margin of
            // the traces (SCHEDULES.md: >= 2e-4).
            let max = self.logits.f_amax([-1i64].as_slice(), false)?;
            let p = self.logits.f_softmax(-1, Kind::Float)?;
            let p_max = p.f_amax([-1i64].as_slice(), false)?;
            let h = max.f_sub(&p_max.f_log()?)?.f_sub(&Tensor::f_linalg_vecdot(
                &p,
                &self.logits,
                -1,
            )?)?;
            self.entropy = Some(host_f32(&h)?);
        }
        Ok(self.entropy.as_deref().unwrap_or_default())
    }

    /// Top-1 minus top-2 float32 probability (Dream's `topk_margin`).
    pub fn margin(&mut self) -> Result<&[f32], ProbeError> {
        if self.margin.is_none() {
            let (top, _) = self
                .logits
                .f_softmax(-1, Kind::Float)?
                .f_topk(2, -1, true, true)?;
            let m = top.f_select(1, 0)?.f_sub(&top.f_select(1, 1)?)?;
            self.margin = Some(host_f32(&m)?);
        }
        Ok(self.margin.as_deref().unwrap_or_default())
    }

    /// The `k` most probable tokens of every slot under the float32 softmax, as
    /// `(ids, probs)`, row-major `[n, k]`.
    pub fn top_k(&self, k: usize) -> Result<(Vec<i64>, Vec<f32>), ProbeError> {
        let (vals, ids) = self
            .logits
            .f_softmax(-1, Kind::Float)?
            .f_topk(k as i64, -1, true, true)?;
        Ok((
            host_i64(&ids.f_flatten(0, -1)?)?,
            host_f32(&vals.f_flatten(0, -1)?)?,
        ))
    }

    fn token_tensor(&mut self) -> Result<Tensor, ProbeError> {
        let device = self.logits.device();
        let tokens = self.tokens()?;
        Ok(Tensor::f_from_slice(tokens)?
            .f_unsqueeze(1)?
            .f_to_device(device)?)
    }
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        &t.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?,
    )?)
}

fn host_i64(t: &Tensor) -> Result<Vec<i64>, ProbeError> {
    Ok(Vec::<i64>::try_from(&t.f_to_device(Device::Cpu)?)?)
}
