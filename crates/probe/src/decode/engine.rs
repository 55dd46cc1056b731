//! The decoding loop of one batch: model calls, token choice, position selection, bookkeeping.
//!
//! Every per-position computation stays on the model's device as whole-tensor operations,
//! except on the CPU, where a few chains of them are one pass over the same memory instead
//! (`host.rs`, each tested equal to its tensor path), and Dream's top-k filtered steps, which
//! compute on the filter's support only (`sparse.rs`, the same bits as the full rows). The
//! host knows which positions are masked, so after the model call each step keeps only the
//! logit rows it needs (the eligible masked positions, or those about to be committed) and
//! works on `[n, V]` instead of `[B, G, V]`; per step only the new generated ids, two `[B, G]`
//! score tensors and a few small index lists cross between host and device.
//! Random draws use libtorch's global generator with the shapes, dtypes and order of the
//! upstream samplers, so that a seed given to `torch.manual_seed` upstream and to
//! [`tch::manual_seed`] here yields the same draws for the position choices and the greedy
//! samplers. Token sampling at temperature > 0 draws from the same distributions on a stream
//! of its own: LLaDA-style Gumbel noise only for the rows whose token is needed (see
//! `Ctx::choose_tokens`), Dream's categorical draw by inverse CDF (`Ctx::dream_sample`).

use std::cell::RefCell;

use tch::{Device, Kind, Tensor};

use super::host;
use super::sparse;
use super::spec::{
    DreamAlg, DreamParams, FixedOrder, FixedParams, LladaParams, Remasking, ScheduleSpec,
    ThresholdParams, TokensPerStep,
};
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
struct StepChoice {
    values: StepValues,
    /// With `--save-step-distributions`: the flat positions (every masked one) and, per
    /// position, the distribution `x0` was drawn from, `[n, V]`.
    dist: Option<(Vec<i64>, Tensor)>,
}

/// A step's choice per position of the `[B, G]` generation block.
enum StepValues {
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
    fn tensors(
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
struct HostPicks {
    x0: Vec<i64>,
    prob: Vec<f32>,
    confidence: Vec<f32>,
}

/// [`Ctx::llada_like`]'s token choice.
enum LladaChoice {
    /// On the host, one per position of `work.pick`, when the step can finish there (CPU, no
    /// saved distributions); the confidence is the token's softmax probability when asked for,
    /// else empty.
    Host(HostPicks),
    /// `x0` and `prob` as `[B, G]` (mask id and 0 off `work.pick`), the `[B, G]` confidence
    /// (-inf off `work.pick`) when asked for, and the distributions to save.
    Tensors {
        x0: Tensor,
        prob: Tensor,
        scores: Option<Tensor>,
        dist: Option<(Vec<i64>, Tensor)>,
    },
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

        let forbidden_host = self.forbidden_ids(v)?;
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
                ScheduleSpec::Llada(lp) => ctx.llada_step(lp, step, &gen, &gen_host)?,
                ScheduleSpec::Dream(dp) => {
                    ctx.dream_step(dp, step, &dream_timesteps, &gen, &gen_host, &masked_now)?
                }
                ScheduleSpec::Threshold(tp) => ctx.threshold_step(tp, &gen, &gen_host)?,
                ScheduleSpec::Fixed(fp) => ctx.fixed_step(fp, step, &gen, &gen_host)?,
                ScheduleSpec::Parts(_) => unreachable!("compositions run in parts::runner"),
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

    /// Ids whose logits are set to -inf: the caller's eot ids when the schedule forbids them,
    /// and the mask id for the schedules of this crate (threshold, fixed), which must fill every
    /// position to terminate. The upstream samplers keep the mask id, as upstream does.
    fn forbidden_ids(&self, v: i64) -> Result<Vec<i64>, ProbeError> {
        let mut ids = Vec::new();
        if self.schedule.forbids_eot() {
            ids.extend_from_slice(&self.opts.eot_ids);
        }
        if matches!(
            self.schedule,
            ScheduleSpec::Threshold(_) | ScheduleSpec::Fixed(_)
        ) {
            ids.push(self.model.mask_id());
        }
        if let Some(bad) = ids.iter().find(|&&i| i < 0 || i >= v) {
            return Err(ProbeError::Input(format!(
                "token id {bad} is outside the model's vocabulary (size {v})"
            )));
        }
        Ok(ids)
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
    forbidden_host: Vec<i64>,
    /// Whether the step must return the distributions of every still-masked position.
    save_distributions: bool,
    /// Per row of the model's output, the top-k selection's floor hint from the last step
    /// (`sparse::top_k_support`).
    floor_hints: RefCell<Vec<f32>>,
}

/// Flat indices `b * g + j` of generated positions, in row-major order (upstream's
/// `x[mask_index]` order), on the host and on the device.
struct Rows {
    host: Vec<i64>,
    dev: Tensor,
}

/// Which positions a step works on: `pick` (those whose token is chosen) and `rows` (those
/// whose logits are computed: `pick`, plus every masked position when distributions are
/// saved). `pick` is a subset of `rows`; `pick_in_rows` locates it there when they differ.
struct Work {
    rows: Rows,
    pick: Rows,
    pick_in_rows: Option<Tensor>,
}

impl Work {
    /// The rows of `x` (`[rows, ...]`) that belong to `pick`.
    fn picked(&self, x: &Tensor) -> Result<Tensor, ProbeError> {
        Ok(match &self.pick_in_rows {
            Some(at) => x.f_index_select(0, at)?,
            None => x.shallow_clone(),
        })
    }
}

impl Ctx<'_> {
    fn rows(&self, host: Vec<i64>) -> Result<Rows, ProbeError> {
        let dev = Tensor::f_from_slice(&host)?.f_to_device(self.dev)?;
        Ok(Rows { host, dev })
    }

    /// Flat indices of the positions of `gen_host` (`[B * G]`) that satisfy `keep(flat index)`.
    fn masked_where(&self, gen_host: &[i64], keep: impl Fn(usize) -> bool) -> Vec<i64> {
        (0..gen_host.len())
            .filter(|&i| gen_host[i] == self.mask_id && keep(i))
            .map(|i| i as i64)
            .collect()
    }

    /// `pick` plus, when distributions are saved, every masked position of `gen_host`.
    fn work(&self, gen_host: &[i64], pick: Vec<i64>) -> Result<Work, ProbeError> {
        if !self.save_distributions {
            let pick = self.rows(pick)?;
            let rows = Rows {
                host: pick.host.clone(),
                dev: pick.dev.shallow_clone(),
            };
            return Ok(Work {
                rows,
                pick,
                pick_in_rows: None,
            });
        }
        let rows = self.masked_where(gen_host, |_| true);
        let pick_in_rows = if pick == rows {
            None
        } else {
            let at: Vec<i64> = pick
                .iter()
                .map(|i| rows.binary_search(i).expect("picked positions are masked") as i64)
                .collect();
            Some(Tensor::f_from_slice(&at)?.f_to_device(self.dev)?)
        };
        Ok(Work {
            rows: self.rows(rows)?,
            pick: self.rows(pick)?,
            pick_in_rows,
        })
    }

    /// A `[B, G]` bool tensor from host flags.
    fn grid(&self, flags: &[bool]) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_from_slice(flags)?
            .f_view([self.b, self.g])?
            .f_to_device(self.dev)?)
    }

    /// A `[B, G]` tensor holding `values` (one per row of `at`) at `at`, `fill` elsewhere.
    fn spread(&self, at: &Rows, values: &Tensor, fill: f64) -> Result<Tensor, ProbeError> {
        let full = Tensor::f_full([self.b * self.g], fill, (values.kind(), self.dev))?;
        Ok(full
            .f_index_copy(0, &at.dev, values)?
            .f_view([self.b, self.g])?)
    }

    /// Logits `[n, V]` of the generated positions `rows` (flat indices), with forbidden ids at -inf.
    /// Everything after the model call works on these rows only: positions that are already
    /// committed, or not eligible this step, cost nothing.
    fn logits(&self, gen: &Tensor, cfg_scale: f64, rows: &Rows) -> Result<Tensor, ProbeError> {
        Ok(self.logits_argmax(gen, cfg_scale, rows, false)?.0)
    }

