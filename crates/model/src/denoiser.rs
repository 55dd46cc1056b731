use tch::{Device, Tensor};

use crate::error::ProbeError;

/// A masked diffusion language model as the probe and every decoding schedule see it.
///
/// Implementations own their weights and run in inference mode; callers never see
/// architecture details such as Dream's one-position logit shift: `logits` is always
/// *aligned*, row `j` predicting the token at position `j`.
pub trait MaskedDenoiser {
    /// The id written at masked positions.
    fn mask_id(&self) -> i64;

    /// Number of logits per position (the embedding/LM-head size, which may exceed the tokenizer's vocabulary).
    fn vocab_size(&self) -> i64;

    /// The longest sequence the model accepts, when its config says.
    fn max_len(&self) -> Option<usize>;

    /// Where the weights live; `ids` passed to [`MaskedDenoiser::logits`] must be on this device.
    fn device(&self) -> Device;

    /// Whether [`MaskedDenoiser::logits`] honours `valid` (left padding). When false, callers
    /// batch only sequences of equal length.
    fn supports_padding(&self) -> bool;

    /// The block length of a block-causal attention (LLaDA2.0: positions fall in blocks from
    /// position 0, and each attends to its block and the earlier ones); `None` for
    /// bidirectional models. A schedule that decodes in blocks must use the same ones.
    fn attention_blocks(&self) -> Option<i64> {
        None
    }

    /// Aligned logits for positions `from..L` of each row, as float32 `[B, L - from, V]`.
    ///
    /// `ids` is int64 `[B, L]`. `valid` is an optional bool `[B, L]` that is false at left
    /// padding: padded keys are ignored and positions are counted from the first valid token,
    /// so a padded row gives the same logits as the same row unpadded.
    fn logits(&self, ids: &Tensor, valid: Option<&Tensor>, from: i64)
        -> Result<Tensor, ProbeError>;

    /// Aligned float32 logits `[N, V]` of chosen positions only: `rows` is int64 `[N]`, each an
    /// index into the flattened `[B · L]` positions of `ids` (no padding). The default computes
    /// every position and picks the rows; an architecture whose LM head works per position
    /// overrides it to run the head on those rows alone (the corruption probe reads a few
    /// scattered positions of every sequence).
    fn logits_at(&self, ids: &Tensor, rows: &Tensor) -> Result<Tensor, ProbeError> {
        let logits = self.logits(ids, None, 0)?;
        let v = logits.size()[2];
        Ok(logits.view([-1, v]).index_select(0, rows))
    }
}
