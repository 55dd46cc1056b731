//! Which masked positions a step may commit.

use std::ops::Range;

use serde::Serialize;

use super::Sequence;

/// The eligible positions of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "eligible", rename_all = "snake_case")]
pub enum Eligible {
    /// The masks of the current block.
    Block,
    /// Every mask of the sequence, whatever the block.
    All,
    /// The masks of the current block in one of `groups` interleaved groups (positions
    /// `j` of the block with `j % groups == step % groups`), as dilated unmasking schedules
    /// spread one step's commits apart; the whole block's masks when that group has none.
    Dilated { groups: usize },
}

impl Eligible {
    /// Eligible positions, ascending, at call `step` of `block`.
    pub fn positions(&self, seq: &Sequence, block: &Range<usize>, step: usize) -> Vec<usize> {
        match self {
            Eligible::Block => seq.masked_in(block.clone()),
            Eligible::All => seq.masked_in(seq.prompt_len..seq.ids.len()),
            Eligible::Dilated { groups } => {
                let in_block = seq.masked_in(block.clone());
                let group: Vec<usize> = in_block
                    .iter()
                    .copied()
                    .filter(|&p| (p - block.start) % groups == step % groups)
                    .collect();
                if group.is_empty() {
                    in_block
                } else {
                    group
                }
            }
        }
    }
}
