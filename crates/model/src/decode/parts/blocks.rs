//! Blocks: where the current block is, how many model calls it gets, what the model sees.

use std::ops::Range;

use serde::Serialize;

/// Where the blocks lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum BlocksLayout {
    /// One block: every generated position.
    Whole,
    /// Semi-autoregressive blocks of `length` positions from the end of the prompt
    /// (LLaDA, Fast-dLLM, PC-Sampler, KLASS); `length` divides `gen_length`. A block's
    /// schedule spreads the masks it holds when it starts.
    AfterPrompt { length: usize },
    /// Blocks of `size` positions aligned to position 0 (LLaDA2.0, SDAR): the sequence is
    /// rounded up to whole blocks, decoding starts in the block that holds the end of the
    /// prompt, the model sees the sequence up to the end of the current block, and a block's
    /// schedule spreads `size` tokens whatever it holds.
    Aligned { size: usize },
}

/// How many model calls a block gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockLoop {
    /// Exactly `steps_per_block` calls, even when the block is already filled (LLaDA's `generate`).
    Fixed,
    /// Up to `steps_per_block` calls; the block ends early when filled, and masks left after
    /// its last call stay (KLASS, LLaDA2.0).
    AtMost,
    /// As many calls as it takes to fill the block (Fast-dLLM, the EB-sampler).
    UntilFilled,
}

/// The block part of a composed schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Blocks {
    #[serde(flatten)]
    pub layout: BlocksLayout,
    /// Model calls per block for the fixed and at-most loops, and the number of steps the
    /// block schedule spreads its tokens over.
    pub steps_per_block: Option<usize>,
    #[serde(rename = "loop")]
    pub run: BlockLoop,
}

impl Blocks {
    /// LLaDA's semi-autoregressive blocks of `length` after the prompt, `steps_per_block`
    /// calls each under `run`.
    pub fn after_prompt(length: usize, steps_per_block: usize, run: BlockLoop) -> Blocks {
        Blocks {
            layout: BlocksLayout::AfterPrompt { length },
            steps_per_block: Some(steps_per_block),
            run,
        }
    }

    /// Length of the whole sequence for a prompt of `prompt_len` ids and `gen_length` new ones.
    pub fn canvas_len(&self, prompt_len: usize, gen_length: usize) -> usize {
        match self.layout {
            BlocksLayout::Aligned { size } => (prompt_len + gen_length).div_ceil(size) * size,
            _ => prompt_len + gen_length,
        }
    }

    /// The blocks of a sequence, in decoding order.
    pub fn ranges(&self, prompt_len: usize, canvas_len: usize) -> Vec<Range<usize>> {
        match self.layout {
            BlocksLayout::Whole => std::iter::once(prompt_len..canvas_len).collect(),
            BlocksLayout::AfterPrompt { length } => (prompt_len..canvas_len)
                .step_by(length)
                .map(|s| s..(s + length).min(canvas_len))
                .collect(),
            BlocksLayout::Aligned { size } => (prompt_len / size..canvas_len / size)
                .map(|b| b * size..(b + 1) * size)
                .collect(),
        }
    }

    /// How many positions the model sees while `block` is decoded.
    pub fn window(&self, block: &Range<usize>, canvas_len: usize) -> usize {
        match self.layout {
            BlocksLayout::Aligned { .. } => block.end,
            _ => canvas_len,
        }
    }

    /// The number of tokens a block's schedule spreads, given the masks it holds at its start.
    pub fn scheduled_tokens(&self, masks_at_start: usize) -> usize {
        match self.layout {
            BlocksLayout::Aligned { size } => size,
            _ => masks_at_start,
        }
    }

    /// Whether the block gets another call after `calls` calls, with `masks` masks left.
    pub fn another_call(&self, calls: usize, masks: usize) -> bool {
        let budget = self.steps_per_block.unwrap_or(usize::MAX);
        match self.run {
            BlockLoop::Fixed => calls < budget,
            BlockLoop::AtMost => calls < budget && masks > 0,
            BlockLoop::UntilFilled => masks > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_blocks_round_up_and_start_in_the_prompts_block() {
        let b = Blocks {
            layout: BlocksLayout::Aligned { size: 8 },
            steps_per_block: Some(4),
            run: BlockLoop::AtMost,
        };
        // 10 prompt ids + 22 new ones round up to 32; block 1 (8..16) holds prompt ids 8, 9.
        assert_eq!(b.canvas_len(10, 22), 32);
        assert_eq!(b.ranges(10, 32), vec![8..16, 16..24, 24..32]);
        assert_eq!(b.window(&(8..16), 32), 16);
    }

    #[test]
    fn blocks_after_the_prompt() {
        let b = Blocks {
            layout: BlocksLayout::AfterPrompt { length: 8 },
            steps_per_block: Some(4),
            run: BlockLoop::Fixed,
        };
        assert_eq!(b.ranges(10, 34), vec![10..18, 18..26, 26..34]);
        assert_eq!(b.window(&(10..18), 34), 34);
        assert!(b.another_call(3, 0));
        assert!(!b.another_call(4, 5));
    }
}
