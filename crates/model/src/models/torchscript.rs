//! Any masked denoiser exported to TorchScript (`torch.jit.trace` / `torch.jit.script`).
//!
//! The module's `forward` takes int64 ids `[B, L]` and returns logits `[B, L, V]` (a tensor,
//! or a tuple whose first element is that tensor, as traced Hugging Face models return),
//! already aligned: row `j` predicts position `j`. The module has no notion of padding, so
//! callers batch only sequences of equal length.

use tch::{CModule, Device, IValue, Kind, Tensor};

use super::check_inputs;
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// A TorchScript module behind the [`MaskedDenoiser`] seam.
#[derive(Debug)]
pub(crate) struct TorchScriptModel {
    module: CModule,
    mask_id: i64,
    vocab: i64,
    device: Device,
}

impl TorchScriptModel {
    /// Wraps `module` (already on `device`, in eval mode). Without `vocab`, the logit count is
    /// read from one forward pass on a single mask token; give it for modules traced at a
    /// fixed input shape, which cannot run on `[1, 1]`.
    pub(crate) fn new(
        module: CModule,
        mask_id: i64,
        vocab: Option<i64>,
        device: Device,
    ) -> Result<Self, ProbeError> {
        let mut model = TorchScriptModel {
            module,
            mask_id,
            vocab: 0,
            device,
        };
        model.vocab = match vocab {
            Some(v) => v,
            None => {
                let ids = Tensor::from_slice(&[mask_id])
                    .view([1, 1])
                    .to_device(device);
                let out = tch::no_grad(|| model.run(&ids))?;
                let size = out.size();
                if size.len() != 3 || size[..2] != [1, 1] {
                    return Err(ProbeError::Input(format!(
                        "the TorchScript module returned shape {size:?} for ids [1, 1]; expected [1, 1, vocab]"
                    )));
                }
                size[2]
            }
        };
        if !(0..model.vocab).contains(&mask_id) {
            return Err(ProbeError::Input(format!(
                "mask id {mask_id} is outside the module's {} logits",
                model.vocab
            )));
        }
        Ok(model)
    }

    fn run(&self, ids: &Tensor) -> Result<Tensor, ProbeError> {
        let out = self
            .module
            .forward_is(&[IValue::Tensor(ids.shallow_clone())])?;
        match out {
            IValue::Tensor(t) => Ok(t),
            IValue::Tuple(mut items) | IValue::GenericList(mut items) if !items.is_empty() => {
                match items.swap_remove(0) {
                    IValue::Tensor(t) => Ok(t),
                    _ => Err(ProbeError::Input(
                        "the TorchScript module's first output is not a tensor".into(),
                    )),
                }
            }
            _ => Err(ProbeError::Input(
                "the TorchScript module returned neither a tensor nor a tuple of tensors".into(),
            )),
        }
    }
}

impl MaskedDenoiser for TorchScriptModel {
    fn mask_id(&self) -> i64 {
        self.mask_id
    }

    fn vocab_size(&self) -> i64 {
        self.vocab
    }

    fn max_len(&self) -> Option<usize> {
        None
    }

    fn device(&self) -> Device {
        self.device
    }

    fn supports_padding(&self) -> bool {
        false
    }

    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (b, l) = check_inputs(ids, valid, from, self.device, self.vocab)?;
        if let Some(valid) = valid {
            if valid.numel() > 0 && valid.all().int64_value(&[]) == 0 {
                return Err(ProbeError::Input(
                    "a TorchScript model cannot take padded batches; batch equal lengths".into(),
                ));
            }
        }
        let logits = tch::no_grad(|| self.run(ids))?;
        if logits.size() != [b, l, self.vocab] {
            return Err(ProbeError::Input(format!(
                "the TorchScript module returned shape {:?} for ids [{b}, {l}]; expected [{b}, {l}, {}]",
                logits.size(),
                self.vocab
            )));
        }
        Ok(logits
            .narrow(1, from, l - from)
            .to_kind(Kind::Float)
            .contiguous())
    }
}
