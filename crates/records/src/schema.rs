//! Row types of the tables the probe and the decoder write.
//!
//! Column names equal field names. Ids are `u32`, probabilities and
//! information quantities `f32` (nats), positions are 0-based indices into the
//! full sequence (template + prompt + masks), distances are 1-based: the first
//! mask after the prompt has distance 1.

use serde::{Deserialize, Serialize};

/// One mask position of one prompt after a single forward pass (the probe).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeRecord {
    /// Index of the prompt in the prompt file (0-based, in file order).
    pub prompt_index: u32,
    /// The prompt's `id` field when the file has one, else its index as text.
    pub prompt_id: String,
    /// Number of tokens before the first mask (templated prompt).
    pub prompt_len: u32,
    /// 0-based position in the full sequence.
    pub position: u32,
    /// 1-based distance from the end of the prompt (`position - prompt_len + 1`).
    pub distance: u32,
    /// Top-k token ids, most probable first.
    pub top_ids: Vec<u32>,
    /// The same tokens decoded to text (one token at a time, special tokens kept).
    pub top_tokens: Vec<String>,
    /// Their probabilities (softmax over the full vocabulary).
    pub top_probs: Vec<f32>,
    /// Shannon entropy of the full predictive distribution, in nats.
    pub entropy: f32,
    /// Largest probability (equals `top_probs[0]`).
    pub max_prob: f32,
    /// Top-1 minus top-2 probability.
    pub margin: f32,
    /// Probability mass on end-of-text / end-of-turn tokens.
    pub eot_mass: f32,
    /// KL(position distribution ‖ corpus unigram), nats; present when the probe had a unigram table.
    pub kl_unigram: Option<f32>,
    /// Cross-entropy of the position distribution to the corpus unigram, nats.
    pub xent_unigram: Option<f32>,
    /// Jensen–Shannon divergence (nats) to the previous mask position; absent at distance 1.
    pub js_prev: Option<f32>,
}

/// One position committed by a decoding schedule at one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub prompt_index: u32,
    /// 0-based step number.
    pub step: u32,
    /// 0-based position in the full sequence.
    pub position: u32,
    /// 1-based distance from the end of the prompt.
    pub distance: u32,
    /// The token written at this position.
    pub token_id: u32,
    /// The token as text.
    pub token: String,
    /// The model's probability of that token at this step (after temperature/filtering);
    /// null in imported trajectories, which do not carry the sampler's probabilities.
    pub prob: Option<f32>,
    /// The schedule's confidence score that ranked this position; null in imported
    /// trajectories.
    pub confidence: Option<f32>,
    /// How many generated positions were still masked after this step.
    pub masked_after: u32,
}

/// The final sequence of one prompt after decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    pub prompt_index: u32,
    pub prompt_id: String,
    /// Templated prompt ids.
    pub prompt_ids: Vec<u32>,
    /// Generated ids (the positions after the prompt), in order.
    pub gen_ids: Vec<u32>,
    /// For each generated position, the step that committed it (-1: never committed, still the mask id).
    pub commit_step: Vec<i32>,
    /// Generated text, special tokens skipped.
    pub text: String,
    /// Number of steps the schedule ran.
    pub steps: u32,
    /// Per generated position, how many times a committed token was masked again or
    /// replaced (remasking samplers, imported); absent for samplers that never remask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remask_count: Option<Vec<u32>>,
}

/// The top-K distribution of one still-masked position at one step (`--save-step-distributions K`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepDistribution {
    pub prompt_index: u32,
    pub step: u32,
    pub position: u32,
    pub top_ids: Vec<u32>,
    pub top_probs: Vec<f32>,
}

/// One masked position of one corrupted text after a single forward pass (`corrupt`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptRecord {
    /// Index of the text in the texts file (0-based, in file order).
    pub text_index: u32,
    /// The share of the text's eligible positions that were masked.
    pub ratio: f32,
    /// 0-based sample (masking draw) at this ratio.
    pub sample: u32,
    /// 0-based position in the clean sequence (`texts.parquet` `ids`).
    pub position: u32,
    /// The true (clean) token at this position.
    pub token_id: u32,
    /// 1-based rank of the token in the reference corpus by count (most frequent 1; ties by id;
    /// tokens absent from the corpus after every present one).
    pub freq_rank: u32,
    /// `-ln p_model(token)`, nats.
    pub nll: f32,
    /// 1-based rank of the true token in the model's distribution (1 + tokens more probable).
    pub true_rank: u32,
    /// Entropy of the model's distribution at this position, nats.
    pub entropy: f32,
    /// Top-k token ids, most probable first.
    pub top_ids: Vec<u32>,
    /// Their probabilities.
    pub top_probs: Vec<f32>,
    /// Distance to the nearest position left unmasked (0: none left).
    pub context_distance: u32,
    /// `ln p_model(token) − ln p_unigram(token)`, nats: what the context told the model.
    pub context_gain: f32,
}

/// One clean text of a `corrupt` run, as the model saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorruptText {
    pub text_index: u32,
    /// The text's `id` field when the file has one, else its index as text.
    pub text_id: String,
    /// The clean sequence (template and special tokens included).
    pub ids: Vec<u32>,
}
