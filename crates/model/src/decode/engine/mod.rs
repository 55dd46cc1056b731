//! Dream's sampler (`DreamGenerationMixin._sample`), the one schedule that is not yet a
//! composition of parts: its timestep count, `alg` confidences and filtered draws run on this
//! loop of one batch (model calls, token choice, position selection, bookkeeping).
//!
//! Every per-position computation stays on the model's device as whole-tensor operations,
//! except on the CPU, where a few chains of them are one pass over the same memory instead
//! (`../cpu/`, each tested equal to its tensor path), and Dream's top-k filtered steps, which
//! compute on the filter's support only (`../cpu/sparse.rs`, the same bits as the full rows). The
//! host knows which positions are masked, so after the model call each step keeps only the
//! logit rows it needs (the eligible masked positions, or those about to be committed) and
//! works on `[n, V]` instead of `[B, G, V]`; per step only the new generated ids, two `[B, G]`
//! score tensors and a few small index lists cross between host and device.
//! Random draws use libtorch's global generator with the shapes, dtypes and order of the
//! upstream samplers, so that a seed given to `torch.manual_seed` upstream and to
//! [`tch::manual_seed`] here yields the same draws for the position choices and the greedy
//! sampler. Token sampling at temperature > 0 draws from the same distributions on a stream
//! of its own: Dream's categorical draw by inverse CDF (`Ctx::dream_sample`).

mod ctx;
mod dream;
mod filters;
mod select;
#[cfg(test)]
mod tests;

use std::cell::RefCell;

use tch::{Device, Kind, Tensor};

use self::ctx::*;
use self::filters::*;
use self::select::*;
use super::cpu::sparse;
use super::cpu::{self, FastPath};
use super::spec::{DreamAlg, DreamParams, ScheduleSpec};
use super::{Commit, DecodeOptions, DecodeProgress, StepTopK, Trajectory};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// One batch: rows left-padded to a common prompt length `p`, then `g` generated positions.
pub(super) struct Batch<'a> {
    pub model: &'a dyn MaskedDenoiser,
    pub schedule: &'a ScheduleSpec,
    pub opts: &'a DecodeOptions<'a>,
    pub prompts: Vec<&'a [i64]>,
    /// Prompts finished before this batch, and in all, for progress reports.
    pub prompts_done: usize,
    pub prompts_total: usize,
}

/// What one step decided.
pub(super) struct StepChoice {
    pub(super) values: StepValues,
    /// With `--save-step-distributions`: the flat positions (every masked one) and, per
    /// position, the distribution `x0` was drawn from, `[n, V]`.
    pub(super) dist: Option<(Vec<i64>, Tensor)>,
}

/// A step's choice per position of the `[B, G]` generation block.
pub(super) enum StepValues {
    Tensors {
        /// The token each position takes if transferred (mask id where none was chosen).
        x0: Tensor,
        /// Which positions take it now.
        transfer: Tensor,
        /// Probability of `x0` under the distribution it was drawn from.
        prob: Tensor,
        /// The score that ranked the positions.
        confidence: Tensor,
    },
    /// The same, `B * G` row-major on the host: what a CPU step that decided on the host
    /// returns instead of building tensors that the loop would copy straight back.
    Host {
        x0: Vec<i64>,
        transfer: Vec<bool>,
        prob: Vec<f32>,
        confidence: Vec<f32>,
    },
}

impl StepChoice {
    pub(super) fn tensors(
        x0: Tensor,
        transfer: Tensor,
        prob: Tensor,
        confidence: Tensor,
        dist: Option<(Vec<i64>, Tensor)>,
    ) -> Self {
        StepChoice {
            values: StepValues::Tensors {
                x0,
                transfer,
                prob,
                confidence,
            },
            dist,
        }
    }
}

/// A step's choices for its picked positions, on the host: the token, its probability and the
/// confidence score, one per picked position.
pub(super) struct HostPicks {
    pub(super) x0: Vec<i64>,
    pub(super) prob: Vec<f32>,
    pub(super) confidence: Vec<f32>,
}

