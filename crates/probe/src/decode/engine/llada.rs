//! LLaDA's steps (`generate()`): low-confidence and random remasking, guidance, Gumbel noise.

use super::*;

impl Ctx<'_> {
    /// The LLaDA-style token choice (llada, threshold, fixed) once the work is known: the model
    /// call and `choose_tokens` for the positions `work.pick`, spread over `[B, G]` tensors.
    pub(super) fn llada_like(
        &self,
        gen: &Tensor,
        cfg_scale: f64,
        temperature: f64,
        work: &Work,
        need_p: bool,
    ) -> Result<LladaChoice, ProbeError> {
        let logits = self.logits(gen, cfg_scale, &work.rows)?;
        // The logits are needed afterwards only to save distributions.
        let consume = !self.save_distributions;
        let (x0, p, q) =
            self.choose_tokens(&work.picked(&logits)?, temperature, need_p, consume)?;
        let dist = if self.save_distributions {
            Some((
                work.rows.host.clone(),
                self.sampled_from(&logits, temperature)?,
            ))
        } else {
            None
        };
        Ok(LladaChoice {
            x0: self.spread(&work.pick, &x0, self.mask_id as f64)?,
            prob: self.spread(&work.pick, &q, 0.0)?,
            scores: p
                .map(|p| self.spread(&work.pick, &p, f64::NEG_INFINITY))
                .transpose()?,
            dist,
        })
    }

    /// A step that commits, per row, the `k` picked positions with the most confident tokens
    /// `choice`.
    pub(super) fn ranked_step(
        &self,
        choice: LladaChoice,
        k: i64,
    ) -> Result<StepChoice, ProbeError> {
        let LladaChoice {
            x0,
            prob,
            scores,
            dist,
        } = choice;
        let scores = scores.expect("need_p");
        let transfer = self.top_k_positions(&scores, k)?;
        Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
    }

    /// A step whose positions `transfer` were drawn first, by the `[B, G]` `scores`, and whose
    /// tokens are `choice`.
    pub(super) fn drawn_first_step(
        &self,
        choice: LladaChoice,
        transfer: Tensor,
        scores: Tensor,
    ) -> Result<StepChoice, ProbeError> {
        let LladaChoice { x0, prob, dist, .. } = choice;
        Ok(StepChoice::tensors(x0, transfer, prob, scores, dist))
    }

    pub(super) fn llada_step(
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
                    transfer,
                    scores,
                )
            }
        }
    }
}
