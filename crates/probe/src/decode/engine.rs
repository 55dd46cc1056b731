//! The decoding loop of one batch: model calls, token choice, position selection, bookkeeping.
//!
//! Every per-position computation stays on the model's device as whole-tensor operations;
//! per step only the new generated ids and two `[B, G]` score tensors come back to the host.
//! Random draws use libtorch's global generator with the shapes, dtypes and order of the
//! upstream samplers, so that a seed given to `torch.manual_seed` upstream and to
//! [`tch::manual_seed`] here yields the same draws.

use tch::{Device, Kind, Tensor};

use super::schedule::{
    DreamAlg, DreamParams, FixedOrder, FixedParams, LladaParams, Remasking, Schedule, ThresholdParams, TokensPerStep,
};
use super::{Commit, DecodeOptions, DecodeProgress, StepTopK, Trajectory};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// One batch: rows left-padded to a common prompt length `p`, then `g` generated positions.
pub(super) struct Batch<'a> {
    pub model: &'a dyn MaskedDenoiser,
    pub schedule: &'a Schedule,
    pub opts: &'a DecodeOptions<'a>,
    pub prompts: Vec<&'a [i64]>,
    /// Prompts finished before this batch, and in all, for progress reports.
    pub prompts_done: usize,
    pub prompts_total: usize,
}

/// What one step decided, as `[B, G]` tensors on the device.
struct StepChoice {
    /// The token each position would take.
    x0: Tensor,
    /// Which positions take it now.
    transfer: Tensor,
    /// Probability of `x0` under the distribution it was drawn from.
    prob: Tensor,
    /// The score that ranked the positions.
    confidence: Tensor,
    /// The distribution `x0` was drawn from, `[B, G, V]`, for `--save-step-distributions`.
    probs: Tensor,
}

/// Host-side state of one row.
struct Row {
    prompt_len: usize,
    history: Vec<Vec<i64>>,
    commits: Vec<Commit>,
    distributions: Vec<StepTopK>,
}