/// Host-side state of one row.
pub(super) struct Row {
    pub(super) prompt_len: usize,
    pub(super) history: Vec<Vec<i64>>,
    pub(super) commits: Vec<Commit>,
    pub(super) distributions: Vec<StepTopK>,
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
        let prompt_block = Tensor::f_from_slice(&host)?
            .f_view([b, p])?
            .f_to_device(dev)?;
        let valid = if valid_host.iter().all(|&x| x) {
            None
        } else {
            Some(
                Tensor::f_from_slice(&valid_host)?
                    .f_view([b, p + g])?
                    .f_to_device(dev)?,
            )
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

        let forbidden_host = self.forbidden_ids();
        let forbidden = if forbidden_host.is_empty() {
            None
        } else {
            Some(Tensor::f_from_slice(&forbidden_host)?.f_to_device(dev)?)
        };
        let ctx = Ctx {
            model,
            b,
            p,
            g,
            v,
            dev,
            mask_id,
            prompt_block: &prompt_block,
            valid: valid.as_ref(),
            forbidden,
            forbidden_host,
            save_distributions: self.opts.save_step_distributions.is_some(),
            floor_hints: RefCell::new(Vec::new()),
        };
        let dream_timesteps = match self.schedule {
            ScheduleSpec::Dream(d) => {
                // Upstream computes the timesteps on the model's device; so do we, so that
                // `1 - s / t` sees the same float32 values there.
                let ts = Tensor::f_linspace(1.0, d.eps, d.steps as i64 + 1, (Kind::Float, dev))?;
                Vec::<f32>::try_from(&ts.f_to_device(Device::Cpu)?)?
            }
            _ => Vec::new(),
        };

        let mut step = 0usize;
        loop {
            let masked_now: Vec<usize> = gen_host
                .chunks(g as usize)
                .map(|r| r.iter().filter(|&&t| t == mask_id).count())
                .collect();
            let fixed_steps = self.schedule.steps();
            match fixed_steps {
                Some(n) if step >= n => break,
                None if masked_now.iter().all(|&m| m == 0) => break,
                _ => {}
            }
            let choice = match self.schedule {
                ScheduleSpec::Dream(dp) => {
                    ctx.dream_step(dp, step, &dream_timesteps, &gen, &gen_host, &masked_now)?
                }
                ScheduleSpec::Llada(_)
                | ScheduleSpec::Threshold(_)
                | ScheduleSpec::Fixed(_)
                | ScheduleSpec::Parts(_) => {
                    unreachable!("compositions run in parts::runner")
                }
            };
            let (new_host, prob, conf) = match choice.values {
                StepValues::Tensors {
                    x0,
                    transfer,
                    prob,
                    confidence,
                } => {
                    gen = x0.f_where_self(&transfer, &gen)?;
                    let new_host =
                        Vec::<i64>::try_from(&gen.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
                    let prob =
                        Vec::<f32>::try_from(&prob.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
                    let conf = Vec::<f32>::try_from(
                        &confidence
                            .f_to_kind(Kind::Float)?
                            .f_flatten(0, -1)?
                            .f_to_device(Device::Cpu)?,
                    )?;
                    (new_host, prob, conf)
                }
                StepValues::Host {
                    x0,
                    transfer,
                    prob,
                    confidence,
                } => {
                    let mut new_host = gen_host.clone();
                    for ((t, &x), &go) in new_host.iter_mut().zip(&x0).zip(&transfer) {
                        if go {
                            *t = x;
                        }
                    }
                    gen = Tensor::f_from_slice(&new_host)?
                        .f_view([b, g])?
                        .f_to_device(dev)?;
                    (new_host, prob, confidence)
                }
            };
            // Top-k of each saved distribution, and where each flat position's row is.
            let top = match (self.opts.save_step_distributions, &choice.dist) {
                (Some(k), Some((at, dist))) => {
                    let (vals, ids) = dist.f_topk(k as i64, -1, true, true)?;
                    let mut row_of = vec![usize::MAX; gen_host.len()];
                    for (n, &i) in at.iter().enumerate() {
                        row_of[i as usize] = n;
                    }
                    Some((
                        Vec::<i64>::try_from(&ids.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?,
                        Vec::<f32>::try_from(&vals.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?,
                        k,
                        row_of,
                    ))
                }
                _ => None,
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
                    if let (true, Some((ids, vals, k, row_of))) = (o == mask_id, &top) {
                        let at = row_of[range.start + j] * k;
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

    /// Ids whose logits are set to -inf: the caller's eot ids when the schedule forbids them.
    /// The official samplers keep the mask id, as upstream does.
    /// `decode` has checked that they are in the vocabulary.
    pub(super) fn forbidden_ids(&self) -> Vec<i64> {
        match self.schedule.forbids_eot() {
            true => self.opts.eot_ids.clone(),
            false => Vec::new(),
        }
    }
}
