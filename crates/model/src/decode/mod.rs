//! Decoding schedules run on any [`MaskedDenoiser`], with their full trajectories.
//!
//! [`decode`] appends `gen_length` masks to each prompt and runs a [`ScheduleSpec`] until every
//! position is filled (or its steps are spent), recording after every step the generated ids,
//! which positions were committed, with what probability and confidence, and optionally the
//! top-K distributions of the positions that were still masked. The `llada` and `dream`
//! schedules reproduce the official samplers token for token, and the presets the published
//! 2025 samplers (see `fixtures/parity/README.md`). Every schedule is a composition of parts
//! run by `parts/runner.rs`.
//!
//! Randomness comes from libtorch's global generator, seeded with `seed + batch index` before
//! each batch: with one prompt per batch, `seed` plays the role of upstream's
//! `torch.manual_seed(seed)` right before `generate()` / `diffusion_generate()` for the position
//! draws; token sampling at temperature > 0 keeps upstream's distributions but not its stream
//! (see docs/internals.md).

mod options;
pub mod parts;
mod spec;
mod sweep;

use std::sync::Mutex;

use cp_records::{Generation, StepDistribution, StepRecord};

pub use self::parts::{Call, Composed, Pick, RowDecoder, Schedule, Sequence, StepView};
pub use self::spec::{
    DreamAlg, DreamParams, FixedOrder, FixedParams, LladaParams, Remasking, ScheduleSpec,
    ThresholdParams, TokensPerStep,
};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// How to run a schedule (everything that is not part of the schedule itself).
pub struct DecodeOptions<'a> {
    /// Seed of every random choice; batch `i` runs after `torch.manual_seed(seed + i)`.
    pub seed: u64,
    /// Prompts per model call (a CFG call holds twice as many rows).
    pub batch_size: usize,
    /// End-of-text / end-of-turn ids, used by schedules with `forbid_eot = true`.
    pub eot_ids: Vec<i64>,
    /// Keep the top-K distribution of every still-masked position at every step.
    pub save_step_distributions: Option<usize>,
    /// Called after every step of every batch.
    pub progress: Option<&'a dyn Fn(&DecodeProgress)>,
    /// Decode only these of the run's batches ([`batch_count`] in all), each seeded as in the
    /// whole run, so that the parts' trajectories together are the whole run's (a shard, or
    /// one batch at a time for a run that can be resumed).
    pub batches: Option<std::ops::Range<usize>>,
}

impl Default for DecodeOptions<'_> {
    fn default() -> Self {
        DecodeOptions {
            seed: 0,
            batch_size: 1,
            eot_ids: Vec::new(),
            save_step_distributions: None,
            progress: None,
            batches: None,
        }
    }
}

/// Where a [`decode`] call is, for progress bars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeProgress {
    /// Prompts finished before the current batch.
    pub prompts_done: usize,
    /// Prompts in the current batch.
    pub prompts_in_batch: usize,
    pub prompts_total: usize,
    /// Steps done in the current batch.
    pub step: usize,
    /// Steps the batch will take, when the schedule fixes it.
    pub steps: Option<usize>,
}

/// A position that went from the mask id to a token.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// 0-based step.
    pub step: u32,
    /// 0-based index among the generated positions (position in the sequence minus the prompt length).
    pub gen_index: u32,
    pub token_id: i64,
    /// Probability of the token under the distribution it was drawn from (after temperature and filtering).
    pub prob: f32,
    /// The schedule's score that ranked the position.
    pub confidence: f32,
    /// Generated positions still masked after this step.
    pub masked_after: u32,
}

/// The top-K distribution of one still-masked position at one step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTopK {
    pub step: u32,
    pub gen_index: u32,
    pub top_ids: Vec<i64>,
    pub top_probs: Vec<f32>,
}

/// Everything one prompt went through.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub prompt_ids: Vec<i64>,
    /// `steps + 1` rows of generated ids: row 0 is all masks, row `k` the state after step `k`.
    pub history: Vec<Vec<i64>>,
    /// Committed positions in step order, then position order.
    pub commits: Vec<Commit>,
    /// Filled with `save_step_distributions`.
    pub distributions: Vec<StepTopK>,
}

impl Trajectory {
    /// Number of steps (model calls) this prompt took.
    pub fn steps(&self) -> usize {
        self.history.len() - 1
    }

    /// The generated ids after the last step.
    pub fn gen_ids(&self) -> &[i64] {
        self.history.last().map(Vec::as_slice).unwrap_or_default()
    }

    /// The whole sequence (prompt, then generated positions) after `step` steps.
    pub fn sequence_at(&self, step: usize) -> Vec<i64> {
        let mut seq = self.prompt_ids.clone();
        seq.extend_from_slice(&self.history[step]);
        seq
    }

    /// For each generated position, the step that committed it, or -1.
    pub fn commit_steps(&self) -> Vec<i32> {
        let mut steps = vec![-1; self.history[0].len()];
        for c in &self.commits {
            steps[c.gen_index as usize] = c.step as i32;
        }
        steps
    }
}

