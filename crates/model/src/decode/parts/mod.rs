//! Schedules as parts, and the [`Schedule`] trait that is the extension point.
//!
//! A decoding schedule answers, before every model call, *which window of the sequence the
//! model sees* (or that the sequence is done), and after it, *which masked positions take
//! which token*. [`Schedule`] and [`RowDecoder`] are exactly those two questions; the runner
//! (`runner.rs`) does the rest: batching, model calls, the `[n, V]` logits of the masked
//! positions ([`StepView`]), and the trajectories `decode` returns.
//!
//! [`Composed`] answers them from parts, one concept per file:
//!
//! | part | file | choices |
//! | --- | --- | --- |
//! | blocks: where the current block is, how many calls it gets, what the model sees | `blocks.rs` | semi-autoregressive blocks after the prompt, blocks aligned to position 0 (LLaDA2.0), one block |
//! | eligible: which masked positions may be committed | `eligible.rs` | the current block, all, a dilated group |
//! | token: which token a position takes | `token.rs` | argmax, Gumbel-max at a temperature, after top-k / top-p |
//! | score: what orders the eligible positions | `score.rs` | confidence (float32 or float64), margin, negative entropy, random, PC-Sampler's calibration, KL stability |
//! | count: how many positions commit | `count.rs` | scheduled top-k, cosine / linear k(t), threshold, Fast-dLLM factor, entropy budget, threshold-else-top-k, KLASS's ready-else-top-k |
//! | state carried across steps | `kl_history.rs` | KLASS's KL history |
//!
//! The published samplers are presets of these parts (`presets.rs`, with PC-Sampler's
//! background table in `background.rs`); any other combination
//! is written with the `compose:` schedule string (`grammar.rs`). A new part goes into the
//! file of its kind as one more enum variant; a rule that does not fit the parts implements
//! [`Schedule`] directly (see `crates/model/examples/custom_schedule.rs`).

mod background;
mod blocks;
mod composed;
mod count;
mod dream_filters;
mod dream_token;
mod eligible;
mod even;
mod grammar;
mod kl_history;
mod presets;
pub(crate) mod runner;
mod score;
mod token;
mod unique_top_k;
mod view;

pub use self::background::Background;
pub use self::blocks::{BlockLoop, Blocks, BlocksLayout};
pub use self::composed::Composed;
pub use self::count::{Count, CountInputs, Curve};
pub use self::eligible::Eligible;
pub use self::even::even_schedule;
pub(crate) use self::grammar::parse_composition;
pub use self::grammar::COMPOSE;
pub use self::presets::PRESETS;
pub(crate) use self::presets::{build_preset, dream, fixed, llada, threshold};
pub use self::score::{Score, Scores};
pub use self::token::{TokenChoice, TokenRule};
pub use self::view::StepView;

use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// A decoding schedule: the extension point for samplers the crate does not ship.
///
/// Implementations are descriptions (`Send + Sync`, no per-sequence state); everything a
/// sequence carries from step to step lives in the [`RowDecoder`] that [`Schedule::start`]
/// returns. Run one with [`crate::decode_with`].
pub trait Schedule: Send + Sync {
    /// A name for manifests, progress and messages, e.g. the schedule string.
    fn describe(&self) -> String;

    /// Length of the whole sequence (prompt, then positions to fill) for a prompt of
    /// `prompt_len` ids. Usually `prompt_len + gen_length`; block-aligned samplers round up.
    fn canvas_len(&self, prompt_len: usize) -> usize;

    /// The classifier-free guidance scale, when the schedule guides its model calls as LLaDA's
    /// `generate()` does: logits `un + (cond - un) * (scale + 1)`, where the unconditional
    /// sequence has every prompt position masked.
    fn guidance(&self) -> Option<f64> {
        None
    }

    /// The number of model calls per sequence, when the schedule fixes it in advance.
    fn steps(&self) -> Option<usize> {
        None
    }

    /// Checks the schedule against the model before anything is decoded (e.g. that a
    /// table indexed by token id covers the vocabulary); errors name the option at fault.
    fn check(&self, _model: &dyn MaskedDenoiser) -> Result<(), ProbeError> {
        Ok(())
    }

    /// A decoder for one sequence whose prompt is `prompt_len` ids long.
    fn start(&self, prompt_len: usize) -> Result<Box<dyn RowDecoder + '_>, ProbeError>;
}

/// One sequence being decoded.
pub trait RowDecoder {
    /// Before each model call: what the call is for, or `None` when the sequence is finished.
    fn window(&mut self, seq: &Sequence) -> Option<Call>;

    /// After the call on that window: the positions to commit, with their tokens.
    ///
    /// `view` holds the logits of the positions the call asked for. A pick must be one of
    /// them; positions not picked stay masked.
    fn step(&mut self, seq: &Sequence, view: &mut StepView) -> Result<Vec<Pick>, ProbeError>;
}

/// What one model call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// How many leading positions of the sequence the model sees (usually all of them).
    pub window: usize,
    /// The masked positions whose logits the step needs, ascending, all below `window`.
    pub positions: Vec<usize>,
}

/// The sequence as a [`RowDecoder`] sees it.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Prompt, then generated positions (the mask id where still masked).
    pub ids: Vec<i64>,
    pub prompt_len: usize,
    pub mask_id: i64,
    /// The caller's end-of-text / end-of-turn ids (`DecodeOptions::eot_ids`).
    pub eot_ids: Vec<i64>,
}

impl Sequence {
    /// Whether `position` still holds the mask id.
    pub fn is_masked(&self, position: usize) -> bool {
        self.ids[position] == self.mask_id
    }

    /// Masked positions in `range`, ascending.
    pub fn masked_in(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        range.filter(|&i| self.is_masked(i)).collect()
    }
}

/// One position committed in one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// Absolute position in the sequence.
    pub position: usize,
    pub token: i64,
    /// Probability of `token` under the distribution it was drawn from.
    pub prob: f32,
    /// The schedule's score that ranked the position.
    pub score: f64,
}
