//! Loading masked diffusion language models and measuring them on libtorch.
//!
//! Everything here talks to one seam, [`MaskedDenoiser`]: ids in, per-position
//! logits out, plus the mask id. The architectures (LLaDA, Dream, any TorchScript
//! module) implement it; the mask probe ([`probe`]) and every decoding schedule
//! ([`decode`]) use only it.
//!
//! ```no_run
//! use cp_probe::{load_model, LoadOptions};
//! let model = load_model("path/to/LLaDA-8B-Instruct".as_ref(), &LoadOptions::default())?;
//! println!("mask id {}", model.mask_id());
//! # Ok::<(), cp_probe::ProbeError>(())
//! ```

mod decode;
mod denoiser;
mod error;

pub use crate::decode::{
    decode, Commit, DecodeOptions, DecodeOutput, DecodeProgress, DreamAlg, DreamParams, FixedOrder, FixedParams,
    LladaParams, Remasking, Schedule, StepTopK, ThresholdParams, TokensPerStep, Trajectory,
};
pub use crate::denoiser::MaskedDenoiser;
pub use crate::error::ProbeError;
mod probe;

pub use crate::probe::{plan_batches, probe, ProbeInput, ProbeSettings};
