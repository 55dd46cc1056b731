//! What every step of a batch shares: the model call, row selection, token choice.

use super::*;

/// The fixed context of a batch's steps.
pub(super) struct Ctx<'a> {
    pub(super) model: &'a dyn MaskedDenoiser,
    pub(super) b: i64,
    pub(super) p: i64,
    pub(super) g: i64,
    pub(super) v: i64,
    pub(super) dev: Device,
    pub(super) mask_id: i64,
    pub(super) prompt_block: &'a Tensor,
    pub(super) valid: Option<&'a Tensor>,
    pub(super) forbidden: Option<Tensor>,
    pub(super) forbidden_host: Vec<i64>,
    /// Whether the step must return the distributions of every still-masked position.
    pub(super) save_distributions: bool,
    /// Per row of the model's output, the top-k selection's floor hint from the last step
    /// (`sparse::top_k_support`).
    pub(super) floor_hints: RefCell<Vec<f32>>,
}

/// Flat indices `b * g + j` of generated positions, in row-major order (upstream's
/// `x[mask_index]` order), on the host and on the device.
pub(super) struct Rows {
    pub(super) host: Vec<i64>,
    pub(super) dev: Tensor,
}

/// Which positions a step works on: `pick` (those whose token is chosen) and `rows` (those
/// whose logits are computed: `pick`, plus every masked position when distributions are
/// saved). `pick` is a subset of `rows`; `pick_in_rows` locates it there when they differ.
pub(super) struct Work {
    pub(super) rows: Rows,
    pub(super) pick: Rows,
    pub(super) pick_in_rows: Option<Tensor>,
}

impl Work {
    /// The rows of `x` (`[rows, ...]`) that belong to `pick`.
    pub(super) fn picked(&self, x: &Tensor) -> Result<Tensor, ProbeError> {
        Ok(match &self.pick_in_rows {
            Some(at) => x.f_index_select(0, at)?,
            None => x.shallow_clone(),
        })
    }
}

impl Ctx<'_> {
    pub(super) fn rows(&self, host: Vec<i64>) -> Result<Rows, ProbeError> {
        let dev = Tensor::f_from_slice(&host)?.f_to_device(self.dev)?;
        Ok(Rows { host, dev })
    }

    /// Flat indices of the positions of `gen_host` (`[B * G]`) that satisfy `keep(flat index)`.
    pub(super) fn masked_where(&self, gen_host: &[i64], keep: impl Fn(usize) -> bool) -> Vec<i64> {
        (0..gen_host.len())
            .filter(|&i| gen_host[i] == self.mask_id && keep(i))
            .map(|i| i as i64)
            .collect()
    }

    /// `pick` plus, when distributions are saved, every masked position of `gen_host`.
    pub(super) fn work(&self, gen_host: &[i64], pick: Vec<i64>) -> Result<Work, ProbeError> {
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
    pub(super) fn grid(&self, flags: &[bool]) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_from_slice(flags)?
            .f_view([self.b, self.g])?
            .f_to_device(self.dev)?)
    }

    /// A `[B, G]` tensor holding `values` (one per row of `at`) at `at`, `fill` elsewhere.
    pub(super) fn spread(
        &self,
        at: &Rows,
        values: &Tensor,
        fill: f64,
    ) -> Result<Tensor, ProbeError> {
        let full = Tensor::f_full([self.b * self.g], fill, (values.kind(), self.dev))?;
        Ok(full
            .f_index_copy(0, &at.dev, values)?
            .f_view([self.b, self.g])?)
    }

    /// Logits `[n, V]` of the generated positions `rows` (flat indices), with forbidden ids at -inf.
    /// Everything after the model call works on these rows only: positions that are already
    /// committed, or not eligible this step, cost nothing.
    pub(super) fn logits(
        &self,
        gen: &Tensor,
        cfg_scale: f64,
        rows: &Rows,
    ) -> Result<Tensor, ProbeError> {
        let flat = self.forward(gen, cfg_scale)?;
        self.select_logits(&flat, cfg_scale, rows)
    }

    /// The model call on the batch with generated ids `gen`: logits `[calls * B * G, V]` of the
    /// generated positions, row-major (with CFG, the conditional rows then the unconditional).
    pub(super) fn forward(&self, gen: &Tensor, cfg_scale: f64) -> Result<Tensor, ProbeError> {
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

    /// [`Ctx::logits`] on the model's output `flat` (from [`Ctx::forward`]).
    pub(super) fn select_logits(
        &self,
        flat: &Tensor,
        cfg_scale: f64,
        rows: &Rows,
    ) -> Result<Tensor, ProbeError> {
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
        Ok(logits)
    }

    /// `torch.rand((B, L))` sliced to the generated positions: upstream draws one number per
    /// position of the whole sequence, so we draw the same amount to stay on its stream.
    pub(super) fn rand_positions(&self) -> Result<Tensor, ProbeError> {
        Ok(
            Tensor::f_rand([self.b, self.p + self.g], (Kind::Float, self.dev))?
                .f_narrow(1, self.p, self.g)?,
        )
    }

    /// LLaDA's token choice on logit rows `[n, V]`: greedy argmax, or Gumbel-max in float64 as
    /// `add_gumbel_noise` does (`exp(logits) / (-log u)^T`, which samples softmax(logits / T)).
    /// Returns `x0 [n]`, its float32 softmax probability when `need_p`, and its probability
    /// under the distribution it was drawn from. With `consume`, the greedy path may overwrite
    /// `logits` with its softmax.
    ///
    /// Random stream (temperature > 0 only): upstream draws `u` for the whole `[B, L, V]`
    /// sequence; we draw `u` `[n, V]` with `torch.rand((n, V), float64)` for the `n` rows whose
    /// token is needed, in row-major order, after any position draw of the step. Same
    /// distribution, seeded and deterministic, but not upstream's stream (the parity traces
    /// are greedy).
    pub(super) fn choose_tokens(
        &self,
        logits: &Tensor,
        temperature: f64,
        need_p: bool,
        consume: bool,
    ) -> Result<(Tensor, Option<Tensor>, Tensor), ProbeError> {
        if temperature == 0.0 {
            let x0 = argmax_rows(logits)?;
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
        let mut gumbel = Tensor::f_rand([n, self.v], (Kind::Double, self.dev))?;
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
    pub(super) fn sampled_from(
        &self,
        logits: &Tensor,
        temperature: f64,
    ) -> Result<Tensor, ProbeError> {
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
    pub(super) fn top_k_positions(&self, scores: &Tensor, k: i64) -> Result<Tensor, ProbeError> {
        let none = Tensor::f_zeros([self.b, self.g], (Kind::Bool, self.dev))?;
        if k == 0 {
            return Ok(none);
        }
        let (_, idx) = scores.f_topk(k, 1, true, true)?;
        Ok(none.f_scatter_value(1, &idx, 1)?)
    }

    /// Flat indices of the set positions of a `[B, G]` bool tensor, in row-major order.
    pub(super) fn set_positions(&self, transfer: &Tensor) -> Result<Vec<i64>, ProbeError> {
        let flags = Vec::<bool>::try_from(&transfer.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
        Ok(flags
            .iter()
            .enumerate()
            .filter(|(_, &f)| f)
            .map(|(i, _)| i as i64)
            .collect())
    }
}