    /// [`Ctx::logits`], and when `want_argmax` and it comes at no extra pass (on CPU), the
    /// `[n]` argmax of each row (the first maximum, as `argmax_rows`).
    fn logits_argmax(
        &self,
        gen: &Tensor,
        cfg_scale: f64,
        rows: &Rows,
        want_argmax: bool,
    ) -> Result<(Tensor, Option<Tensor>), ProbeError> {
        let flat = self.forward(gen, cfg_scale)?;
        self.select_logits(&flat, cfg_scale, rows, want_argmax)
    }

    /// The model call on the batch with generated ids `gen`: logits `[calls * B * G, V]` of the
    /// generated positions, row-major (with CFG, the conditional rows then the unconditional).
    fn forward(&self, gen: &Tensor, cfg_scale: f64) -> Result<Tensor, ProbeError> {
        let x = Tensor::f_cat(&[self.prompt_block, gen], 1)?;
        let (out, calls) = if cfg_scale > 0.0 {
            // Classifier-free guidance as in LLaDA's generate(): the unconditional row is the
            // same sequence with every prompt position masked; both go through one call.
            let un_prompt = self.prompt_block.f_full_like(self.mask_id)?;
            let un_x = Tensor::f_cat(&[&un_prompt, gen], 1)?;
            let both = Tensor::f_cat(&[&x, &un_x], 0)?;
            let valid = self.valid.map(|v| Tensor::f_cat(&[v, v], 0)).transpose()?;
            (self.model.logits(&both, valid.as_ref(), self.p)?, 2)
        } else {
            (self.model.logits(&x, self.valid, self.p)?, 1)
        };
        let expected = [calls * self.b, self.g, self.v];
        if out.size() != expected {
            return Err(ProbeError::Input(format!(
                "model returned logits of shape {:?}, expected {expected:?}",
                out.size()
            )));
        }
        Ok(out.f_reshape([calls * self.b * self.g, self.v])?)
    }

    /// [`Ctx::logits_argmax`] on the model's output `flat` (from [`Ctx::forward`]).
    fn select_logits(
        &self,
        flat: &Tensor,
        cfg_scale: f64,
        rows: &Rows,
        want_argmax: bool,
    ) -> Result<(Tensor, Option<Tensor>), ProbeError> {
        // Guided rows on the host: one pass instead of a selection and three operations. (Plain
        // rows are left to `index_select`, which copies on libtorch's threads and measured faster.)
        if cfg_scale > 0.0 {
            let guided = Some(((self.b * self.g) as usize, cfg_scale + 1.0));
            if let Some((logits, argmax)) =
                host::select_rows(flat, &rows.host, guided, &self.forbidden_host, want_argmax)?
            {
                return Ok((
                    logits,
                    argmax.map(|a| Tensor::f_from_slice(&a)).transpose()?,
                ));
            }
        }
        let mut logits = if cfg_scale > 0.0 {
            // The conditional and unconditional rows in one selection.
            let n = rows.host.len() as i64;
            let both = Tensor::f_cat(&[&rows.dev, &rows.dev.f_add_scalar(self.b * self.g)?], 0)?;
            let picked = flat.f_index_select(0, &both)?;
            let (mut guided, un) = (picked.f_narrow(0, 0, n)?, picked.f_narrow(0, n, n)?);
            // `un + (cond - un) * (cfg_scale + 1)`, elementwise as upstream (same roundings),
            // in place over the conditional rows.
            let _ = guided
                .f_sub_(&un)?
                .f_mul_scalar_(cfg_scale + 1.0)?
                .f_add_(&un)?;
            guided
        } else {
            flat.f_index_select(0, &rows.dev)?
        };
        if let Some(ids) = &self.forbidden {
            let _ = logits.f_index_fill_(1, ids, f64::NEG_INFINITY)?;
        }
        Ok((logits, None))
    }

    /// `torch.rand((B, L))` sliced to the generated positions: upstream draws one number per
    /// position of the whole sequence, so we draw the same amount to stay on its stream.
    fn rand_positions(&self) -> Result<Tensor, ProbeError> {
        Ok(
            Tensor::f_rand([self.b, self.p + self.g], (Kind::Float, self.dev))?
                .f_narrow(1, self.p, self.g)?,
        )
    }

    /// LLaDA's token choice on logit rows `[n, V]`: greedy argmax, or Gumbel-max in float64 as
    /// `add_gumbel_noise` does (`exp(logits) / (-log u)^T`, which samples softmax(logits / T)).
    /// Returns `x0 [n]`, its float32 softmax probability when `need_p`, and its probability
    /// under the distribution it was drawn from. `argmax`, when given, is `logits`' argmax;
    /// with `consume`, the greedy path may overwrite `logits` with its softmax.
    ///
    /// Random stream (temperature > 0 only): upstream draws `u` for the whole `[B, L, V]`
    /// sequence; we draw `u` `[n, V]` for the `n` rows whose token is needed, in row-major order,
    /// after any position draw of the step: on a GPU with `torch.rand((n, V), float64)`, on the
    /// CPU as 53-bit uniforms from a generator seeded by one `torch.randint` draw. Same
    /// distribution, seeded and deterministic, but not upstream's stream (the parity traces
    /// are greedy).
    fn choose_tokens(
        &self,
        logits: &Tensor,
        temperature: f64,
        need_p: bool,
        argmax: Option<Tensor>,
        consume: bool,
    ) -> Result<(Tensor, Option<Tensor>, Tensor), ProbeError> {
        if temperature == 0.0 {
            let x0 = match argmax {
                Some(x0) => x0,
                None => argmax_rows(logits)?,
            };
            let probs = if consume {
                // In place: the same kernel and result, without a new `[n, V]` buffer.
                logits.f_softmax_int_out(logits, -1, Kind::Float)?
            } else {
                logits.f_softmax(-1, Kind::Float)?
            };
            let p = gather_rows(&probs, &x0)?;
            return Ok((x0, Some(p.shallow_clone()), p));
        }
        let n = logits.size()[0];
        let mut gumbel = if self.dev == Device::Cpu {
            // libtorch's CPU generator spends most of this step's time on `rand(float64)`; one
            // draw from it seeds a fast generator for the uniforms instead.
            let seed = Tensor::f_randint(i64::MAX, [1], (Kind::Int64, Device::Cpu))?
                .f_int64_value(&[0])?;
            let u = host::uniforms(seed as u64, (n * self.v) as usize);
            Tensor::f_from_slice(&u)?.f_view([n, self.v])?
        } else {
            Tensor::f_rand([n, self.v], (Kind::Double, self.dev))?
        };
        let _ = gumbel.f_log_()?.f_neg_()?.f_pow_(temperature)?;
        let mut scores = logits.f_to_kind(Kind::Double)?;
        let _ = scores.f_exp_()?.f_div_(&gumbel)?;
        let x0 = argmax_rows(&scores)?;
        let p = if need_p {
            Some(gather_rows(&logits.f_softmax(-1, Kind::Float)?, &x0)?)
        } else {
            None
        };
        let q = gather_rows(&self.sampled_from(logits, temperature)?, &x0)?;
        Ok((x0, p, q))
    }

