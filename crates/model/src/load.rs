//! From a Hugging Face checkpoint folder (or a TorchScript file) to a [`MaskedDenoiser`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use cp_records::{DTypeChoice, ModelInfo};
use tch::{Device, Kind};

use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::memory::{size, MemoryBudget, OVERHEAD_BYTES};
use crate::models::dream::{DreamConfig, DreamModel};
use crate::models::llada::{LladaConfig, LladaModel};
use crate::models::llada2::{Llada2Config, Llada2Model, DEFAULT_BLOCK_LENGTH};
use crate::models::llada_moe::{is_llada_moe, LladaMoeConfig, LladaMoeModel};
use crate::models::mdlm::{MdlmConfig, MdlmModel};
use crate::models::torchscript::TorchScriptModel;
use crate::models::{from_config_value, parse_config_json};
use crate::weights::{sha256_hex, KeySetCheck, SafetensorsSource, WeightSource};

/// The `model_type`s [`load_model`] understands, as written in `config.json` (`llada` covers
/// dense LLaDA and LLaDA-MoE, told apart by `architectures`).
pub const SUPPORTED_MODEL_TYPES: &[&str] = &["llada", "Dream", "llada2_moe", "mdlm"];

/// Where the weights live and the model runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    /// The first CUDA device when libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// `cuda` (= `cuda:0`) or `cuda:N`.
    Cuda(usize),
}

/// How [`load_model`] and [`load_torchscript`] place the model.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadOptions {
    pub dtype: DTypeChoice,
    pub device: DeviceChoice,
    /// Memory a CPU load may use, in bytes (`None`: [`MemoryBudget::detect`]).
    pub available_memory: Option<u64>,
    /// LLaDA2.0's attention blocks (`--block-length`): `None` takes `block_length` of
    /// `generation_config.json`, else [`crate::models::llada2::DEFAULT_BLOCK_LENGTH`].
    /// Other architectures ignore it.
    pub block_length: Option<i64>,
    /// MDLM's diffusion time `t` in [0, 1] (`--timestep`), for time-conditioned checkpoints;
    /// `None`: the fraction of masked positions of each row. Other architectures ignore it.
    pub timestep: Option<f64>,
}

impl FromStr for DeviceChoice {
    type Err = ProbeError;

    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| {
                    ProbeError::Input(format!(
                        "unknown device `{s}`; expected auto, cpu, cuda or cuda:N"
                    ))
                }),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceChoice {
    /// The libtorch device, checking that a requested CUDA device exists.
    pub fn resolve(self) -> Result<Device, ProbeError> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => {
                let count = tch::Cuda::device_count().max(0) as usize;
                if n < count {
                    Ok(Device::Cuda(n))
                } else {
                    Err(ProbeError::Input(format!(
                        "device cuda:{n} requested but libtorch sees {count} CUDA device(s)"
                    )))
                }
            }
        }
    }
}

/// The dtype for a model on `device` whose checkpoint declares or stores `checkpoint`.
pub fn resolve_dtype(choice: DTypeChoice, device: Device, checkpoint: Option<Kind>) -> Kind {
    match choice {
        DTypeChoice::F32 => Kind::Float,
        DTypeChoice::Bf16 => Kind::BFloat16,
        DTypeChoice::F16 => Kind::Half,
        DTypeChoice::Auto => match (device, checkpoint) {
            (Device::Cuda(_), Some(k @ (Kind::BFloat16 | Kind::Half | Kind::Float))) => k,
            _ => Kind::Float,
        },
    }
}

/// A loaded model and what the run manifest records about it.
///
/// Dereferences to the [`MaskedDenoiser`], so `model.logits(...)` works directly.
pub struct LoadedModel {
    pub denoiser: Box<dyn MaskedDenoiser>,
    /// For `manifest.json`: path, `model_type`, hashes, dtype, device, mask id, logit count.
    pub info: ModelInfo,
    /// End-of-sequence ids: `eos_token_id` of `config.json` (a number or a list), then any
    /// further ones in `generation_config.json`. Empty for TorchScript.
    pub eos_ids: Vec<i64>,
}

impl fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedModel")
            .field("info", &self.info)
            .field("eos_ids", &self.eos_ids)
            .finish_non_exhaustive()
    }
}

impl std::ops::Deref for LoadedModel {
    type Target = dyn MaskedDenoiser;
    fn deref(&self) -> &Self::Target {
        self.denoiser.as_ref()
    }
}

impl AsRef<dyn MaskedDenoiser> for LoadedModel {
    fn as_ref(&self) -> &(dyn MaskedDenoiser + 'static) {
        self.denoiser.as_ref()
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "f32",
        Kind::BFloat16 => "bf16",
        Kind::Half => "f16",
        Kind::Double => "f64",
        _ => "other",
    }
}

fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(n) => format!("cuda:{n}"),
        _ => "cpu".into(),
    }
}

fn torch_dtype(config: &serde_json::Value) -> Option<Kind> {
    match config.get("torch_dtype")?.as_str()? {
        "float32" => Some(Kind::Float),
        "bfloat16" => Some(Kind::BFloat16),
        "float16" => Some(Kind::Half),
        _ => None,
    }
}

/// `eos_token_id` as a number or a list of numbers; anything else counts as absent.
fn eos_of(value: &serde_json::Value) -> Vec<i64> {
    match value.get("eos_token_id") {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_i64()).collect(),
        _ => Vec::new(),
    }
}

/// `eos_token_id` of `config` (a folder's parsed `config.json`) and of the folder's
/// `generation_config.json`, in that order, without duplicates: the end ids of a checkpoint
/// that comes without a tokenizer.
fn folder_eos_ids(dir: &Path, config: &serde_json::Value) -> Result<Vec<i64>, ProbeError> {
    let mut eos_ids = eos_of(config);
    let generation = dir.join("generation_config.json");
    if let Ok(bytes) = std::fs::read(&generation) {
        let value = parse_config_json(&generation, &bytes)?;
        for id in eos_of(&value) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
    }
    Ok(eos_ids)
}

/// What a checkpoint folder's configs say about its ids, read without its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderIds {
    /// `vocab_size` of `config.json`.
    pub vocab_size: Option<u32>,
    /// `mask_token_id` of `config.json`, else of `generation_config.json`.
    pub mask_id: Option<u32>,
    /// The end ids [`load_model`] reports for the folder (see `LoadedModel::eos_ids`).
    pub eos_ids: Vec<i64>,
}

/// Reads [`FolderIds`] from a checkpoint folder's `config.json` and `generation_config.json`.
pub fn folder_ids(dir: &Path) -> Result<FolderIds, ProbeError> {
    let config_path = dir.join("config.json");
    let bytes = std::fs::read(&config_path).map_err(|source| ProbeError::Io {
        path: config_path.clone(),
        source,
    })?;
    let config = parse_config_json(&config_path, &bytes)?;
    let id_of = |v: &serde_json::Value, key: &str| {
        v.get(key)
            .and_then(serde_json::Value::as_u64)
            .and_then(|x| u32::try_from(x).ok())
    };
    let mut mask_id = id_of(&config, "mask_token_id");
    if mask_id.is_none() {
        let generation = dir.join("generation_config.json");
        if let Ok(bytes) = std::fs::read(&generation) {
            mask_id = id_of(&parse_config_json(&generation, &bytes)?, "mask_token_id");
        }
    }
    Ok(FolderIds {
        vocab_size: id_of(&config, "vocab_size"),
        mask_id,
        eos_ids: folder_eos_ids(dir, &config)?,
    })
}