impl<'a> Batch<'a> {
    pub fn run(self) -> Result<Vec<Trajectory>, ProbeError> {
        let model = self.model;
        let dev = model.device();
        let mask_id = model.mask_id();
        let b = self.prompts.len() as i64;
        let p = self.prompts.iter().map(|r| r.len()).max().unwrap_or(0) as i64;
        let g = self.schedule.gen_length() as i64;
        let v = model.vocab_size();

        // Left padding: padded slots hold the mask id (any id would do: `valid` hides them).
        let mut host = Vec::with_capacity((b * p) as usize);
        let mut valid_host = Vec::with_capacity((b * (p + g)) as usize);
        for row in &self.prompts {
            let pad = p as usize - row.len();
            host.extend(std::iter::repeat_n(mask_id, pad));
            host.extend_from_slice(row);
            valid_host.extend(std::iter::repeat_n(false, pad));
            valid_host.extend(std::iter::repeat_n(true, row.len() + g as usize));
        }
        let prompt_block = Tensor::f_from_slice(&host)?.f_view([b, p])?.f_to_device(dev)?;
        let valid = if valid_host.iter().all(|&x| x) {
            None
        } else {
            Some(Tensor::f_from_slice(&valid_host)?.f_view([b, p + g])?.f_to_device(dev)?)
        };
        let mut gen = Tensor::f_full([b, g], mask_id, (Kind::Int64, dev))?;
        let mut gen_host = vec![mask_id; (b * g) as usize];

        let mut rows: Vec<Row> = self
            .prompts
            .iter()
            .map(|r| Row {
                prompt_len: r.len(),
                history: vec![vec![mask_id; g as usize]],
                commits: Vec::new(),
                distributions: Vec::new(),
            })
            .collect();

        let forbidden = self.forbidden_ids(v)?;
        let positions = Tensor::f_arange(g, (Kind::Int64, dev))?;
        let ctx = Ctx { model, b, p, g, v, dev, mask_id, prompt_block: &prompt_block, valid: valid.as_ref(), forbidden };
        let dream_timesteps = match self.schedule {
            Schedule::Dream(d) => {
                // Upstream computes the timesteps on the model's device; so do we, so that
                // `1 - s / t` sees the same float32 values there.
                let ts = Tensor::f_linspace(1.0, d.eps, d.steps as i64 + 1, (Kind::Float, dev))?;
                Vec::<f32>::try_from(&ts.f_to_device(Device::Cpu)?)?
            }
            _ => Vec::new(),
        };

        let mut step = 0usize;
        loop {
            let masked_now: Vec<usize> =
                gen_host.chunks(g as usize).map(|r| r.iter().filter(|&&t| t == mask_id).count()).collect();
            let fixed_steps = self.schedule.steps();
            match fixed_steps {
                Some(n) if step >= n => break,
                None if masked_now.iter().all(|&m| m == 0) => break,
                _ => {}
            }
            let mask = gen.f_eq(mask_id)?;
            let choice = match self.schedule {
                Schedule::Llada(lp) => ctx.llada_step(lp, step, &gen, &mask, &positions)?,
                Schedule::Dream(dp) => ctx.dream_step(dp, step, &dream_timesteps, &gen, &mask, &masked_now)?,
                Schedule::Threshold(tp) => ctx.threshold_step(tp, &gen, &mask, &positions)?,
                Schedule::Fixed(fp) => ctx.fixed_step(fp, step, &gen, &mask)?,
            };
            gen = choice.x0.f_where_self(&choice.transfer, &gen)?;

            let new_host = Vec::<i64>::try_from(&gen.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
            let prob = Vec::<f32>::try_from(&choice.prob.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
            let conf = Vec::<f32>::try_from(
                &choice.confidence.f_to_kind(Kind::Float)?.f_flatten(0, -1)?.f_to_device(Device::Cpu)?,
            )?;
            let top = match self.opts.save_step_distributions {
                Some(k) => {
                    let (vals, ids) = choice.probs.f_topk(k as i64, -1, true, true)?;
                    Some((
                        Vec::<i64>::try_from(&ids.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?,
                        Vec::<f32>::try_from(&vals.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?,
                        k,
                    ))
                }
                None => None,
            };

            for (r, row) in rows.iter_mut().enumerate() {
                // A row without masks takes no part in a variable-length schedule's steps, so
                // its history does not depend on the other rows of the batch.
                if fixed_steps.is_none() && masked_now[r] == 0 {
                    continue;
                }
                let s = row.history.len() as u32 - 1;
                let range = r * g as usize..(r + 1) * g as usize;
                let old = &gen_host[range.clone()];
                let new = &new_host[range.clone()];
                let masked_after = new.iter().filter(|&&t| t == mask_id).count() as u32;
                for (j, (&o, &n)) in old.iter().zip(new).enumerate() {
                    if o == mask_id && n != mask_id {
                        row.commits.push(Commit {
                            step: s,
                            gen_index: j as u32,
                            token_id: n,
                            prob: prob[range.start + j],
                            confidence: conf[range.start + j],
                            masked_after,
                        });
                    }
                    if let (true, Some((ids, vals, k))) = (o == mask_id, &top) {
                        let at = (range.start + j) * k;
                        row.distributions.push(StepTopK {
                            step: s,
                            gen_index: j as u32,
                            top_ids: ids[at..at + k].to_vec(),
                            top_probs: vals[at..at + k].to_vec(),
                        });
                    }
                }
                row.history.push(new.to_vec());
            }
            gen_host = new_host;
            step += 1;
            if let Some(report) = self.opts.progress {
                report(&DecodeProgress {
                    prompts_done: self.prompts_done,
                    prompts_in_batch: self.prompts.len(),
                    prompts_total: self.prompts_total,
                    step,
                    steps: fixed_steps,
                });
            }
        }

        Ok(self
            .prompts
            .iter()
            .zip(rows)
            .map(|(prompt, row)| {
                debug_assert_eq!(row.prompt_len, prompt.len());
                Trajectory {
                    prompt_ids: prompt.to_vec(),
                    history: row.history,
                    commits: row.commits,
                    distributions: row.distributions,
                }
            })
            .collect())
    }

    /// Ids whose logits are set to -inf: the caller's eot ids when the schedule forbids them,
    /// and the mask id for the schedules of this crate (threshold, fixed), which must fill every
    /// position to terminate. The upstream samplers keep the mask id, as upstream does.
    fn forbidden_ids(&self, v: i64) -> Result<Option<Tensor>, ProbeError> {
        let mut ids = Vec::new();
        if self.schedule.forbids_eot() {
            ids.extend_from_slice(&self.opts.eot_ids);
        }
        if matches!(self.schedule, Schedule::Threshold(_) | Schedule::Fixed(_)) {
            ids.push(self.model.mask_id());
        }
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= v) {
            return Err(ProbeError::Input(format!("token id {bad} is outside the model's vocabulary (size {v})")));
        }
        if ids.is_empty() {
            return Ok(None);
        }
        Ok(Some(Tensor::f_from_slice(&ids)?.f_to_device(self.model.device())?))
    }
}

/// The fixed context of a batch's steps.
struct Ctx<'a> {
    model: &'a dyn MaskedDenoiser,
    b: i64,
    p: i64,
    g: i64,
    v: i64,
    dev: Device,
    mask_id: i64,
    prompt_block: &'a Tensor,
    valid: Option<&'a Tensor>,
    forbidden: Option<Tensor>,
}

impl Ctx<'_> {
    /// Logits `[B, G, V]` of the generated positions, with forbidden ids at -inf.
    fn logits(&self, gen: &Tensor, cfg_scale: f64) -> Result<Tensor, ProbeError> {
        let x = Tensor::f_cat(&[self.prompt_block, gen], 1)?;
        let mut logits = if cfg_scale > 0.0 {
            // Classifier-free guidance as in LLaDA's generate(): the unconditional row is the
            // same sequence with every prompt position masked; both go through one call.
            let un_prompt = self.prompt_block.f_full_like(self.mask_id)?;
            let un_x = Tensor::f_cat(&[&un_prompt, gen], 1)?;
            let both = Tensor::f_cat(&[&x, &un_x], 0)?;
            let valid = self.valid.map(|v| Tensor::f_cat(&[v, v], 0)).transpose()?;
            let out = self.model.logits(&both, valid.as_ref(), self.p)?;
            let cond = out.f_narrow(0, 0, self.b)?;
            let un = out.f_narrow(0, self.b, self.b)?;
            un.f_add(&cond.f_sub(&un)?.f_mul_scalar(cfg_scale + 1.0)?)?
        } else {
            self.model.logits(&x, self.valid, self.p)?
        };
        let expected = [self.b, self.g, self.v];
        if logits.size() != expected {
            return Err(ProbeError::Input(format!(
                "model returned logits of shape {:?}, expected {expected:?}",
                logits.size()
            )));
        }
        if let Some(ids) = &self.forbidden {
            logits = logits.f_index_fill(2, ids, f64::NEG_INFINITY)?;
        }
        Ok(logits)
    }

    /// `torch.rand((B, L))` sliced to the generated positions: upstream draws one number per
    /// position of the whole sequence, so we draw the same amount to stay on its stream.
    fn rand_positions(&self) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_rand([self.b, self.p + self.g], (Kind::Float, self.dev))?.f_narrow(1, self.p, self.g)?)
    }

    /// LLaDA's token choice: greedy argmax, or Gumbel-max in float64 as `add_gumbel_noise`
    /// does (`exp(logits) / (-log u)^T`, u drawn for the whole `[B, L, V]` sequence).
    /// Returns `x0`, the float32 softmax of the logits, and the distribution `x0` was drawn from.
    fn choose_tokens(&self, logits: &Tensor, temperature: f64) -> Result<(Tensor, Tensor, Tensor), ProbeError> {
        let probs = logits.f_softmax(-1, Kind::Float)?;
        if temperature == 0.0 {
            let x0 = logits.f_argmax(-1, false)?;
            return Ok((x0, probs.shallow_clone(), probs));
        }
        let noise = Tensor::f_rand([self.b, self.p + self.g, self.v], (Kind::Double, self.dev))?
            .f_narrow(1, self.p, self.g)?;
        let gumbel = noise.f_log()?.f_neg()?.f_pow_tensor_scalar(temperature)?;
        let x0 = logits.f_to_kind(Kind::Double)?.f_exp()?.f_div(&gumbel)?.f_argmax(-1, false)?;
        // Gumbel-max with exponent T samples from softmax(logits / T).
        let sampled_from = logits.f_div_scalar(temperature)?.f_softmax(-1, Kind::Float)?;
        Ok((x0, probs, sampled_from))
    }

    /// `transfer` with the `k` highest `scores` of each row set (scores at -inf are never
    /// among them as long as `k` does not exceed the row's finite scores).
    fn top_k_positions(&self, scores: &Tensor, k: i64) -> Result<Tensor, ProbeError> {
        let none = Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?;
        if k == 0 {
            return Ok(none);
        }
        let (_, idx) = scores.f_topk(k, 1, true, true)?;
        Ok(none.f_scatter_value(1, &idx, 1)?)
    }

    fn llada_step(
        &self,
        lp: &LladaParams,
        step: usize,
        gen: &Tensor,
        mask: &Tensor,
        positions: &Tensor,
    ) -> Result<StepChoice, ProbeError> {
        let blocks = lp.gen_length / lp.block_length;
        let per_block = lp.steps / blocks;
        let (block, j) = (step / per_block, step % per_block);
        // A block is fully masked when it starts, so every row gets the same count:
        // `block_length // steps` per step plus one for the first `block_length % steps` steps.
        let k = lp.block_length / per_block + usize::from(j < lp.block_length % per_block);
        let block_end = ((block + 1) * lp.block_length) as i64;

        let logits = self.logits(gen, lp.cfg_scale)?;
        let (x0, probs, sampled_from) = self.choose_tokens(&logits, lp.temperature)?;
        let p_x0 = probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        let confidence = match lp.remasking {
            Remasking::LowConfidence => p_x0.shallow_clone(),
            Remasking::Random => self.rand_positions()?,
        };
        // Masked positions up to the end of the current block are eligible, including any that
        // an earlier block left masked (when the argmax was the mask id), as upstream.
        let eligible = mask.f_logical_and(&positions.f_lt(block_end)?.f_unsqueeze(0)?)?;
        let scores = confidence.f_where_scalarother(&eligible, f64::NEG_INFINITY)?;
        let transfer = self.top_k_positions(&scores, k as i64)?;
        let prob = sampled_from.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        Ok(StepChoice { x0, transfer, prob, confidence: scores, probs: sampled_from })
    }

    fn threshold_step(
        &self,
        tp: &ThresholdParams,
        gen: &Tensor,
        mask: &Tensor,
        positions: &Tensor,
    ) -> Result<StepChoice, ProbeError> {
        let logits = self.logits(gen, 0.0)?;
        let (x0, probs, sampled_from) = self.choose_tokens(&logits, tp.temperature)?;
        let p_x0 = probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        // Each row works on the block of its first masked position, so a row's trajectory does
        // not depend on how fast the other rows of the batch finish their blocks.
        let first = positions.f_unsqueeze(0)?.f_where_scalarother(mask, self.g)?.f_amin(1, true)?;
        let block_end = first.f_div_scalar_mode(tp.block_length as i64, "floor")?.f_add_scalar(1)?.f_mul_scalar(tp.block_length as i64)?;
        let eligible = mask.f_logical_and(&positions.f_unsqueeze(0)?.f_lt_tensor(&block_end)?)?;
        let scores = p_x0.f_where_scalarother(&eligible, f64::NEG_INFINITY)?;
        let best = scores.f_argmax(1, true)?;
        let has_any = eligible.f_any_dim(1, true)?;
        let top1 = Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?
            .f_scatter_value(1, &best, 1)?
            .f_logical_and(&has_any)?;
        let transfer = scores.f_ge(tp.tau)?.f_logical_and(&eligible)?.f_logical_or(&top1)?;
        let prob = sampled_from.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        Ok(StepChoice { x0, transfer, prob, confidence: scores, probs: sampled_from })
    }

    fn fixed_step(&self, fp: &FixedParams, step: usize, gen: &Tensor, mask: &Tensor) -> Result<StepChoice, ProbeError> {
        let logits = self.logits(gen, 0.0)?;
        let (x0, probs, sampled_from) = self.choose_tokens(&logits, fp.temperature)?;
        let p_x0 = probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        let confidence = match fp.order {
            FixedOrder::Confidence => p_x0,
            FixedOrder::Random => self.rand_positions()?,
        };
        // The mask id is forbidden here, so every row has exactly `g - step * k` masks left.
        let k = match fp.k {
            TokensPerStep::Count(k) => k.min(fp.gen_length - step * k),
            TokensPerStep::All => fp.gen_length,
        };
        let scores = confidence.f_where_scalarother(mask, f64::NEG_INFINITY)?;
        let transfer = self.top_k_positions(&scores, k as i64)?;
        let prob = sampled_from.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        Ok(StepChoice { x0, transfer, prob, confidence: scores, probs: sampled_from })
    }

    /// Dream's `sample_tokens` on the rows of `probs` selected by `rows` (`[B, G]` bool) when
    /// sampling, in row-major order as upstream's `logits[mask_index]`: returns `x0 [B, G]`.
    fn dream_sample(&self, probs: &Tensor, rows: &Tensor, n_rows: i64) -> Result<Tensor, ProbeError> {
        let picked = probs.f_index(&[Some(rows)])?;
        // `torch.distributions.Categorical` renormalises, then draws with `multinomial(p, 1, True)`.
        let sample = if n_rows > 0 {
            let norm = picked.f_div(&picked.f_sum_dim_intlist(-1, true, Kind::Float)?)?;
            norm.f_multinomial(1, true)?.f_squeeze_dim(-1)?
        } else {
            Tensor::f_zeros([0], (Kind::Int64, self.dev))?
        };
        Ok(Tensor::f_full([self.b, self.g], self.mask_id, (Kind::Int64, self.dev))?.f_masked_scatter(rows, &sample)?)
    }

    fn dream_step(
        &self,
        dp: &DreamParams,
        step: usize,
        timesteps: &[f32],
        gen: &Tensor,
        mask: &Tensor,
        masked_now: &[usize],
    ) -> Result<StepChoice, ProbeError> {
        let mut logits = self.logits(gen, 0.0)?;
        if dp.temperature > 0.0 {
            logits = logits.f_div_scalar(dp.temperature)?;
        }
        if let Some(top_p) = dp.top_p.filter(|&t| t < 1.0) {
            logits = top_p_filter(&logits, top_p)?;
        }
        if let Some(top_k) = dp.top_k {
            let k = (top_k as i64).min(self.v);
            let (vals, _) = logits.f_topk(k, -1, true, true)?;
            let kth = vals.f_narrow(-1, k - 1, 1)?;
            logits = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f32::MIN as f64)?;
        }
        let probs = logits.f_softmax(-1, Kind::Float)?;
        let (t, s) = (timesteps[step], timesteps[step + 1]);
        let last = step + 1 == dp.steps;
        let n_masked: usize = masked_now.iter().sum();

        if dp.alg == DreamAlg::Origin {
            // One `torch.rand(n_masked)` per step, even at the last step where every draw passes.
            let draws = Tensor::f_rand([n_masked as i64], (Kind::Float, self.dev))?;
            let p_transfer = if last { 1.0f32 } else { 1.0f32 - s / t };
            let chosen = draws.f_lt(p_transfer as f64)?;
            let transfer = mask.f_zeros_like()?.f_masked_scatter(mask, &chosen)?;
            let x0 = if dp.temperature > 0.0 {
                let n_rows = i64::try_from(&chosen.f_sum(Kind::Int64)?)?;
                self.dream_sample(&probs, &transfer, n_rows)?
            } else {
                probs.f_argmax(-1, false)?
            };
            let prob = probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
            return Ok(StepChoice { x0, transfer, confidence: prob.shallow_clone(), prob, probs });
        }

        let (mut confidence, x0) = if dp.temperature > 0.0 {
            let x0 = self.dream_sample(&probs, mask, n_masked as i64)?;
            (probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?, x0)
        } else {
            probs.f_max_dim(-1, false)?
        };
        let prob = probs.f_gather(-1, &x0.f_unsqueeze(-1)?, false)?.f_squeeze_dim(-1)?;
        match dp.alg {
            DreamAlg::TopkMargin => {
                let (top2, _) = probs.f_topk(2, -1, true, true)?;
                confidence = top2.f_select(-1, 0)?.f_sub(&top2.f_select(-1, 1)?)?;
            }
            DreamAlg::Entropy => {
                confidence = probs.f_mul(&probs.f_add_scalar(1e-10)?.f_log()?)?.f_sum_dim_intlist(-1, false, Kind::Float)?;
            }
            _ => {}
        }
        let scores = confidence.f_where_scalarother(mask, f64::NEG_INFINITY)?;

        // `int(n_mask * (1 - s / t))` in float32, all remaining masks at the last step. Upstream
        // uses the batch's mean mask count; each row's own count keeps rows independent of their
        // batch and equals upstream for one prompt.
        let ks: Vec<i64> = masked_now
            .iter()
            .map(|&n| if last { n as i64 } else { (n as f32 * (1.0f32 - s / t)) as i64 })
            .collect();
        let kmax = ks.iter().copied().max().unwrap_or(0);
        let transfer = if kmax == 0 {
            Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?
        } else if dp.alg_temp > 0.0 {
            self.dream_draw_positions(&scores, dp.alg_temp, &ks)?
        } else {
            let (_, idx) = scores.f_topk(kmax, 1, true, true)?;
            let ranks = Tensor::f_arange(kmax, (Kind::Int64, self.dev))?.f_unsqueeze(0)?;
            let keep = ranks.f_lt_tensor(&Tensor::f_from_slice(&ks)?.f_to_device(self.dev)?.f_unsqueeze(1)?)?;
            Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?.f_scatter(1, &idx, &keep)?
        };
        Ok(StepChoice { x0, transfer, prob, confidence: scores, probs })
    }

    /// `multinomial(softmax(confidence / alg_temp), k)` without replacement over the whole
    /// sequence (prompt positions at -inf), as upstream; one call for the batch when every row
    /// wants the same number of positions, as upstream's shared count does.
    fn dream_draw_positions(&self, scores: &Tensor, alg_temp: f64, ks: &[i64]) -> Result<Tensor, ProbeError> {
        let prompt = Tensor::f_full([self.b, self.p], f64::NEG_INFINITY, (Kind::Float, self.dev))?;
        let full = Tensor::f_cat(&[&prompt, &scores.f_to_kind(Kind::Float)?], 1)?;
        let weights = full.f_div_scalar(alg_temp)?.f_softmax(-1, Kind::Float)?;
        let none = Tensor::f_zeros([self.b, self.p + self.g], (Kind::Bool, self.dev))?;
        let transfer = if ks.iter().all(|&k| k == ks[0]) {
            none.f_scatter_value(1, &weights.f_multinomial(ks[0], false)?, 1)?
        } else {
            let mut rows = Vec::with_capacity(ks.len());
            for (r, &k) in ks.iter().enumerate() {
                let row = none.f_get(r as i64)?;
                rows.push(if k == 0 { row } else { row.f_scatter_value(0, &weights.f_get(r as i64)?.f_multinomial(k, false)?, 1)? });
            }
            Tensor::f_stack(&rows, 0)?
        };
        Ok(transfer.f_narrow(1, self.p, self.g)?)
    }
}

/// Dream's `top_p_logits`: keep the smallest prefix of the sorted distribution whose mass
/// exceeds `top_p` (always the first token), fill the rest with float32's lowest value.
fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    let (sorted, order) = logits.f_sort(-1, true)?;
    let cum = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
    let remove = cum.f_gt(top_p)?;
    let last = remove.size().last().copied().unwrap_or(0);
    // Shift right by one so that the token crossing the threshold is kept.
    let shifted = Tensor::f_cat(
        &[&remove.f_narrow(-1, 0, 1)?.f_zeros_like()?, &remove.f_narrow(-1, 0, last - 1)?],
        -1,
    )?;
    let drop = shifted.f_zeros_like()?.f_scatter(-1, &order, &shifted)?;
    Ok(logits.f_masked_fill(&drop, f32::MIN as f64)?)
}