    /// The float32 distribution LLaDA-style token choice samples from: softmax(logits / T).
    fn sampled_from(&self, logits: &Tensor, temperature: f64) -> Result<Tensor, ProbeError> {
        Ok(if temperature == 0.0 {
            logits.f_softmax(-1, Kind::Float)?
        } else {
            logits
                .f_div_scalar(temperature)?
                .f_softmax(-1, Kind::Float)?
        })
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

    /// Flat indices of the set positions of a `[B, G]` bool tensor, in row-major order.
    fn set_positions(&self, transfer: &Tensor) -> Result<Vec<i64>, ProbeError> {
        let flags = Vec::<bool>::try_from(&transfer.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
        Ok(flags
            .iter()
            .enumerate()
            .filter(|(_, &f)| f)
            .map(|(i, _)| i as i64)
            .collect())
    }

    /// The LLaDA-style token choice (llada, threshold, fixed) once the work is known: the model
    /// call and `choose_tokens` for the positions `work.pick`, on the host when the step can
    /// finish there (see [`LladaChoice`]).
    fn llada_like(
        &self,
        gen: &Tensor,
        cfg_scale: f64,
        temperature: f64,
        work: &Work,
        need_p: bool,
    ) -> Result<LladaChoice, ProbeError> {
        let (logits, argmax) =
            self.logits_argmax(gen, cfg_scale, &work.rows, temperature == 0.0)?;
        let argmax = argmax.map(|a| work.picked(&a)).transpose()?;
        // The logits are needed afterwards only to save distributions.
        let consume = !self.save_distributions;
        let (x0, p, q) =
            self.choose_tokens(&work.picked(&logits)?, temperature, need_p, argmax, consume)?;
        if self.dev == Device::Cpu && !self.save_distributions {
            return Ok(LladaChoice::Host(HostPicks {
                x0: Vec::<i64>::try_from(&x0)?,
                prob: Vec::<f32>::try_from(&q)?,
                confidence: p
                    .map(|p| Vec::<f32>::try_from(&p))
                    .transpose()?
                    .unwrap_or_default(),
            }));
        }
        let dist = if self.save_distributions {
            Some((
                work.rows.host.clone(),
                self.sampled_from(&logits, temperature)?,
            ))
        } else {
            None
        };
        Ok(LladaChoice::Tensors {
            x0: self.spread(&work.pick, &x0, self.mask_id as f64)?,
            prob: self.spread(&work.pick, &q, 0.0)?,
            scores: p
                .map(|p| self.spread(&work.pick, &p, f64::NEG_INFINITY))
                .transpose()?,
            dist,
        })
    }

    /// A step that commits, per row, the `k` positions of `work.pick` with the most confident
    /// tokens `choice`.
    fn ranked_step(
        &self,
        choice: LladaChoice,
        work: &Work,
        k: i64,
    ) -> Result<StepChoice, ProbeError> {
        match choice {
            LladaChoice::Host(picks) => {
                self.ranked_host_step(&work.pick.host, &picks, &vec![k; self.b as usize])
            }
            LladaChoice::Tensors {
                x0,
                prob,
                scores,
                dist,
            } => {
                let scores = scores.expect("need_p");
                let transfer = self.top_k_positions(&scores, k)?;
                Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
            }
        }
    }

    /// A step whose positions `transfer` (the flat positions `work.pick`) were drawn first, by
    /// the `[B, G]` `scores`, and whose tokens are `choice`.
    fn drawn_first_step(
        &self,
        choice: LladaChoice,
        work: &Work,
        transfer: Tensor,
        scores: Tensor,
    ) -> Result<StepChoice, ProbeError> {
        match choice {
            LladaChoice::Host(picks) => {
                let (x0, prob, _) = self.host_grids(&work.pick.host, &picks);
                let mut flags = vec![false; x0.len()];
                for &i in &work.pick.host {
                    flags[i as usize] = true;
                }
                let confidence = Vec::<f32>::try_from(
                    &scores
                        .f_to_kind(Kind::Float)?
                        .f_flatten(0, -1)?
                        .f_to_device(Device::Cpu)?,
                )?;
                Ok(StepChoice {
                    values: StepValues::Host {
                        x0,
                        transfer: flags,
                        prob,
                        confidence,
                    },
                    dist: None,
                })
            }
            LladaChoice::Tensors { x0, prob, dist, .. } => {
                Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
            }
        }
    }

    fn llada_step(
        &self,
        lp: &LladaParams,
        step: usize,
        gen: &Tensor,
        gen_host: &[i64],
    ) -> Result<StepChoice, ProbeError> {
        let blocks = lp.gen_length / lp.block_length;
        let per_block = lp.steps / blocks;
        let (block, j) = (step / per_block, step % per_block);
        // A block is fully masked when it starts, so every row gets the same count:
        // `block_length // steps` per step plus one for the first `block_length % steps` steps.
        let k = lp.block_length / per_block + usize::from(j < lp.block_length % per_block);
        let block_end = (block + 1) * lp.block_length;
        let g = self.g as usize;

        // Masked positions up to the end of the current block are eligible, including any that
        // an earlier block left masked (when the argmax was the mask id), as upstream.
        let eligible = self.masked_where(gen_host, |i| i % g < block_end);
        match lp.remasking {
            Remasking::LowConfidence => {
                let work = self.work(gen_host, eligible)?;
                self.ranked_step(
                    self.llada_like(gen, lp.cfg_scale, lp.temperature, &work, true)?,
                    &work,
                    k as i64,
                )
            }
            Remasking::Random => {
                // Positions are drawn first: tokens are then needed only where they are
                // committed (at temperature 0 no other draw happens, as upstream).
                let mut flags = vec![false; gen_host.len()];
                for &i in &eligible {
                    flags[i as usize] = true;
                }
                let scores = self
                    .rand_positions()?
                    .f_where_scalarother(&self.grid(&flags)?, f64::NEG_INFINITY)?;
                let transfer = self.top_k_positions(&scores, k as i64)?;
                let work = self.work(gen_host, self.set_positions(&transfer)?)?;
                self.drawn_first_step(
                    self.llada_like(gen, lp.cfg_scale, lp.temperature, &work, false)?,
                    &work,
                    transfer,
                    scores,
                )
            }
        }
    }

    fn threshold_step(
        &self,
        tp: &ThresholdParams,
        gen: &Tensor,
        gen_host: &[i64],
    ) -> Result<StepChoice, ProbeError> {
        // Each row works on the block of its first masked position, so a row's trajectory does
        // not depend on how fast the other rows of the batch finish their blocks.
        let g = self.g as usize;
        let block_ends: Vec<usize> = gen_host
            .chunks(g)
            .map(|row| {
                let first = row.iter().position(|&t| t == self.mask_id).unwrap_or(g);
                (first / tp.block_length + 1) * tp.block_length
            })
            .collect();
        let eligible = self.masked_where(gen_host, |i| i % g < block_ends[i / g]);
        let mut flags = vec![false; gen_host.len()];
        for &i in &eligible {
            flags[i as usize] = true;
        }
        let work = self.work(gen_host, eligible)?;
        match self.llada_like(gen, 0.0, tp.temperature, &work, true)? {
            LladaChoice::Host(picks) => {
                let (x0, prob, confidence) = self.host_grids(&work.pick.host, &picks);
                let transfer = match threshold_transfer(&confidence, &flags, g, tp.tau) {
                    Some(transfer) => transfer,
                    None => host_flags(&self.threshold_transfer_t(
                        &self.host_scores(&confidence)?,
                        &self.grid(&flags)?,
                        tp.tau,
                    )?)?,
                };
                Ok(StepChoice {
                    values: StepValues::Host {
                        x0,
                        transfer,
                        prob,
                        confidence,
                    },
                    dist: None,
                })
            }
            LladaChoice::Tensors {
                x0,
                prob,
                scores,
                dist,
            } => {
                let scores = scores.expect("need_p");
                let transfer = self.threshold_transfer_t(&scores, &self.grid(&flags)?, tp.tau)?;
                Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
            }
        }
    }

    /// Fast-dLLM's commit rule on `[B, G]` scores (-inf off `eligible`): every eligible
    /// position at or above `tau`, and each row's best one.
    fn threshold_transfer_t(
        &self,
        scores: &Tensor,
        eligible: &Tensor,
        tau: f64,
    ) -> Result<Tensor, ProbeError> {
        let best = scores.f_argmax(1, true)?;
        let has_any = eligible.f_any_dim(1, true)?;
        let top1 = Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?
            .f_scatter_value(1, &best, 1)?
            .f_logical_and(&has_any)?;
        Ok(scores
            .f_ge(tau)?
            .f_logical_and(eligible)?
            .f_logical_or(&top1)?)
    }

    fn fixed_step(
        &self,
        fp: &FixedParams,
        step: usize,
        gen: &Tensor,
        gen_host: &[i64],
    ) -> Result<StepChoice, ProbeError> {
        // The mask id is forbidden here, so every row has exactly `g - step * k` masks left.
        let k = match fp.k {
            TokensPerStep::Count(k) => k.min(fp.gen_length - step * k),
            TokensPerStep::All => fp.gen_length,
        } as i64;
        match fp.order {
            FixedOrder::Confidence => {
                let work = self.work(gen_host, self.masked_where(gen_host, |_| true))?;
                self.ranked_step(
                    self.llada_like(gen, 0.0, fp.temperature, &work, true)?,
                    &work,
                    k,
                )
            }
            FixedOrder::Random => {
                // Positions first, then tokens where they are committed (see `llada_step`).
                let mask = gen.f_eq(self.mask_id)?;
                let scores = self
                    .rand_positions()?
                    .f_where_scalarother(&mask, f64::NEG_INFINITY)?;
                let transfer = self.top_k_positions(&scores, k)?;
                let work = self.work(gen_host, self.set_positions(&transfer)?)?;
                self.drawn_first_step(
                    self.llada_like(gen, 0.0, fp.temperature, &work, false)?,
                    &work,
                    transfer,
                    scores,
                )
            }
        }
    }

    /// Dream's `sample_tokens` draw on distribution rows `probs [n, V]` (upstream's
    /// `logits[mask_index]`, row-major): a draw from `Categorical(probs)`, by inverse CDF with
    /// one `torch.rand(n, float64)` per step: the first index whose float64 cumulative mass
    /// reaches `(1 - u)` times the row's total (positive, so a zero-probability token is never
    /// drawn). Upstream's `multinomial(p, 1, True)` draws `V` exponentials per row instead,
    /// which on the CPU cost more than the model call: same distribution, not its stream.
    fn dream_sample(&self, probs: &Tensor) -> Result<Tensor, ProbeError> {
        let n = probs.size()[0];
        if n == 0 {
            return Ok(Tensor::f_zeros([0], (Kind::Int64, self.dev))?);
        }
        let u = Tensor::f_rand([n, 1], (Kind::Double, self.dev))?;
        if let Some(picks) = host::inverse_cdf(probs, &Vec::<f64>::try_from(&u.f_flatten(0, -1)?)?)
        {
            return Ok(Tensor::f_from_slice(&picks)?);
        }
        let cum = probs.f_cumsum(-1, Kind::Double)?;
        let total = cum.f_narrow(-1, self.v - 1, 1)?;
        let target = u.f_neg()?.f_add_scalar(1.0)?.f_mul(&total)?;
        let below = cum
            .f_lt_tensor(&target)?
            .f_sum_dim_intlist(-1, false, Kind::Int64)?;
        Ok(below.f_clamp_max(self.v - 1)?)
    }

    /// Dream's filtered distribution of logit rows `[n, V]`: temperature, top-p, top-k, softmax.
    fn dream_probs(&self, dp: &DreamParams, logits: Tensor) -> Result<DreamDist, ProbeError> {
        let mut logits = logits;
        if dp.temperature > 0.0 {
            logits = logits.f_div_scalar(dp.temperature)?;
        }
        if let Some(top_p) = dp.top_p.filter(|&t| t < 1.0) {
            logits = top_p_filter(&logits, top_p)?;
        }
        let (mut support, mut first) = (None, None);
        if let Some(top_k) = dp.top_k {
            let kept;
            TopK {
                kept,
                support,
                first,
            } = top_k_filter(&logits, (top_k as i64).min(self.v))?;
            logits = kept;
        }
        Ok(DreamDist {
            probs: logits.f_softmax(-1, Kind::Float)?,
            support,
            first,
        })
    }

    /// The greedy token of each row of `dist`: `probs.max(-1)`'s index (the first maximum, as
    /// `argmax_rows`), known without a pass over the rows when the top-k filter found it.
    fn dream_argmax(&self, dist: &DreamDist, work: &Work) -> Result<Tensor, ProbeError> {
        match &dist.first {
            Some(first) => work.picked(first),
            None => argmax_rows(&work.picked(&dist.probs)?),
        }
    }

    fn dream_step(
        &self,
        dp: &DreamParams,
        step: usize,
        timesteps: &[f32],
        gen: &Tensor,
        gen_host: &[i64],
        masked_now: &[usize],
    ) -> Result<StepChoice, ProbeError> {
        let (t, s) = (timesteps[step], timesteps[step + 1]);
        let last = step + 1 == dp.steps;
        let masked = self.masked_where(gen_host, |_| true);

        if dp.alg == DreamAlg::Origin {
            // One `torch.rand(n_masked)` per step, even at the last step where every draw passes;
            // only the positions it picks are sampled, as upstream's `mask_logits[transfer]`.
            let draws = Tensor::f_rand([masked.len() as i64], (Kind::Float, self.dev))?;
            let draws = Vec::<f32>::try_from(&draws.f_to_device(Device::Cpu)?)?;
            let p_transfer = if last { 1.0f32 } else { 1.0f32 - s / t };
            let picked: Vec<i64> = masked
                .iter()
                .zip(&draws)
                .filter(|(_, &d)| d < p_transfer)
                .map(|(&i, _)| i)
                .collect();
            let mut flags = vec![false; gen_host.len()];
            for &i in &picked {
                flags[i as usize] = true;
            }
            let work = self.work(gen_host, picked)?;
            let dist = self.dream_probs(dp, self.logits(gen, 0.0, &work.rows)?)?;
            let picked_probs = work.picked(&dist.probs)?;
            let x0 = if dp.temperature > 0.0 {
                self.dream_sample(&picked_probs)?
            } else {
                self.dream_argmax(&dist, &work)?
            };
            if let (Some(rows), false) = (host::cpu_f32(&picked_probs), self.save_distributions) {
                // On the host: the chosen tokens' probabilities straight from the rows, and the
                // step's values without building `[B, G]` tensors.
                let x0 = Vec::<i64>::try_from(&x0)?;
                let len = gen_host.len();
                let (mut x0_at, mut prob) = (vec![self.mask_id; len], vec![0f32; len]);
                for (j, &i) in work.pick.host.iter().enumerate() {
                    x0_at[i as usize] = x0[j];
                    prob[i as usize] = rows[j * self.v as usize + x0[j] as usize];
                }
                let values = StepValues::Host {
                    x0: x0_at,
                    transfer: flags,
                    confidence: prob.clone(),
                    prob,
                };
                return Ok(StepChoice { values, dist: None });
            }
            let transfer = self.grid(&flags)?;
            let probs = dist.probs;
            let prob = self.spread(&work.pick, &gather_rows(&picked_probs, &x0)?, 0.0)?;
            let x0 = self.spread(&work.pick, &x0, self.mask_id as f64)?;
            let dist = self
                .save_distributions
                .then(|| (work.rows.host.clone(), probs));
            return Ok(StepChoice::tensors(
                x0,
                transfer,
                prob.shallow_clone(),
                prob,
                dist,
            ));
        }

        let work = self.work(gen_host, masked)?;
        let flat = self.forward(gen, 0.0)?;
        // `int(n_mask * (1 - s / t))` in float32, all remaining masks at the last step. Upstream
        // uses the batch's mean mask count; each row's own count keeps rows independent of their
        // batch and equals upstream for one prompt.
        let ks: Vec<i64> = masked_now
            .iter()
            .map(|&n| {
                if last {
                    n as i64
                } else {
                    (n as f32 * (1.0f32 - s / t)) as i64
                }
            })
            .collect();
        let on_support = self.dream_on_support(dp, &flat, &work)?;
        if let (Some(picks), true) = (&on_support, dp.alg_temp <= 0.0) {
            return self.ranked_host_step(&work.pick.host, picks, &ks);
        }
        let (x0, prob, confidence, dist) = match on_support {
            Some(picks) => {
                let on_dev = |t: Tensor| t.f_to_device(self.dev);
                (
                    on_dev(Tensor::f_from_slice(&picks.x0)?)?,
                    on_dev(Tensor::f_from_slice(&picks.prob)?)?,
                    on_dev(Tensor::f_from_slice(&picks.confidence)?)?,
                    None,
                )
            }
            None => {
                let dist =
                    self.dream_probs(dp, self.select_logits(&flat, 0.0, &work.rows, false)?.0)?;
                // Greedy: `probs.max(-1)`, whose index is the first maximum.
                let x0 = if dp.temperature > 0.0 {
                    self.dream_sample(&dist.probs)?
                } else {
                    self.dream_argmax(&dist, &work)?
                };
                let DreamDist { probs, support, .. } = dist;
                let prob = gather_rows(&probs, &x0)?;
                let confidence = match dp.alg {
                    DreamAlg::TopkMargin => {
                        let (top2, _) = probs.f_topk(2, -1, true, true)?;
                        top2.f_select(-1, 0)?.f_sub(&top2.f_select(-1, 1)?)?
                    }
                    DreamAlg::Entropy => neg_entropy(&probs, support.as_ref())?,
                    _ => prob.shallow_clone(),
                };
                (
                    x0,
                    prob,
                    confidence,
                    self.save_distributions
                        .then(|| (work.rows.host.clone(), probs)),
                )
            }
        };
        let scores = self.spread(&work.pick, &confidence, f64::NEG_INFINITY)?;
        let prob = self.spread(&work.pick, &prob, 0.0)?;
        let x0 = self.spread(&work.pick, &x0, self.mask_id as f64)?;
        let transfer = if dp.alg_temp > 0.0 && ks.iter().any(|&k| k > 0) {
            self.dream_draw_positions(&scores, dp.alg_temp, &ks)?
        } else {
            self.ranked_transfer(&scores, &ks)?
        };
        Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
    }

    /// Dream's token choice for the masked positions `work.pick` with a top-k filter, on the
    /// filter's support only (CPU float32 logits, no top-p, no saved distributions; see
    /// `sparse.rs`): `x0`, its probability and the confidence of `dp.alg`, each `[n]`, the same
    /// as the full-row path gives. `None` where that path is needed.
    fn dream_on_support(
        &self,
        dp: &DreamParams,
        flat: &Tensor,
        work: &Work,
    ) -> Result<Option<HostPicks>, ProbeError> {
        let Some(k) = dp.top_k else { return Ok(None) };
        if self.save_distributions
            || dp.top_p.is_some_and(|t| t < 1.0)
            || dp.alg == DreamAlg::Origin
        {
            return Ok(None);
        }
        let Some(data) = host::cpu_f32(flat) else {
            return Ok(None);
        };
        let v = self.v as usize;
        let rows = &work.pick.host;
        let mut hints = self.floor_hints.borrow_mut();
        hints.resize(data.len() / v, f32::NAN);
        let Some(support) = sparse::top_k_support(
            data,
            v,
            rows,
            k,
            dp.temperature,
            &self.forbidden_host,
            &mut hints,
        ) else {
            return Ok(None);
        };
        let entropy = dp.alg == DreamAlg::Entropy;
        let Some((probs, sums)) = sparse::probabilities(&support, v, entropy)? else {
            return Ok(None);
        };
        let n = rows.len();
        // `dream_sample`'s draw, on the same stream.
        let u = if dp.temperature > 0.0 && n > 0 {
            Vec::<f64>::try_from(&Tensor::f_rand([n as i64], (Kind::Double, self.dev))?)?
        } else {
            Vec::new()
        };
        let (mut x0, mut prob, mut confidence) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let mut cum = Vec::with_capacity(k);
        for r in 0..n {
            let (idx, p) = (&support.idx[r * k..(r + 1) * k], &probs[r * k..(r + 1) * k]);
            let j = if dp.temperature > 0.0 {
                // `dream_sample`'s inverse CDF on the kept entries: the zeros between them add
                // nothing to the running sum.
                let Some(j) = host::inverse_cdf_row(p, u[r], &mut cum) else {
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
            x0.push(idx[j] as i64);
            prob.push(p[j]);
            confidence.push(match dp.alg {
                DreamAlg::TopkMargin => {
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
                    first - second
                }
                DreamAlg::Entropy => sums[r],
                _ => p[j],
            });
        }
        Ok(Some(HostPicks {
            x0,
            prob,
            confidence,
        }))
    }

    /// The `[B, G]` host grids of the choices `picks` at the flat positions `pick`: tokens (the
    /// mask id elsewhere), their probabilities (0 elsewhere) and confidences (-inf elsewhere, and
    /// everywhere when `picks` has none).
    fn host_grids(&self, pick: &[i64], picks: &HostPicks) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
        let len = (self.b * self.g) as usize;
        let mut x0 = vec![self.mask_id; len];
        let mut prob = vec![0f32; len];
        let mut confidence = vec![f32::NEG_INFINITY; len];
        for (j, &i) in pick.iter().enumerate() {
            x0[i as usize] = picks.x0[j];
            prob[i as usize] = picks.prob[j];
            if let Some(&c) = picks.confidence.get(j) {
                confidence[i as usize] = c;
            }
        }
        (x0, prob, confidence)
    }

    /// Per row of the `[B, G]` host grid `confidence`, its `ks[r]` highest positions: what
    /// `topk(max(ks))` over the rows keeps at ranks below `ks[r]`. On the host where that set
    /// is unique; where a tie at its boundary (or a NaN) leaves it to `topk`'s own order, with
    /// `topk` itself, as the tensor steps do.
    fn transfer_by_rank(&self, confidence: &[f32], ks: &[i64]) -> Result<Vec<bool>, ProbeError> {
        let g = self.g as usize;
        let mut transfer = vec![false; confidence.len()];
        let unique = ks.iter().enumerate().all(|(r, &k)| {
            match unique_top_k(&confidence[r * g..(r + 1) * g], k.max(0) as usize) {
                Some(top) => {
                    for j in top {
                        transfer[r * g + j] = true;
                    }
                    true
                }
                None => false,
            }
        });
        if unique {
            return Ok(transfer);
        }
        host_flags(&self.ranked_transfer(&self.host_scores(confidence)?, ks)?)
    }

    /// Per row of the `[B, G]` `scores`, its `ks[r]` highest positions: `topk(max(ks))` over
    /// the rows, keeping ranks below `ks[r]`.
    fn ranked_transfer(&self, scores: &Tensor, ks: &[i64]) -> Result<Tensor, ProbeError> {
        let none = Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?;
        let kmax = ks.iter().copied().max().unwrap_or(0);
        if kmax <= 0 {
            return Ok(none);
        }
        let (_, idx) = scores.f_topk(kmax, 1, true, true)?;
        let ranks = Tensor::f_arange(kmax, (Kind::Int64, self.dev))?.f_unsqueeze(0)?;
        let keep = ranks.f_lt_tensor(
            &Tensor::f_from_slice(ks)?
                .f_to_device(self.dev)?
                .f_unsqueeze(1)?,
        )?;
        Ok(none.f_scatter(1, &idx, &keep)?)
    }

    /// A `[B, G]` float32 tensor on the model's device from host scores.
    fn host_scores(&self, scores: &[f32]) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_from_slice(scores)?
            .f_view([self.b, self.g])?
            .f_to_device(self.dev)?)
    }

    /// A step that commits, per row `r`, the `ks[r]` most confident of the host choices `picks`
    /// at the flat positions `pick`.
    fn ranked_host_step(
        &self,
        pick: &[i64],
        picks: &HostPicks,
        ks: &[i64],
    ) -> Result<StepChoice, ProbeError> {
        let (x0, prob, confidence) = self.host_grids(pick, picks);
        let transfer = self.transfer_by_rank(&confidence, ks)?;
        Ok(StepChoice {
            values: StepValues::Host {
                x0,
                transfer,
                prob,
                confidence,
            },
            dist: None,
        })
    }

    /// `multinomial(softmax(confidence / alg_temp), k)` without replacement over the whole
    /// sequence (prompt positions at -inf), as upstream; one call for the batch when every row
    /// wants the same number of positions, as upstream's shared count does.
    fn dream_draw_positions(
        &self,
        scores: &Tensor,
        alg_temp: f64,
        ks: &[i64],
    ) -> Result<Tensor, ProbeError> {
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
                rows.push(if k == 0 {
                    row
                } else {
                    row.f_scatter_value(0, &weights.f_get(r as i64)?.f_multinomial(k, false)?, 1)?
                });
            }
            Tensor::f_stack(&rows, 0)?
        };
        Ok(transfer.f_narrow(1, self.p, self.g)?)
    }
}

