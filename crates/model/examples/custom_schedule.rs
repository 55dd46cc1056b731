//! A decoding schedule of your own, written against the `Schedule` trait.
//!
//! "Left to right, `per_step` positions per model call": the kind of rule the parts of
//! `compose:` do not cover (it ignores the model's confidence entirely). A schedule says,
//! before each model call, which window the model sees and which positions' logits the step
//! needs; after it, which positions take which token. `decode_with` does the rest (batching,
//! model calls, trajectories) and returns what `collapse-probe decode` writes.
//!
//!   cargo run -p cp-model --example custom_schedule [-- MODEL_DIR]
//!
//! (`just test` runs it from the build `cargo test --workspace` makes.)
//!
//! Without an argument it runs on the tiny LLaDA checkpoint of `fixtures/parity/llada-tiny`.

use std::error::Error;
use std::path::PathBuf;

use cp_model::{
    decode_with, load_model, Call, DecodeOptions, LoadOptions, Pick, ProbeError, RowDecoder,
    Schedule, Sequence, StepView,
};

/// Commits the `per_step` leftmost masks at every call, each to its most probable token.
struct LeftToRight {
    gen_length: usize,
    per_step: usize,
}

impl Schedule for LeftToRight {
    fn describe(&self) -> String {
        format!(
            "left-to-right:gen_length={},per_step={}",
            self.gen_length, self.per_step
        )
    }

    fn canvas_len(&self, prompt_len: usize) -> usize {
        prompt_len + self.gen_length
    }

    fn steps(&self) -> Option<usize> {
        Some(self.gen_length.div_ceil(self.per_step))
    }

    fn start(&self, _prompt_len: usize) -> Result<Box<dyn RowDecoder + '_>, ProbeError> {
        Ok(Box::new(LeftToRightRow {
            per_step: self.per_step,
        }))
    }
}

/// Nothing to carry between steps: the sequence itself says where the masks are.
struct LeftToRightRow {
    per_step: usize,
}

impl RowDecoder for LeftToRightRow {
    fn window(&mut self, seq: &Sequence) -> Option<Call> {
        let masked = seq.masked_in(seq.prompt_len..seq.ids.len());
        if masked.is_empty() {
            return None;
        }
        Some(Call {
            window: seq.ids.len(),
            positions: masked.into_iter().take(self.per_step).collect(),
        })
    }

    fn step(&mut self, _seq: &Sequence, view: &mut StepView) -> Result<Vec<Pick>, ProbeError> {
        let tokens = view.tokens()?.to_vec();
        let probs = view.prob32()?.to_vec();
        Ok(view
            .positions()
            .iter()
            .enumerate()
            .map(|(slot, &position)| Pick {
                position,
                token: tokens[slot],
                prob: probs[slot],
                score: probs[slot] as f64,
            })
            .collect())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/llada-tiny")
        });
    let loaded = load_model(&dir, &LoadOptions::default())?;
    let model = &*loaded.denoiser;
    let schedule = LeftToRight {
        gen_length: 12,
        per_step: 3,
    };
    let prompts = vec![vec![5, 17, 42, 8], vec![100, 101, 102, 103]];
    let out = decode_with(model, &prompts, &schedule, &DecodeOptions::default())?;

    println!("{} on {}", schedule.describe(), dir.display());
    for (i, t) in out.trajectories.iter().enumerate() {
        println!("prompt {i}: {:?}", t.prompt_ids);
        for (step, row) in t.history.iter().enumerate() {
            let shown: Vec<String> = row
                .iter()
                .map(|&id| {
                    if id == model.mask_id() {
                        "_".into()
                    } else {
                        id.to_string()
                    }
                })
                .collect();
            println!("  after step {step}: {}", shown.join(" "));
        }
        // The rule, checked: four calls, and position j committed at step j / 3.
        assert_eq!(t.steps(), 4);
        let expected: Vec<i32> = (0..12).map(|j| j / 3).collect();
        assert_eq!(t.commit_steps(), expected);
    }
    Ok(())
}
