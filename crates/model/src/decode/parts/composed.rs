//! A schedule made of parts: blocks, eligible positions, token choice, score and count.

use std::ops::Range;

use serde::Serialize;

use super::blocks::{BlockLoop, Blocks, BlocksLayout};
use super::count::{Count, CountInputs};
use super::dream_token::{self, Reads};
use super::eligible::Eligible;
use super::kl_history::KlHistory;
use super::score::Score;
use super::token::{TokenChoice, TokenRule};
use super::view::StepView;
use super::{Call, Pick, RowDecoder, Schedule, Sequence};
use tch::{Device, Kind, Tensor};

use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// A schedule composed of parts; every preset is one.
///
/// Each step: the block decides whether there is another call and what the model sees;
/// the token part chooses a token for every eligible position; the score ranks them; the
/// count decides how many commit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Composed {
    /// The preset's name, or `compose`.
    #[serde(rename = "preset")]
    pub name: &'static str,
    /// The schedule string it was read from, with the preset's defaults written out.
    pub spec: String,
    pub gen_length: usize,
    pub blocks: Blocks,
    #[serde(flatten)]
    pub eligible: Eligible,
    pub token: TokenChoice,
    #[serde(flatten)]
    pub score: Score,
    #[serde(flatten)]
    pub count: Count,
    /// Classifier-free guidance scale (none: unguided).
    pub cfg_scale: Option<f64>,
}

impl Composed {
    fn kl_history_length(&self) -> Option<usize> {
        self.count
            .needs_kl_history()
            .or(self.score.needs_kl_history())
    }
}

impl Schedule for Composed {
    fn describe(&self) -> String {
        self.spec.clone()
    }

    fn canvas_len(&self, prompt_len: usize) -> usize {
        self.blocks.canvas_len(prompt_len, self.gen_length)
    }

    fn guidance(&self) -> Option<f64> {
        self.cfg_scale
    }

    fn steps(&self) -> Option<usize> {
        let per_block = self.blocks.steps_per_block?;
        match (self.blocks.run, self.blocks.layout) {
            (BlockLoop::Fixed, BlocksLayout::Whole) => Some(per_block),
            (BlockLoop::Fixed, BlocksLayout::AfterPrompt { length }) => {
                Some(self.gen_length.div_ceil(length) * per_block)
            }
            _ => None,
        }
    }

    fn check(&self, model: &dyn MaskedDenoiser) -> Result<(), ProbeError> {
        if let Score::Pc { background, .. } = &self.score {
            background.prepare(model.vocab_size() as usize)?;
        }
        Ok(())
    }

    fn start(&self, prompt_len: usize) -> Result<Box<dyn RowDecoder + '_>, ProbeError> {
        let canvas_len = self.canvas_len(prompt_len);
        Ok(Box::new(ComposedRow {
            schedule: self,
            blocks: self.blocks.ranges(prompt_len, canvas_len),
            canvas_len,
            block: 0,
            calls: 0,
            plan: None,
            eligible: Vec::new(),
            kl: self.kl_history_length().map(KlHistory::new),
            timesteps: None,
        }))
    }
}

/// One sequence under a [`Composed`] schedule.
struct ComposedRow<'a> {
    schedule: &'a Composed,
    blocks: Vec<Range<usize>>,
    canvas_len: usize,
    /// Index of the current block.
    block: usize,
    /// Model calls so far in the current block.
    calls: usize,
    /// The current block's tokens per call, fixed when the block starts.
    plan: Option<Vec<usize>>,
    /// The eligible positions of the call in flight.
    eligible: Vec<usize>,
    kl: Option<KlHistory>,
    /// Dream's timesteps, computed at the first call on the model's device.
    timesteps: Option<Vec<f32>>,
}