/// The flags of a `[B, G]` bool tensor, row-major on the host.
fn host_flags(x: &Tensor) -> Result<Vec<bool>, ProbeError> {
    Ok(Vec::<bool>::try_from(
        &x.f_flatten(0, -1)?.f_to_device(Device::Cpu)?,
    )?)
}

/// Fast-dLLM's commit rule on the host (see `Ctx::threshold_transfer_t`) for `[B, G]` scores
/// (-inf off `eligible`) in rows of `g`: every eligible position at or above `tau`, and each
/// row's best one (the first of equal maxima, as `argmax`). `None` for a NaN score, or a score
/// that float32 and float64 comparisons with `tau` would place on different sides.
fn threshold_transfer(scores: &[f32], eligible: &[bool], g: usize, tau: f64) -> Option<Vec<bool>> {
    let mut transfer = vec![false; scores.len()];
    for (r, row) in scores.chunks(g).enumerate() {
        let mut best = None::<usize>;
        for (j, &c) in row.iter().enumerate() {
            if c.is_nan() || (c >= tau as f32) != (c as f64 >= tau) {
                return None;
            }
            let at = r * g + j;
            transfer[at] = eligible[at] && c as f64 >= tau;
            if best.is_none_or(|b| c > row[b]) {
                best = Some(j);
            }
        }
        if let (Some(b), true) = (best, eligible[r * g..(r + 1) * g].iter().any(|&e| e)) {
            transfer[r * g + b] = true;
        }
    }
    Some(transfer)
}

