//! Runs a [`Schedule`] on one batch of prompts: model calls (rows left-padded to a common
//! prompt length where the model allows it), views, commits, trajectories.

use std::collections::BTreeMap;

use tch::Tensor;

use super::view::StepView;
use super::{Call, RowDecoder, Schedule, Sequence};
use crate::decode::{Commit, DecodeOptions, DecodeProgress, StepTopK, Trajectory};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// One batch under a [`Schedule`].
pub(crate) struct Batch<'a> {
    pub model: &'a dyn MaskedDenoiser,
    pub schedule: &'a dyn Schedule,
    pub opts: &'a DecodeOptions<'a>,
    pub prompts: Vec<&'a [i64]>,
    pub prompts_done: usize,
    pub prompts_total: usize,
}

/// Which rows may share a model call: positions after the prompt, and the prompt length
/// when rows cannot be padded to a common one.
type CallShape = (usize, Option<usize>);

struct Row<'s> {
    seq: Sequence,
    decoder: Box<dyn RowDecoder + 's>,
    history: Vec<Vec<i64>>,
    commits: Vec<Commit>,
    distributions: Vec<StepTopK>,
    done: bool,
}

impl Batch<'_> {
    /// Decodes the batch. Each model call holds the rows that asked for the same window;
    /// a row that is finished takes no part in later calls, so its trajectory does not
    /// depend on the other rows.
    pub fn run(self) -> Result<Vec<Trajectory>, ProbeError> {
        let model = self.model;
        let mask_id = model.mask_id();
        let mut rows: Vec<Row> = Vec::with_capacity(self.prompts.len());
        for prompt in &self.prompts {
            let canvas = self.schedule.canvas_len(prompt.len());
            let mut ids = prompt.to_vec();
            ids.resize(canvas, mask_id);
            rows.push(Row {
                history: vec![ids[prompt.len()..].to_vec()],
                seq: Sequence {
                    ids,
                    prompt_len: prompt.len(),
                    mask_id,
                    eot_ids: self.opts.eot_ids.clone(),
                },
                decoder: self.schedule.start(prompt.len())?,
                commits: Vec::new(),
                distributions: Vec::new(),
                done: false,
            });
        }

        let mut calls_made = 0;
        loop {
            // Rows share a model call when they ask for the same number of positions after
            // their prompt: left-padded to a common prompt length when the call sees the
            // whole sequence and the model honours padding, otherwise only with rows of the
            // same prompt length.
            let mut groups: BTreeMap<CallShape, Vec<(usize, Call)>> = BTreeMap::new();
            for (r, row) in rows.iter_mut().enumerate() {
                if row.done {
                    continue;
                }
                match row.decoder.window(&row.seq) {
                    None => row.done = true,
                    Some(call) => {
                        check_call(&row.seq, &call)?;
                        let width = call.window - row.seq.prompt_len;
                        let padded = call.window == row.seq.ids.len() && model.supports_padding();
                        let key = (width, (!padded).then_some(row.seq.prompt_len));
                        groups.entry(key).or_default().push((r, call));
                    }
                }
            }
            if groups.is_empty() {
                break;
            }
            for ((width, _), group) in groups {
                self.call(&mut rows, width, group)?;
            }
            calls_made += 1;
            if let Some(report) = self.opts.progress {
                report(&DecodeProgress {
                    prompts_done: self.prompts_done,
                    prompts_in_batch: self.prompts.len(),
                    prompts_total: self.prompts_total,
                    step: calls_made,
                    steps: self.schedule.steps(),
                });
            }
        }

        Ok(rows
            .into_iter()
            .map(|row| Trajectory {
                prompt_ids: row.seq.ids[..row.seq.prompt_len].to_vec(),
                history: row.history,
                commits: row.commits,
                distributions: row.distributions,
            })
            .collect())
    }

    /// One model call on the rows of `group`, each up to `width` positions after its prompt
    /// (left-padded to the longest prompt of the group), then each row's step.
    fn call(
        &self,
        rows: &mut [Row],
        width: usize,
        group: Vec<(usize, Call)>,
    ) -> Result<(), ProbeError> {
        let model = self.model;
        let p = group
            .iter()
            .map(|(r, _)| rows[*r].seq.prompt_len)
            .max()
            .unwrap_or(0);
        let len = p + width;
        let v = model.vocab_size();
        // Classifier-free guidance as LLaDA's `generate()`: the unconditional rows are the same
        // sequences with every prompt position masked, in the same model call.
        let guidance = self.schedule.guidance();
        let copies = if guidance.is_some() { 2 } else { 1 };
        let mut ids = Vec::with_capacity(copies * group.len() * len);
        let mut valid = Vec::with_capacity(copies * group.len() * len);
        for unconditional in [false, true].into_iter().take(copies) {
            for (r, call) in &group {
                let seq = &rows[*r].seq;
                let pad = p - seq.prompt_len;
                ids.extend(std::iter::repeat_n(seq.mask_id, pad));
                if unconditional {
                    ids.extend(std::iter::repeat_n(seq.mask_id, seq.prompt_len));
                    ids.extend_from_slice(&seq.ids[seq.prompt_len..call.window]);
                } else {
                    ids.extend_from_slice(&seq.ids[..call.window]);
                }
                valid.extend(std::iter::repeat_n(false, pad));
                valid.extend(std::iter::repeat_n(true, call.window));
            }
        }
        let shape = [(copies * group.len()) as i64, len as i64];
        let x = Tensor::f_from_slice(&ids)?
            .f_view(shape)?
            .f_to_device(model.device())?;
        let valid = match valid.iter().all(|&b| b) {
            true => None,
            false => Some(
                Tensor::f_from_slice(&valid)?
                    .f_view(shape)?
                    .f_to_device(model.device())?,
            ),
        };
        let logits = model.logits(&x, valid.as_ref(), p as i64)?;
        let expected = [(copies * group.len()) as i64, width as i64, v];
        if logits.size() != expected {
            return Err(ProbeError::Input(format!(
                "model returned logits of shape {:?}, expected {expected:?}",
                logits.size()
            )));
        }
        let half = group.len() as i64 * width as i64;
        let flat = logits.f_reshape([copies as i64 * half, v])?;

        // Row `g` of the call holds its positions from its own prompt length on.
        let starts: Vec<usize> = group.iter().map(|(r, _)| rows[*r].seq.prompt_len).collect();
        let rows_at = |positions: &[usize], g: usize| -> Vec<i64> {
            positions
                .iter()
                .map(|&q| (g * width + q - starts[g]) as i64)
                .collect()
        };
        let select = |index: Vec<i64>| -> Result<Tensor, ProbeError> {
            let at = Tensor::f_from_slice(&index)?.f_to_device(flat.device())?;
            let mut rows = flat.f_index_select(0, &at)?;
            if let Some(scale) = guidance {
                // `un + (cond - un) * (cfg_scale + 1)`, elementwise as upstream.
                let un = flat.f_index_select(0, &at.f_add_scalar(half)?)?;
                let _ = rows.f_sub_(&un)?.f_mul_scalar_(scale + 1.0)?.f_add_(&un)?;
            }
            Ok(rows)
        };
        // The rows each step asked for, in one selection.
        let picked = select(
            group
                .iter()
                .enumerate()
                .flat_map(|(g, (_, call))| rows_at(&call.positions, g))
                .collect(),
        )?;

        let mut offset = 0;
        for (g, (r, call)) in group.into_iter().enumerate() {
            let row = &mut rows[r];
            let (p, window) = (row.seq.prompt_len, call.window);
            let step = row.history.len() as u32 - 1;
            if let Some(k) = self.opts.save_step_distributions {
                // Every masked position of the window, whatever the step asked for.
                let masked = row.seq.masked_in(p..window);
                let all = StepView::new(masked.clone(), select(rows_at(&masked, g))?);
                let (top_ids, top_probs) = all.top_k(k)?;
                for (slot, &q) in masked.iter().enumerate() {
                    row.distributions.push(StepTopK {
                        step,
                        gen_index: (q - p) as u32,
                        top_ids: top_ids[slot * k..(slot + 1) * k].to_vec(),
                        top_probs: top_probs[slot * k..(slot + 1) * k].to_vec(),
                    });
                }
            }
            let n = call.positions.len();
            let mut view =
                StepView::new(call.positions, picked.f_narrow(0, offset as i64, n as i64)?);
            offset += n;
            let picks = row.decoder.step(&row.seq, &mut view)?;
            let mut committed = Vec::with_capacity(picks.len());
            for pick in &picks {
                if view.slot(pick.position).is_none() || !row.seq.is_masked(pick.position) {
                    return Err(ProbeError::Input(format!(
                        "schedule `{}` picked position {}, which the step did not ask for or is not masked",
                        self.schedule.describe(),
                        pick.position
                    )));
                }
                row.seq.ids[pick.position] = pick.token;
                if pick.token != row.seq.mask_id {
                    committed.push(pick);
                }
            }
            let masked_after = row.seq.masked_in(p..row.seq.ids.len()).len() as u32;
            committed.sort_by_key(|c| c.position);
            for pick in committed {
                row.commits.push(Commit {
                    step,
                    gen_index: (pick.position - p) as u32,
                    token_id: pick.token,
                    prob: pick.prob,
                    confidence: pick.score as f32,
                    masked_after,
                });
            }
            row.history.push(row.seq.ids[p..].to_vec());
        }
        Ok(())
    }
}

fn check_call(seq: &Sequence, call: &Call) -> Result<(), ProbeError> {
    let bad = |m: String| Err(ProbeError::Input(format!("schedule step: {m}")));
    if call.window <= seq.prompt_len || call.window > seq.ids.len() {
        return bad(format!(
            "window {} is outside the generated part ({}..={})",
            call.window,
            seq.prompt_len + 1,
            seq.ids.len()
        ));
    }
    for w in call.positions.windows(2) {
        if w[0] >= w[1] {
            return bad("positions must be ascending and distinct".into());
        }
    }
    if let Some(&q) = call
        .positions
        .iter()
        .find(|&&q| q < seq.prompt_len || q >= call.window || !seq.is_masked(q))
    {
        return bad(format!(
            "position {q} is not a masked position of the window"
        ));
    }
    Ok(())
}
