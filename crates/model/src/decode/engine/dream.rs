//! Dream's steps (`DreamGenerationMixin._sample`): timestep schedule, `alg` confidences,
//! top-k / top-p filtering, and the host finish of each.

use super::*;

impl Ctx<'_> {
    /// Dream's `sample_tokens` draw on distribution rows `probs [n, V]` (upstream's
    /// `logits[mask_index]`, row-major): a draw from `Categorical(probs)`, by inverse CDF with
    /// one `torch.rand(n, float64)` per step: the first index whose float64 cumulative mass
    /// reaches `(1 - u)` times the row's total (positive, so a zero-probability token is never
    /// drawn). Upstream's `multinomial(p, 1, True)` draws `V` exponentials per row instead,
    /// which on the CPU cost more than the model call: same distribution, not its stream.
    pub(super) fn dream_sample(&self, probs: &Tensor) -> Result<Tensor, ProbeError> {
        let n = probs.size()[0];
        if n == 0 {
            return Ok(Tensor::f_zeros([0], (Kind::Int64, self.dev))?);
        }
        let u = Tensor::f_rand([n, 1], (Kind::Double, self.dev))?;
        let picks = match cpu::enabled(FastPath::InverseCdf) {
            true => cpu::inverse_cdf(probs, &Vec::<f64>::try_from(&u.f_flatten(0, -1)?)?),
            false => None,
        };
        if let Some(picks) = picks {
            cpu::ran(FastPath::InverseCdf);
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
    pub(super) fn dream_probs(
        &self,
        dp: &DreamParams,
        logits: Tensor,
    ) -> Result<DreamDist, ProbeError> {
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
    pub(super) fn dream_argmax(&self, dist: &DreamDist, work: &Work) -> Result<Tensor, ProbeError> {
        match &dist.first {
            Some(first) => work.picked(first),
            None => argmax_rows(&work.picked(&dist.probs)?),
        }
    }

    pub(super) fn dream_step(
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
            let dist = self.dream_probs(dp, self.logits(gen, &work.rows)?)?;
            let picked_probs = work.picked(&dist.probs)?;
            let x0 = if dp.temperature > 0.0 {
                self.dream_sample(&picked_probs)?
            } else {
                self.dream_argmax(&dist, &work)?
            };
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
        let flat = self.forward(gen)?;
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
        if on_support.is_some() {
            cpu::ran(FastPath::DreamSupport);
        }
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
                let dist = self.dream_probs(dp, self.select_logits(&flat, &work.rows)?)?;
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
    /// `../cpu/sparse.rs`): `x0`, its probability and the confidence of `dp.alg`, each `[n]`, the same
    /// as the full-row path gives. `None` where that path is needed.
    pub(super) fn dream_on_support(
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
        if !cpu::enabled(FastPath::DreamSupport) {
            return Ok(None);
        }
        // SAFETY: `flat` is the model's output for this step, only read until the step ends.
        let Some(data) = (unsafe { cpu::cpu_f32(flat) }) else {
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
    pub(super) fn host_grids(
        &self,
        pick: &[i64],
        picks: &HostPicks,
    ) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
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
    pub(super) fn transfer_by_rank(
        &self,
        confidence: &[f32],
        ks: &[i64],
    ) -> Result<Vec<bool>, ProbeError> {
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
    pub(super) fn ranked_transfer(
        &self,
        scores: &Tensor,
        ks: &[i64],
    ) -> Result<Tensor, ProbeError> {
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
    pub(super) fn host_scores(&self, scores: &[f32]) -> Result<Tensor, ProbeError> {
        Ok(Tensor::f_from_slice(scores)?
            .f_view([self.b, self.g])?
            .f_to_device(self.dev)?)
    }

    /// A step that commits, per row `r`, the `ks[r]` most confident of the host choices `picks`
    /// at the flat positions `pick`.
    pub(super) fn ranked_host_step(
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
    pub(super) fn dream_draw_positions(
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

/// Dream's entropy confidence, `(probs * log(probs + 1e-10)).sum(-1)`. A zero probability gives
/// the term -0.0, so when `support` holds every nonzero entry only those terms are computed,
/// into a tensor of -0.0 that is then summed exactly as upstream's.
pub(super) fn neg_entropy(probs: &Tensor, support: Option<&Tensor>) -> Result<Tensor, ProbeError> {
    let terms = match support {
        Some(idx) => {
            let kept = probs.f_gather(-1, idx, false)?;
            let mut t = kept.f_add_scalar(1e-10)?;
            let _ = t.f_log_()?.f_mul_(&kept)?;
            probs.f_full_like(-0.0)?.f_scatter(-1, idx, &t)?
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
pub(super) struct DreamDist {
    pub(super) probs: Tensor,
    /// `[n, k]` indices outside which every probability is exactly 0, when known.
    pub(super) support: Option<Tensor>,
    /// `[n]` index of each row's largest probability (its first maximum), when known.
    pub(super) first: Option<Tensor>,
}