/// The positions of the `k` largest values of `row` (in no particular order), when that set is
/// the same whatever order `topk` gives equal values: `None` when the k-th and the (k + 1)-th
/// largest are equal, or for a NaN or `k > row.len()`.
fn unique_top_k(row: &[f32], k: usize) -> Option<Vec<usize>> {
    if k > row.len() || row.iter().any(|c| c.is_nan()) {
        return None;
    }
    if k == 0 {
        return Some(Vec::new());
    }
    let mut order: Vec<(f32, usize)> = row.iter().enumerate().map(|(j, &c)| (c, j)).collect();
    order.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let kth = order[..k].iter().map(|e| e.0).fold(f32::INFINITY, f32::min);
    // `>=` also catches -0.0 against 0.0, which `total_cmp` orders but `topk` does not.
    if order[k..].iter().any(|e| e.0 >= kth) {
        return None;
    }
    Some(order[..k].iter().map(|e| e.1).collect())
}

/// Dream's entropy confidence, `(probs * log(probs + 1e-10)).sum(-1)`. A zero probability gives
/// the term -0.0, so when `support` holds every nonzero entry only those terms are computed,
/// into a tensor of -0.0 that is then summed exactly as upstream's.
fn neg_entropy(probs: &Tensor, support: Option<&Tensor>) -> Result<Tensor, ProbeError> {
    let terms = match support {
        Some(idx) => {
            let kept = probs.f_gather(-1, idx, false)?;
            let mut t = kept.f_add_scalar(1e-10)?;
            let _ = t.f_log_()?.f_mul_(&kept)?;
            match host::cpu_f32(probs) {
                // The same tensor, written in one pass.
                Some(_) => {
                    let (n, k, v) = (
                        idx.size()[0] as usize,
                        idx.size()[1] as usize,
                        probs.size()[1] as usize,
                    );
                    let (at, t) = (
                        Vec::<i64>::try_from(&idx.f_flatten(0, -1)?)?,
                        Vec::<f32>::try_from(&t.f_flatten(0, -1)?)?,
                    );
                    host::build_rows(n, v, |r, row| {
                        row.fill(-0.0);
                        for j in r * k..(r + 1) * k {
                            row[at[j] as usize] = t[j];
                        }
                    })?
                }
                None => probs.f_full_like(-0.0)?.f_scatter(-1, idx, &t)?,
            }
        }
        None => {
            let mut t = probs.f_add_scalar(1e-10)?;
            let _ = t.f_log_()?.f_mul_(probs)?;
            t
        }
    };
    Ok(terms.f_sum_dim_intlist(-1, false, Kind::Float)?)
}