/// Loads a Hugging Face checkpoint folder: `config.json` plus `model.safetensors` or the
/// shards of `model.safetensors.index.json`, stored as f32, bf16 or f16.
///
/// `model_type` picks the architecture (`llada` or `Dream`); every dimension comes from
/// `config.json`. Weights are read tensor by tensor into their final memory, so loading
/// needs little more memory than the weights themselves.
pub fn load_model(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel, ProbeError> {
    let meta = std::fs::metadata(dir).map_err(|source| ProbeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ProbeError::Input(format!(
            "{}: not a checkpoint folder (for a TorchScript file, load it as TorchScript)",
            dir.display()
        )));
    }
    let config_path = dir.join("config.json");
    let config_bytes = std::fs::read(&config_path).map_err(|source| ProbeError::Io {
        path: config_path.clone(),
        source,
    })?;
    let config = parse_config_json(&config_path, &config_bytes)?;
    let model_type = match config.get("model_type") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(ProbeError::Config {
                path: config_path,
                message: format!("key `model_type`: expected a string, found {other}"),
            })
        }
        None => {
            return Err(ProbeError::Config {
                path: config_path,
                message: "missing key `model_type`".into(),
            })
        }
    };
    if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(ProbeError::UnknownArchitecture {
            path: config_path,
            model_type,
            supported: format!(
                "{}, or a TorchScript module loaded as such",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        });
    }

    let device = opts.device.resolve()?;
    let mut source = SafetensorsSource::open(dir)?;
    let checkpoint_kind = torch_dtype(&config).or_else(|| source.stored_kind());
    let kind = resolve_dtype(opts.dtype, device, checkpoint_kind);
    let (kind, dtype_note) = fit_in_memory(dir, &source, opts, device, kind)?;
    source.set_target(kind, device);

    // What the manifest records of the attention and time the model was given.
    let (mut block_length, mut timestep) = (None, None);
    let denoiser: Box<dyn MaskedDenoiser> = match model_type.as_str() {
        "llada" if is_llada_moe(&config) => {
            let cfg: LladaMoeConfig = from_config_value(&config_path, config.clone())?;
            cfg.validate(&config_path)?;
            Box::new(build_checked(&mut source, &[], |src| {
                LladaMoeModel::new(&cfg, src, device)
            })?)
        }
        "llada2_moe" => {
            let cfg: Llada2Config = from_config_value(&config_path, config.clone())?;
            cfg.validate(&config_path)?;
            let block = match opts.block_length {
                Some(b) => b,
                None => generation_block_length(dir)?.unwrap_or(DEFAULT_BLOCK_LENGTH),
            };
            let model = build_checked(&mut source, &[], |src| Llada2Model::new(&cfg, src, device))?;
            block_length = Some(block);
            Box::new(model.with_block_length(Some(block))?)
        }
        "mdlm" => {
            let cfg: MdlmConfig = from_config_value(&config_path, config.clone())?;
            cfg.validate(&config_path)?;
            // The rotary table is a buffer the model recomputes from the config.
            let model = build_checked(&mut source, &["backbone.rotary_emb.inv_freq"], |src| {
                MdlmModel::new(&cfg, src, device)
            })?;
            timestep = opts.timestep.filter(|_| cfg.time_conditioning);
            Box::new(model.with_timestep(opts.timestep)?)
        }
        "llada" => {
            let cfg: LladaConfig = from_config_value(&config_path, config.clone())?;
            cfg.validate(&config_path)?;
            Box::new(LladaModel::new(
                &cfg,
                &mut source as &mut dyn WeightSource,
                device,
            )?)
        }
        _ => {
            let cfg: DreamConfig = from_config_value(&config_path, config.clone())?;
            cfg.validate(&config_path)?;
            Box::new(DreamModel::new(
                &cfg,
                &mut source as &mut dyn WeightSource,
                device,
            )?)
        }
    };

    let eos_ids = folder_eos_ids(dir, &config)?;

    let info = ModelInfo {
        path: dir.display().to_string(),
        model_type,
        config_sha256: Some(sha256_hex(&config_bytes)),
        weights_sha256: Some(source.weights_sha256().to_string()),
        dtype: kind_name(kind).into(),
        dtype_note,
        device: device_name(device),
        mask_id: u32::try_from(denoiser.mask_id()).unwrap_or(u32::MAX),
        vocab_size: u32::try_from(denoiser.vocab_size()).unwrap_or(u32::MAX),
        block_length,
        timestep,
    };
    Ok(LoadedModel {
        denoiser,
        info,
        eos_ids,
    })
}

/// `block_length` of a folder's `generation_config.json` (LLaDA2.0's sampler setting), if any.
fn generation_block_length(dir: &Path) -> Result<Option<i64>, ProbeError> {
    let path = dir.join("generation_config.json");
    let Ok(bytes) = std::fs::read(&path) else {
        return Ok(None);
    };
    let value = parse_config_json(&path, &bytes)?;
    match value.get("block_length") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_i64().filter(|&b| b >= 1) {
            Some(b) => Ok(Some(b)),
            None => Err(ProbeError::Config {
                path,
                message: format!("key `block_length`: expected a whole number >= 1, found {v}"),
            }),
        },
    }
}

/// Builds a model through a [`KeySetCheck`], so that a checkpoint whose tensor names differ
/// from what the architecture reads fails listing the missing and the unexpected names,
/// rather than at the first one (or, for an unread tensor, not at all). `ignored` names
/// tensors the checkpoint may hold that the model recomputes.
fn build_checked<M>(
    source: &mut SafetensorsSource,
    ignored: &[&str],
    build: impl FnOnce(&mut dyn WeightSource) -> Result<M, ProbeError>,
) -> Result<M, ProbeError> {
    let mut checked = KeySetCheck::new(source);
    let built = build(&mut checked);
    checked.finish(built, ignored)
}

