//! Loading masked diffusion language models and measuring them on libtorch.
//!
//! Everything here talks to one seam, [`MaskedDenoiser`]: ids in, per-position
//! logits out, plus the mask id. The architectures (LLaDA, Dream, any TorchScript
//! module) implement it; the mask probe ([`mask_probe`]), the corruption probe ([`corrupt`]) and
//! every decoding schedule ([`decode`]) use only it.
//!
//! ```no_run
//! use cp_model::{load_model, LoadOptions};
//! let model = load_model("path/to/LLaDA-8B-Instruct".as_ref(), &LoadOptions::default())?;
//! println!("mask id {}", model.mask_id());
//! # Ok::<(), cp_model::ProbeError>(())
//! ```

mod corrupt;
mod decode;
mod denoiser;
mod error;
mod load;
mod memory;
mod models;
mod weights;

pub use crate::corrupt::{corrupt, masked_count, masked_positions, CorruptScheme, CorruptSettings};
pub use crate::decode::parts;
pub use crate::decode::{
    batch_count, decode, decode_with, Call, Commit, Composed, DecodeOptions, DecodeOutput,
    DecodeProgress, DreamAlg, DreamParams, FixedOrder, FixedParams, LladaParams, Pick, Remasking,
    RowDecoder, Schedule, ScheduleSpec, Sequence, StepTopK, StepView, ThresholdParams,
    TokensPerStep, Trajectory,
};
pub use crate::denoiser::MaskedDenoiser;
pub use crate::error::ProbeError;
pub use crate::load::{
    folder_ids, load_model, load_torchscript, resolve_dtype, DeviceChoice, FolderIds, LoadOptions,
    LoadedModel, SUPPORTED_MODEL_TYPES,
};
pub use crate::memory::{MemoryBudget, AVAILABLE_MEMORY_ENV, OVERHEAD_BYTES};
pub use crate::models::dream::{DreamConfig, DreamModel};
pub use crate::models::llada::{LladaConfig, LladaModel};
pub use crate::models::llada2::{Llada2Config, Llada2Model, DEFAULT_BLOCK_LENGTH};
pub use crate::models::llada_moe::{is_llada_moe, LladaMoeConfig, LladaMoeModel};
pub use crate::models::mdlm::{MdlmConfig, MdlmModel};
pub use crate::weights::{save_safetensors, SafetensorsSource, WeightSource};
pub use cp_records::DTypeChoice;
mod mask_probe;

pub use crate::mask_probe::{mask_probe, plan_batches, ProbeInput, ProbeSettings};