/// Dream's filtered distribution (after the softmax), and what is known of it.
struct DreamDist {
    probs: Tensor,
    /// `[n, k]` indices outside which every probability is exactly 0, when known.
    support: Option<Tensor>,
    /// `[n]` index of each row's largest probability (its first maximum), when known.
    first: Option<Tensor>,
}

/// [`top_k_filter`]'s result: the filtered logits, and when known the support of their softmax
/// and the index of its maximum.
struct TopK {
    kept: Tensor,
    support: Option<Tensor>,
    first: Option<Tensor>,
}

/// Dream's `top_k_logits` on rows `[n, V]`: logits below the k-th largest are set to float32's
/// lowest value, so every logit tied with the k-th largest is kept.
///
/// When no row has a tie at the k-th value (the usual case), the kept logits are exactly the
/// top-k entries, so the result is built by scattering them into a filled tensor: the same
/// tensor as upstream's `masked_fill`, which is several times slower on CPU. That path also
/// returns the kept indices `[n, k]`; when every row's largest logit is above float32's lowest
/// value, the softmax of the result is exactly 0 everywhere else. If then each row's largest
/// logit also exceeds its second by at least 2^-20, its softmax probability is strictly the
/// largest (the second's is at most `1 - 2^-21` times it, several float32 ulps below), so the
/// argmax of the softmax is that logit's index, returned as `first`.
///
/// On CPU the top k + 1 entries are found on the host ([`host::top_m`]: `topk`'s values, and its
/// indices up to the order among equal values, which changes neither `kept` nor the tie test);
/// elsewhere, and for rows with NaNs, by `topk`.
fn top_k_filter(logits: &Tensor, k: i64) -> Result<TopK, ProbeError> {
    let v = logits.size()[1];
    let m = (k + 1).min(v);
    let on_host = host::top_m(logits, m as usize);
    let (vals, idx) = match &on_host {
        Some((vals, idx)) => {
            let n = vals.len() as i64 / m;
            (
                Tensor::f_from_slice(vals)?.f_view([n, m])?,
                Tensor::f_from_slice(idx)?.f_view([n, m])?,
            )
        }
        None => logits.f_topk(m, -1, true, true)?,
    };
    let (vals, idx) = (
        vals.f_to_device(logits.device())?,
        idx.f_to_device(logits.device())?,
    );
    let kth = vals.f_narrow(-1, k - 1, 1)?;
    if k < v {
        // `next < kth` is false for ties and NaNs: those rows take upstream's path.
        let next = vals.f_narrow(-1, k, 1)?;
        let untied = next.f_lt_tensor(&kth)?;
        if bool::try_from(&untied.f_all()?)? {
            let (vals, idx) = (vals.f_narrow(-1, 0, k)?, idx.f_narrow(-1, 0, k)?);
            let kept = match &on_host {
                // The same tensor, written in one pass.
                Some((hv, hi)) => {
                    let (m, k) = (m as usize, k as usize);
                    host::build_rows(hv.len() / m, v as usize, |r, row| {
                        row.fill(f32::MIN);
                        for j in r * m..r * m + k {
                            row[hi[j] as usize] = hv[j];
                        }
                    })?
                }
                None => logits
                    .f_full_like(f32::MIN as f64)?
                    .f_scatter(-1, &idx, &vals)?,
            };
            let top = vals.f_narrow(-1, 0, 1)?;
            if !bool::try_from(&top.f_gt(f32::MIN as f64)?.f_all()?)? {
                return Ok(TopK {
                    kept,
                    support: None,
                    first: None,
                });
            }
            let decisive = k == 1
                || bool::try_from(
                    &top.f_sub(&vals.f_narrow(-1, 1, 1)?)?
                        .f_ge(2f64.powi(-20))?
                        .f_all()?,
                )?;
            let first = decisive.then(|| idx.f_select(-1, 0)).transpose()?;
            return Ok(TopK {
                kept,
                support: Some(idx),
                first,
            });
        }
    }
    let kept = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f32::MIN as f64)?;
    Ok(TopK {
        kept,
        support: None,
        first: None,
    })
}