/// Checks, from the headers alone, that the weights at `kind` plus libtorch fit in the memory
/// a CPU load may use. On `--dtype auto`, a checkpoint that fits only in its stored dtype
/// keeps it (the returned note says so, for stderr and the manifest); otherwise the error
/// gives the numbers and the `--dtype` that would fit. CUDA loads are not checked here.
fn fit_in_memory(
    dir: &Path,
    source: &SafetensorsSource,
    opts: &LoadOptions,
    device: Device,
    kind: Kind,
) -> Result<(Kind, Option<String>), ProbeError> {
    if device != Device::Cpu {
        return Ok((kind, None));
    }
    let budget = match opts.available_memory {
        Some(bytes) => MemoryBudget {
            bytes,
            source: "the given limit".into(),
        },
        None => match MemoryBudget::detect() {
            Some(b) => b,
            None => return Ok((kind, None)),
        },
    };
    let need = |k: Kind| source.bytes_at(k) + OVERHEAD_BYTES;
    if need(kind) <= budget.bytes {
        return Ok((kind, None));
    }
    let stored = source.stored_kind();
    if opts.dtype == DTypeChoice::Auto {
        if let Some(k) = stored.filter(|&k| k != kind && need(k) <= budget.bytes) {
            let note = format!(
                "{} as {} would need about {} but {} is available ({}); keeping the checkpoint's {} (about {})",
                dir.display(),
                kind_name(kind),
                size(need(kind)),
                size(budget.bytes),
                budget.source,
                kind_name(k),
                size(need(k)),
            );
            return Ok((k, Some(note)));
        }
    }
    let smaller = [Kind::BFloat16, Kind::Half]
        .into_iter()
        .find(|&k| k != kind && need(k) <= budget.bytes);
    let advice = match smaller {
        Some(k) => format!("use --dtype {} (about {})", kind_name(k), size(need(k))),
        None => "no dtype fits: use a machine with more memory or --device cuda".into(),
    };
    Err(ProbeError::OutOfMemory(format!(
        "{}: loading as {} needs about {} (weights {} + libtorch {}) but {} is available ({}); {advice}",
        dir.display(),
        kind_name(kind),
        size(need(kind)),
        size(source.bytes_at(kind)),
        size(OVERHEAD_BYTES),
        size(budget.bytes),
        budget.source,
    )))
}

/// Loads a TorchScript module whose `forward` maps int64 ids `[B, L]` to aligned logits
/// `[B, L, V]`. Without `vocab`, `V` is read from one forward pass on ids `[1, 1]` (give it
/// for modules traced at a fixed shape). The module keeps its own
/// dtype unless `opts.dtype` names one; it cannot take padded batches.
pub fn load_torchscript(
    path: &Path,
    mask_id: i64,
    vocab: Option<i64>,
    opts: &LoadOptions,
) -> Result<LoadedModel, ProbeError> {
    if !path.is_file() {
        return Err(ProbeError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such TorchScript file"),
        });
    }
    let device = opts.device.resolve()?;
    let mut module = tch::CModule::load_on_device(path, device).map_err(|e| {
        ProbeError::Input(format!(
            "{}: not a loadable TorchScript module: {e}",
            path.display()
        ))
    })?;
    module.set_eval();
    let kind = match opts.dtype {
        DTypeChoice::Auto => None,
        other => Some(resolve_dtype(other, device, None)),
    };
    if let Some(kind) = kind {
        module.to(device, kind, false);
    }
    let model = TorchScriptModel::new(module, mask_id, vocab, device)?;
    let info = ModelInfo {
        path: path.display().to_string(),
        model_type: "torchscript".into(),
        config_sha256: None,
        weights_sha256: Some(sha256_file(path)?),
        dtype: kind.map(kind_name).unwrap_or("module").into(),
        dtype_note: None,
        device: device_name(device),
        mask_id: u32::try_from(mask_id).unwrap_or(u32::MAX),
        vocab_size: u32::try_from(model.vocab_size()).unwrap_or(u32::MAX),
        block_length: None,
        timestep: None,
    };
    Ok(LoadedModel {
        denoiser: Box::new(model),
        info,
        eos_ids: Vec::new(),
    })
}

fn sha256_file(path: &Path) -> Result<String, ProbeError> {
    cp_records::sha256_file(path).map_err(ProbeError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_the_cli_strings() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        assert!("gpu".parse::<DeviceChoice>().is_err());
        for s in ["auto", "cpu", "cuda:1"] {
            assert_eq!(s.parse::<DeviceChoice>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn auto_dtype_is_f32_on_cpu_and_the_checkpoints_on_cuda() {
        let auto = DTypeChoice::Auto;
        assert_eq!(
            resolve_dtype(auto, Device::Cpu, Some(Kind::BFloat16)),
            Kind::Float
        );
        assert_eq!(
            resolve_dtype(auto, Device::Cuda(0), Some(Kind::BFloat16)),
            Kind::BFloat16
        );
        assert_eq!(resolve_dtype(auto, Device::Cuda(0), None), Kind::Float);
        assert_eq!(
            resolve_dtype(DTypeChoice::F16, Device::Cpu, Some(Kind::Float)),
            Kind::Half
        );
    }

    #[test]
    fn eos_ids_accept_a_number_or_a_list() {
        assert_eq!(eos_of(&serde_json::json!({"eos_token_id": 7})), [7]);
        assert_eq!(eos_of(&serde_json::json!({"eos_token_id": [7, 9]})), [7, 9]);
        assert!(eos_of(&serde_json::json!({"eos_token_id": null})).is_empty());
    }
}
