//! Test denoisers shared by the integration tests.

use cp_model::{MaskedDenoiser, ProbeError};
use tch::{Device, Tensor};

/// The same logits at every generated position: position-independent distributions (give the
/// mask id, the last id, `-inf` to keep it out of the predictions).
pub struct Constant {
    pub logits: Vec<f32>,
}

impl MaskedDenoiser for Constant {
    fn mask_id(&self) -> i64 {
        self.logits.len() as i64 - 1
    }
    fn vocab_size(&self) -> i64 {
        self.logits.len() as i64
    }
    fn max_len(&self) -> Option<usize> {
        Some(64)
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn supports_padding(&self) -> bool {
        true
    }
    fn logits(
        &self,
        ids: &Tensor,
        _valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (b, l) = ids.size2()?;
        Ok(Tensor::from_slice(&self.logits)
            .view([1, 1, -1])
            .expand([b, l - from, -1], false)
            .contiguous())
    }
}