/// Dream's `top_p_logits`: keep the smallest prefix of the sorted distribution whose mass
/// exceeds `top_p` (always the first token), fill the rest with float32's lowest value.
fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    if let Some(thresholds) = host_top_p_thresholds(logits, top_p)? {
        // Keep the logits at or above each row's threshold, as upstream keeps that prefix:
        // `masked_fill(logits < threshold, lowest)`, in one host pass.
        if let Some(kept) = host::fill_below(logits, &thresholds, f32::MIN)? {
            return Ok(kept);
        }
        let thresholds = Tensor::f_from_slice(&thresholds)?.f_view([thresholds.len() as i64, 1])?;
        return Ok(logits.f_masked_fill(&logits.f_lt_tensor(&thresholds)?, f32::MIN as f64)?);
    }
    top_p_filter_by_sort(logits, top_p)
}

/// Upstream's `top_p_logits` as written: sort, cumulative softmax, shifted removal mask.
fn top_p_filter_by_sort(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    let (sorted, order) = logits.f_sort(-1, true)?;
    let cum = sorted
        .f_softmax(-1, Kind::Float)?
        .f_cumsum(-1, Kind::Float)?;
    let remove = cum.f_gt(top_p)?;
    let last = remove.size().last().copied().unwrap_or(0);
    // Shift right by one so that the token crossing the threshold is kept.
    let shifted = Tensor::f_cat(
        &[
            &remove.f_narrow(-1, 0, 1)?.f_zeros_like()?,
            &remove.f_narrow(-1, 0, last - 1)?,
        ],
        -1,
    )?;
    let drop = shifted.f_zeros_like()?.f_scatter(-1, &order, &shifted)?;
    Ok(logits.f_masked_fill(&drop, f32::MIN as f64)?)
}

/// Per row, the smallest logit [`top_p_filter_by_sort`] keeps, on the host; `None` (the caller
/// then takes the sort path for the whole batch) off CPU/float32, for rows shorter than 16 or
/// with NaNs, and where a tie at the threshold would make upstream's choice depend on its sort.
///
/// Upstream sorts the whole row, takes its softmax and the cumulative sum. Only a head of the
/// sorted row is needed for the same bits: libtorch's softmax sums the exponentials in 16 (or
/// 8) lane sums over the sorted positions, each lane starting with one of the 16 largest
/// logits `s_0 >= ... >= s_15`. A logit below `s_15 - 18` has an exponential under
/// `e^-18 < 2^-25` times every lane sum, less than half its float32 ulp, so adding it changes
/// nothing; and it comes after every larger logit in the sorted row. The head (every logit at
/// or above `s_15 - 18`), sorted and padded with float32's lowest value (exponential 0), thus
/// has the same softmax and cumulative sum as the full sorted row on its positions. When the
/// mass reaches `top_p` within the head (the usual case), the threshold is found there; else
/// the whole row is sorted.
fn host_top_p_thresholds(logits: &Tensor, top_p: f64) -> Result<Option<Vec<f32>>, ProbeError> {
    const LANES: usize = 16;
    let v = logits.size()[1] as usize;
    let Some(rows) = host::cpu_f32(logits) else {
        return Ok(None);
    };
    if v < LANES || rows.iter().any(|x| x.is_nan()) {
        return Ok(None);
    }
    let n = rows.len() / v;
    if n == 0 {
        // A step that samples no position (Dream `origin` when no draw passes).
        return Ok(Some(Vec::new()));
    }
    let mut select = host::TopSelect::default();
    let (mut keys, mut scratch) = (Vec::new(), Vec::new());
    for full in [false, true] {
        // Each row's sorted head (the whole row when `full`), padded to a common multiple of 16.
        let mut heads: Vec<Vec<f32>> = Vec::with_capacity(n);
        for row in rows.chunks(v) {
            let cut = if full {
                f32::NEG_INFINITY
            } else {
                // The 16th largest logit: the selection's last key.
                let top = select.select(row, LANES, &[]).expect("NaN-free rows");
                host::from_desc_key((top[LANES - 1] >> 32) as u32) - 18.0
            };
            let mut head = row.to_vec();
            if cut.is_finite() {
                // Branch-free: most of a row can be in the head, with the rest scattered.
                let mut kept = 0;
                for j in 0..head.len() {
                    let x = head[j];
                    head[kept] = x;
                    kept += usize::from(x >= cut);
                }
                head.truncate(kept);
            }
            host::sort_descending(&mut head, &mut keys, &mut scratch);
            heads.push(head);
        }
        let width = heads
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .div_ceil(LANES)
            * LANES;
        let mut padded = vec![f32::MIN; n * width];
        for (r, head) in heads.iter().enumerate() {
            padded[r * width..r * width + head.len()].copy_from_slice(head);
        }
        let sorted_t = Tensor::f_from_slice(&padded)?.f_view([n as i64, width as i64])?;
        let probs = sorted_t.f_softmax(-1, Kind::Float)?;
        let probs = host::cpu_f32(&probs).expect("a new CPU float32 tensor");
        // Upstream's `cumsum(-1) > top_p` up to its first true entry: libtorch's float32
        // `cumsum` adds sequentially in float64 and rounds each sum to float32, and the
        // comparison rounds `top_p` to float32.
        let top_p32 = top_p as f32;
        let mut thresholds = Vec::with_capacity(n);
        for (head, probs) in heads.iter().zip(probs.chunks(width)) {
            let mut cum = 0f64;
            let first_over = probs[..head.len()].iter().position(|&p| {
                cum += p as f64;
                cum as f32 > top_p32
            });
            // Kept: sorted positions up to the first whose cumulative mass exceeds top_p (all of
            // them when none does, which for a head means: sort the whole rows).
            let last = match first_over {
                Some(last) => last,
                None if full || head.len() == v => head.len() - 1,
                None => break,
            };
            if last + 1 < head.len() && head[last + 1] == head[last] {
                return Ok(None);
            }
            thresholds.push(head[last]);
        }
        if thresholds.len() == n {
            return Ok(Some(thresholds));
        }
    }
    unreachable!("the full rows give every threshold")
}

/// `x.argmax(-1)` of a `[n, V]` tensor, computed as the argmax of the chunk maxima, then the
/// argmax within the winning chunk: the same index (the first maximum, as `argmax` and
/// `max(dim)` return; NaN counts as the maximum in both), several times cheaper on CPU, where
/// `amax` is vectorised and `argmax` is not.
fn argmax_rows(x: &Tensor) -> Result<Tensor, ProbeError> {
    let (n, v) = (x.size()[0], x.size()[1]);
    let Some(c) = [64, 32, 16, 8]
        .into_iter()
        .find(|&c| v % c == 0 && v / c >= 2)
    else {
        return Ok(x.f_argmax(-1, false)?);
    };
    let chunks = x.f_reshape([n, v / c, c])?;
    let best = chunks
        .f_amax([-1i64].as_slice(), false)?
        .f_argmax(-1, true)?;
    let within = chunks
        .f_gather(1, &best.f_unsqueeze(-1)?.f_expand([n, 1, c], false)?, false)?
        .f_squeeze_dim(1)?
        .f_argmax(-1, false)?;
    Ok(best.f_squeeze_dim(-1)?.f_mul_scalar(c)?.f_add(&within)?)
}