impl RowDecoder for ComposedRow<'_> {
    fn window(&mut self, seq: &Sequence) -> Option<Call> {
        let c = self.schedule;
        loop {
            let range = self.blocks.get(self.block)?.clone();
            let masks = seq.masked_in(range.clone()).len();
            if self.plan.is_none() {
                self.plan = Some(match c.blocks.steps_per_block {
                    Some(steps) => c
                        .count
                        .curve()
                        .schedule(c.blocks.scheduled_tokens(masks), steps),
                    None => Vec::new(),
                });
            }
            if !c.blocks.another_call(self.calls, masks) {
                self.block += 1;
                self.calls = 0;
                self.plan = None;
                continue;
            }
            let window = c.blocks.window(&range, self.canvas_len);
            self.eligible = c.eligible.positions(seq, &range, self.calls);
            // The KL history follows the current block's masks and the next block's (whose
            // first entries need this call's distributions, see `KlHistory::update`), or every
            // mask when any may become eligible; other rules need only the eligible ones.
            let needed = match (&self.kl, c.eligible) {
                (None, _) => self.eligible.clone(),
                (Some(_), Eligible::All) => seq.masked_in(seq.prompt_len..window),
                (Some(_), _) => {
                    let next_end = self
                        .blocks
                        .get(self.block + 1)
                        .map_or(range.end, |next| next.end)
                        .min(window);
                    seq.masked_in(range.start..next_end)
                }
            };
            return Some(Call {
                window,
                positions: needed,
            });
        }
    }

    fn step(&mut self, seq: &Sequence, view: &mut StepView) -> Result<Vec<Pick>, ProbeError> {
        let c = self.schedule;
        let block_start = self.blocks[self.block].start;
        let mut forbidden = Vec::new();
        if c.token.forbid_mask {
            forbidden.push(seq.mask_id);
        }
        if c.token.forbid_eot {
            forbidden.extend_from_slice(&seq.eot_ids);
        }
        view.forbid(&forbidden)?;
        // Without scores to compute, Dream's rule chooses tokens after the count, for the
        // committed positions only (its `origin` draws the positions first).
        let after_count = c.token.rule == TokenRule::Dream && c.score == Score::Unranked;
        let sampled = match c.token.rule {
            TokenRule::GumbelMax => c.token.choose(view)?,
            TokenRule::Dream if after_count => None,
            TokenRule::Dream => {
                let reads = Reads {
                    margin: c.score == Score::Margin,
                    sum_p_log_p: c.score == Score::SumPLogP,
                };
                Some(dream_token::choose_all(&c.token, view, reads)?)
            }
        };
        if let Some(kl) = &mut self.kl {
            // The KL is due for the positions that may be read before the block changes: the
            // current block's, or every one when any may become eligible.
            let block = &self.blocks[self.block];
            let due: Vec<usize> = (0..view.positions().len())
                .filter(|&s| c.eligible == Eligible::All || block.contains(&view.positions()[s]))
                .collect();
            kl.update(view, &due)?;
        }
        let eligible = std::mem::take(&mut self.eligible);
        let scores = c.score.compute(
            view,
            &eligible,
            (block_start, seq.ids.len()),
            self.kl.as_mut(),
        )?;
        let slots: Vec<usize> = eligible
            .iter()
            .map(|&p| view.slot(p).expect("eligible positions are in the view"))
            .collect();
        let plan = self.plan.as_deref().unwrap_or_default();
        let mut inputs = CountInputs {
            scheduled: plan.get(self.calls).copied().unwrap_or(1),
            ..Default::default()
        };
        if matches!(c.count, Count::EntropyBudget { .. }) {
            let h = view.entropy()?;
            inputs.entropy = Some(slots.iter().map(|&s| h[s]).collect());
        }
        if let Count::ReadyElseTopK {
            kl_threshold,
            conf_threshold,
            ..
        } = c.count
        {
            // Only a position whose score passes the threshold can be ready: only its history
            // is read (and its KL values computed).
            let kl = self.kl.as_mut().expect("KLASS keeps the KL history");
            let t = scores.threshold(conf_threshold);
            let confident: Vec<usize> = (0..eligible.len())
                .filter(|&i| scores.values[i] > t)
                .collect();
            let at: Vec<usize> = confident.iter().map(|&i| eligible[i]).collect();
            let mut stable = vec![false; eligible.len()];
            for (&i, s) in confident
                .iter()
                .zip(kl.stable(&at, kl_threshold, self.calls)?)
            {
                stable[i] = s;
            }
            inputs.stable = Some(stable);
        }
        if let Some((eps, steps)) = c.count.timesteps() {
            let device = view.logits().device();
            let t = match &self.timesteps {
                Some(t) => t,
                // Upstream computes them on the model's device; so do we, so that
                // `1 - s / t` sees the same float32 values there.
                None => self.timesteps.insert(Vec::<f32>::try_from(
                    &Tensor::f_linspace(1.0, eps, steps as i64 + 1, (Kind::Float, device))?
                        .f_to_device(Device::Cpu)?,
                )?),
            };
            let call = self.calls.min(steps - 1);
            inputs.timestep = Some((t[call], t[call + 1], call + 1 == steps));
            inputs.device = Some(device);
        }
        inputs.positions = eligible.clone();
        inputs.seq_len = seq.ids.len();
        let chosen = c.count.select(&scores, &inputs)?;
        self.calls += 1;
        let chosen_slots: Vec<usize> = chosen.iter().map(|&i| slots[i]).collect();
        let (tokens, probs) = if after_count {
            dream_token::choose_some(&c.token, view, &chosen_slots)?
        } else {
            let tokens = view.tokens_of(&chosen_slots)?;
            let probs = match sampled {
                Some(p) => chosen_slots.iter().map(|&s| p[s]).collect(),
                None => view.prob32_of(&chosen_slots)?,
            };
            (tokens, probs)
        };
        Ok(chosen
            .into_iter()
            .zip(tokens.into_iter().zip(probs))
            .map(|(i, (token, prob))| Pick {
                position: eligible[i],
                token,
                prob,
                score: match c.score {
                    Score::Unranked => prob as f64,
                    _ => scores.values[i],
                },
            })
            .collect())
    }
}