/// The result of [`decode`]: one trajectory per prompt, in prompt order.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOutput {
    pub trajectories: Vec<Trajectory>,
    /// The prompt index of each trajectory: `0..n` for a whole run, the shard's prompts for
    /// a shard.
    pub prompt_indices: Vec<usize>,
}

impl DecodeOutput {
    /// One row per committed position; `token` turns an id into its text.
    pub fn step_records(&self, token: &dyn Fn(u32) -> String) -> Vec<StepRecord> {
        let mut out = Vec::new();
        for (&i, t) in self.prompt_indices.iter().zip(&self.trajectories) {
            for c in &t.commits {
                out.push(StepRecord {
                    prompt_index: i as u32,
                    step: c.step,
                    position: t.prompt_ids.len() as u32 + c.gen_index,
                    distance: c.gen_index + 1,
                    token_id: c.token_id as u32,
                    token: token(c.token_id as u32),
                    prob: Some(c.prob),
                    confidence: Some(c.confidence),
                    masked_after: c.masked_after,
                });
            }
        }
        out
    }

    /// One row per prompt; `prompt_ids[i]` names prompt `i`, `text` decodes generated ids.
    pub fn generations(
        &self,
        prompt_ids: &[String],
        text: &dyn Fn(&[u32]) -> String,
    ) -> Vec<Generation> {
        self.prompt_indices
            .iter()
            .zip(&self.trajectories)
            .map(|(&i, t)| {
                let gen_ids: Vec<u32> = t.gen_ids().iter().map(|&x| x as u32).collect();
                Generation {
                    prompt_index: i as u32,
                    prompt_id: prompt_ids.get(i).cloned().unwrap_or_else(|| i.to_string()),
                    prompt_ids: t.prompt_ids.iter().map(|&x| x as u32).collect(),
                    text: text(&gen_ids),
                    gen_ids,
                    commit_step: t.commit_steps(),
                    steps: t.steps() as u32,
                    remask_count: None,
                }
            })
            .collect()
    }

    /// One row per (prompt, step, still-masked position), when distributions were saved.
    pub fn step_distributions(&self) -> Vec<StepDistribution> {
        let mut out = Vec::new();
        for (&i, t) in self.prompt_indices.iter().zip(&self.trajectories) {
            for d in &t.distributions {
                out.push(StepDistribution {
                    prompt_index: i as u32,
                    step: d.step,
                    position: t.prompt_ids.len() as u32 + d.gen_index,
                    top_ids: d.top_ids.iter().map(|&x| x as u32).collect(),
                    top_probs: d.top_probs.clone(),
                });
            }
        }
        out
    }
}

/// libtorch has one global generator per device; holding this while decoding keeps two
/// decodes in one process from interleaving their draws.
static TORCH_RNG: Mutex<()> = Mutex::new(());

/// Runs `schedule` on every prompt and returns the trajectories in prompt order.
///
/// Prompts are batched `opts.batch_size` at a time, left-padded when the model supports it,
/// otherwise grouped by length. Fails when a prompt is empty or contains the mask id, when
/// prompt plus generation exceeds the model's `max_len`, or when an option does not fit the model.
/// A block-causal model (LLaDA2.0) decodes block-aligned schedules only in its own blocks: a
/// schedule that commits in blocks of another size would condition every block on attention
/// the model's sampler never gives it.
fn check_attention_blocks(
    model: &dyn MaskedDenoiser,
    composed: &parts::Composed,
) -> Result<(), ProbeError> {
    if let (Some(model_block), parts::BlocksLayout::Aligned { size }) =
        (model.attention_blocks(), &composed.blocks.layout)
    {
        if *size as i64 != model_block {
            return Err(ProbeError::Input(format!(
                "schedule `{}` decodes in blocks of {size}, but the model attends in blocks of \
                 {model_block} (--block-length): give both the same length",
                composed.name
            )));
        }
    }
    Ok(())
}

pub fn decode(
    model: &dyn MaskedDenoiser,
    prompts: &[Vec<i64>],
    schedule: &ScheduleSpec,
    opts: &DecodeOptions,
) -> Result<DecodeOutput, ProbeError> {
    if schedule.forbids_eot() {
        if opts.eot_ids.is_empty() {
            return Err(ProbeError::Input(format!(
                "schedule `{}` sets forbid_eot but no end-of-text ids were given",
                schedule.name()
            )));
        }
        let v = model.vocab_size();
        if let Some(bad) = opts.eot_ids.iter().find(|&&i| i < 0 || i >= v) {
            return Err(ProbeError::Input(format!(
                "token id {bad} is outside the model's vocabulary (size {v})"
            )));
        }
    }
    // Every schedule runs as parts.
    let spec = schedule.to_string();
    let composed = match schedule {
        ScheduleSpec::Parts(composed) => {
            check_attention_blocks(model, composed)?;
            return decode_with(model, prompts, composed, opts);
        }
        ScheduleSpec::Llada(p) => parts::llada(p, spec),
        ScheduleSpec::Threshold(p) => parts::threshold(p, spec),
        ScheduleSpec::Fixed(p) => parts::fixed(p, spec),
        ScheduleSpec::Dream(p) => parts::dream(p, spec),
    };
    decode_with(model, prompts, &composed, opts)
}