/// `x[i, idx[i]]` for a `[n, V]` tensor and `[n]` indices.
fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor, ProbeError> {
    Ok(x.f_gather(-1, &idx.f_unsqueeze(-1)?, false)?
        .f_squeeze_dim(-1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_argmax_is_argmax() {
        tch::manual_seed(3);
        for (n, v) in [(5, 320), (7, 8192), (3, 100), (4, 7), (0, 64)] {
            // Few distinct values, so that rows have many tied maxima across chunks.
            let x = Tensor::randint(6, [n, v], (Kind::Float, Device::Cpu));
            assert_eq!(argmax_rows(&x).unwrap(), x.argmax(-1, false), "{n}x{v}");
            let y = Tensor::randn([n, v], (Kind::Double, Device::Cpu));
            assert_eq!(argmax_rows(&y).unwrap(), y.argmax(-1, false), "{n}x{v}");
        }
    }

    #[test]
    fn threshold_transfer_commits_above_tau_and_each_rows_best() {
        let ninf = f32::NEG_INFINITY;
        // Row 0: two above tau; row 1: none above, the first of two equal maxima; row 2: nothing
        // eligible.
        let scores = [
            0.95, 0.2, 0.91, ninf, 0.4, 0.1, 0.4, 0.3, ninf, ninf, ninf, ninf,
        ];
        let eligible = [
            true, true, true, false, true, true, true, true, false, false, false, false,
        ];
        let got = threshold_transfer(&scores, &eligible, 4, 0.9).unwrap();
        let want = [
            true, false, true, false, true, false, false, false, false, false, false, false,
        ];
        assert_eq!(got, want);
        // The same as the tensor rule.
        let t = Tensor::from_slice(&scores).view([3, 4]);
        let best = t.argmax(1, true);
        let has_any = Tensor::from_slice(&eligible).view([3, 4]).any_dim(1, true);
        let top1 = Tensor::zeros([3, 4], (Kind::Bool, Device::Cpu))
            .scatter_value(1, &best, 1)
            .logical_and(&has_any);
        let rule = t
            .ge(0.9)
            .logical_and(&Tensor::from_slice(&eligible).view([3, 4]))
            .logical_or(&top1);
        assert_eq!(Vec::<bool>::try_from(&rule.flatten(0, -1)).unwrap(), want);
        // A NaN, or a score that float32 and float64 place on different sides of tau: None.
        assert!(threshold_transfer(&[f32::NAN, 0.5], &[true, true], 2, 0.9).is_none());
        assert!(threshold_transfer(&[0.9f32, 0.5], &[true, true], 2, 0.9).is_none());
    }

    #[test]
    fn unique_top_k_is_topks_set_or_none() {
        tch::manual_seed(11);
        for (g, k) in [(64usize, 10usize), (64, 64), (7, 1), (100, 0)] {
            let mut x =
                Vec::<f32>::try_from(&Tensor::randn([g as i64], (Kind::Float, Device::Cpu)))
                    .unwrap();
            x[g / 2] = f32::NEG_INFINITY;
            let mut got = unique_top_k(&x, k).unwrap();
            got.sort_unstable();
            let (_, idx) = Tensor::from_slice(&x).topk(k as i64, -1, true, true);
            let mut want: Vec<usize> = Vec::<i64>::try_from(&idx)
                .unwrap()
                .into_iter()
                .map(|i| i as usize)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "{g} top {k}");
        }
        // A tie across the boundary, -0.0 against 0.0, a NaN, k past the row: no unique set.
        assert!(unique_top_k(&[3.0, 1.0, 2.0, 2.0], 2).is_none());
        assert!(unique_top_k(&[3.0, 0.0, -0.0, -1.0], 2).is_none());
        assert!(unique_top_k(&[3.0, f32::NAN, 1.0], 1).is_none());
        assert!(unique_top_k(&[3.0, 1.0], 3).is_none());
        // Ties inside the set are fine.
        let mut both = unique_top_k(&[2.0, 1.0, 2.0, 0.5], 2).unwrap();
        both.sort_unstable();
        assert_eq!(both, [0, 2]);
    }

    #[test]
    fn top_p_filter_is_upstreams() {
        tch::manual_seed(5);
        let scaled = Tensor::randn([6, 320], (Kind::Float, Device::Cpu)) * 3.0;
        let tied = Tensor::randint(5, [6, 320], (Kind::Float, Device::Cpu));
        let forbidden = scaled.index_fill(1, &Tensor::from_slice(&[0i64, 5, 9]), f64::NEG_INFINITY);
        let peaked = scaled.index_fill(1, &Tensor::from_slice(&[7i64]), 50.0);
        for top_p in [0.05, 0.3, 0.9, 0.999] {
            for x in [&scaled, &tied, &forbidden, &peaked] {
                let fast = top_p_filter(x, top_p).unwrap();
                assert!(
                    fast.equal(&top_p_filter_by_sort(x, top_p).unwrap()),
                    "top_p = {top_p}"
                );
            }
        }
        // The host path is taken for untied rows.
        assert!(host_top_p_thresholds(&scaled, 0.9).unwrap().is_some());
        // Wide rows, whose sorted heads are short (the rest cannot move a bit), flat rows (the
        // head is the whole row), and a vocabulary that is no multiple of 16.
        for (v, scale) in [
            (2048, 8.0),
            (2048, 20.0),
            (2051, 40.0),
            (1000, 0.3),
            (4096, 3.0),
        ] {
            let x = Tensor::randn([24, v], (Kind::Float, Device::Cpu)) * scale;
            for top_p in [0.5, 0.9, 0.95, 0.9999] {
                let host = top_p_filter(&x, top_p).unwrap();
                assert!(
                    host.equal(&top_p_filter_by_sort(&x, top_p).unwrap()),
                    "v = {v}, scale {scale}, top_p = {top_p}"
                );
            }
        }
        // No rows at all: a Dream `origin` step in which no position is sampled.
        let none = Tensor::zeros([0, 320], (Kind::Float, Device::Cpu));
        assert_eq!(top_p_filter(&none, 0.9).unwrap().size(), [0, 320]);
    }

    #[test]
    fn top_k_filter_is_upstreams_masked_fill() {
        tch::manual_seed(4);
        let upstream = |x: &Tensor, k: i64| {
            let (vals, _) = x.topk(k, -1, true, true);
            x.masked_fill(&x.lt_tensor(&vals.narrow(-1, k - 1, 1)), f32::MIN as f64)
        };
        for k in [1, 3, 5, 40, 64] {
            // Distinct values (scatter path), many ties (masked_fill path), and -inf entries.
            let distinct = Tensor::randn([6, 64], (Kind::Float, Device::Cpu));
            let tied = Tensor::randint(4, [6, 64], (Kind::Float, Device::Cpu));
            let forbidden =
                distinct.index_fill(1, &Tensor::from_slice(&[0i64, 5, 9]), f64::NEG_INFINITY);
            for x in [distinct, tied, forbidden] {
                let TopK { kept, first, .. } = top_k_filter(&x, k).unwrap();
                assert!(kept.equal(&upstream(&x, k)), "k = {k}");
                if let Some(first) = first {
                    assert_eq!(
                        first,
                        upstream(&x, k).softmax(-1, Kind::Float).argmax(-1, false),
                        "k = {k}"
                    );
                }
            }
        }
        let long = Tensor::randn([3, 8192], (Kind::Float, Device::Cpu));
        for k in [1, 50, 500] {
            let TopK {
                kept,
                support,
                first,
            } = top_k_filter(&long, k).unwrap();
            assert!(kept.equal(&upstream(&long, k)), "k = {k}");
            let argmax = upstream(&long, k)
                .softmax(-1, Kind::Float)
                .argmax(-1, false);
            assert_eq!(first.unwrap(), argmax, "k = {k}");
            // Outside the support, the softmax is exactly 0.
            let probs = kept.softmax(-1, Kind::Float);
            let zeros = probs.scatter_value(-1, support.as_ref().unwrap(), 0.0);
            assert!(zeros.eq(0.0).all().int64_value(&[]) == 1, "k = {k}");
            let upstream_entropy =
                (&probs * (&probs + 1e-10).log()).sum_dim_intlist(-1, false, Kind::Float);
            assert!(
                neg_entropy(&probs, support.as_ref())
                    .unwrap()
                    .equal(&upstream_entropy),
                "k = {k}"
            );
        }
    }
}