/// Runs any [`Schedule`] (a composition of parts, or one of your own) on every prompt and
/// returns the trajectories in prompt order.
///
/// Prompts are batched `opts.batch_size` at a time, left-padded when the model supports it
/// and a call sees whole sequences, otherwise grouped by length. Fails like [`decode`], and
/// when the schedule's [`Schedule::check`] rejects the model.
pub fn decode_with(
    model: &dyn MaskedDenoiser,
    prompts: &[Vec<i64>],
    schedule: &dyn Schedule,
    opts: &DecodeOptions,
) -> Result<DecodeOutput, ProbeError> {
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    check_inputs(
        model,
        prompts,
        schedule.canvas_len(longest).saturating_sub(longest),
        opts,
    )?;
    schedule.check(model)?;
    in_batches(prompts, opts, model.supports_padding(), |_, batch, done| {
        parts::runner::Batch {
            model,
            schedule,
            opts,
            prompts: batch.iter().map(|&i| prompts[i].as_slice()).collect(),
            prompts_done: done,
            prompts_total: prompts.len(),
        }
        .run()
    })
}

/// How many batches [`decode`] splits `prompts` into for `model` at `batch_size` prompts per
/// batch (rows are left-padded when the model supports it, otherwise grouped by length).
pub fn batch_count(model: &dyn MaskedDenoiser, prompts: &[Vec<i64>], batch_size: usize) -> usize {
    batches(prompts, batch_size.max(1), model.supports_padding()).len()
}

/// Splits the prompts into batches, seeds libtorch's generator before each, and puts the
/// trajectories back in prompt order. `run(batch index, prompt indices, prompts done)`.
fn in_batches(
    prompts: &[Vec<i64>],
    opts: &DecodeOptions,
    padding: bool,
    mut run: impl FnMut(usize, &[usize], usize) -> Result<Vec<Trajectory>, ProbeError>,
) -> Result<DecodeOutput, ProbeError> {
    let _no_grad = tch::no_grad_guard();
    let _rng = TORCH_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut trajectories: Vec<Option<Trajectory>> = vec![None; prompts.len()];
    let mut done = 0;
    let all = batches(prompts, opts.batch_size, padding);
    let ours = opts.batches.clone().unwrap_or(0..all.len());
    for (bi, batch) in all.iter().enumerate() {
        if !ours.contains(&bi) {
            continue;
        }
        tch::manual_seed(opts.seed.wrapping_add(bi as u64) as i64);
        for (i, t) in batch.iter().zip(run(bi, batch, done)?) {
            trajectories[*i] = Some(t);
        }
        done += batch.len();
    }
    let (prompt_indices, trajectories) = trajectories
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, t?)))
        .unzip();
    Ok(DecodeOutput {
        trajectories,
        prompt_indices,
    })
}

fn check_inputs(
    model: &dyn MaskedDenoiser,
    prompts: &[Vec<i64>],
    gen: usize,
    opts: &DecodeOptions,
) -> Result<(), ProbeError> {
    if opts.batch_size == 0 {
        return Err(ProbeError::Input("batch size must be at least 1".into()));
    }
    for (i, p) in prompts.iter().enumerate() {
        if p.is_empty() {
            return Err(ProbeError::Input(format!("prompt {i} is empty")));
        }
        if let Some(j) = p.iter().position(|&t| t == model.mask_id()) {
            return Err(ProbeError::Input(format!(
                "prompt {i} holds the mask id {} at position {j}; decoding fills only the appended positions",
                model.mask_id()
            )));
        }
        if let Some(max) = model.max_len() {
            if p.len() + gen > max {
                return Err(ProbeError::Input(format!(
                    "prompt {i}: {} prompt tokens + {gen} generated positions exceed the model's maximum length {max}",
                    p.len()
                )));
            }
        }
    }
    if let Some(k) = opts.save_step_distributions {
        if k == 0 || k as i64 > model.vocab_size() {
            return Err(ProbeError::Input(format!(
                "save_step_distributions must be in 1..={}, found {k}",
                model.vocab_size()
            )));
        }
    }
    Ok(())
}

/// Prompt indices per model call: consecutive prompts when rows may be padded, otherwise
/// prompts of equal length (in order of first appearance).
fn batches(prompts: &[Vec<i64>], batch_size: usize, padding: bool) -> Vec<Vec<usize>> {
    let groups: Vec<Vec<usize>> = if padding {
        vec![(0..prompts.len()).collect()]
    } else {
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            match groups.iter_mut().find(|(len, _)| *len == p.len()) {
                Some((_, g)) => g.push(i),
                None => groups.push((p.len(), vec![i])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    };
    groups
        .iter()
        .flat_map(|g| g.chunks(batch_size).map(<[usize]>::to_vec))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_group_equal_lengths_without_padding() {
        let prompts = vec![vec![1; 3], vec![1; 2], vec![1; 3], vec![1; 3], vec![1; 2]];
        assert_eq!(
            batches(&prompts, 2, true),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(
            batches(&prompts, 2, false),
            vec![vec![0, 2], vec![3], vec![1, 4]]
        );
    }
}
