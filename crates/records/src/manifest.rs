//! `manifest.json`: everything needed to reproduce a run.

use serde::{Deserialize, Serialize};

/// The model a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model folder (or TorchScript file) as given.
    pub path: String,
    /// `model_type` from `config.json`, or `torchscript`.
    pub model_type: String,
    /// SHA-256 of `config.json` (absent for TorchScript).
    pub config_sha256: Option<String>,
    /// SHA-256 of `model.safetensors.index.json`, or of the single weights file's header.
    pub weights_sha256: Option<String>,
    pub dtype: String,
    /// Why `dtype` is not what `--dtype` would normally give (a CPU load that keeps the
    /// checkpoint's dtype because float32 would not fit in memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype_note: Option<String>,
    pub device: String,
    pub mask_id: u32,
    pub vocab_size: u32,
    /// LLaDA2.0: the block length of the block-causal attention the model ran with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_length: Option<i64>,
    /// MDLM with time conditioning: the diffusion time given with `--timestep` (absent: each
    /// row's fraction of masked positions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestep: Option<f64>,
}

/// The prompts a run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptsInfo {
    pub path: String,
    /// Detected or forced format (`text`, `jsonl`, `alpaca`, `lima`, `chat`, `ids`).
    pub format: String,
    pub sha256: String,
    pub count: usize,
    /// The chat template used (`none`, `auto:tokenizer_config.json`, or a file).
    pub chat_template: String,
    /// Whether plain-text prompts were encoded with the tokenizer's special tokens (as
    /// transformers' `tokenizer(text)`); absent in manifests older than the choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_tokens: Option<bool>,
}

/// `manifest.json` of every run folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// `probe`, `decode`, `analysis`, `report` or `run`.
    pub kind: String,
    pub tool_version: String,
    /// The command line that produced the run.
    pub command: Vec<String>,
    /// Unix time at the start of the run, seconds.
    pub started_unix: u64,
    pub wall_time_s: f64,
    pub seed: u64,
    pub model: Option<ModelInfo>,
    pub tokenizer: Option<String>,
    pub prompts: Option<PromptsInfo>,
    /// libtorch version (`2.13.0`), absent for stages that do not link it.
    pub libtorch_version: Option<String>,
    /// The model's end-of-text, end-of-turn and padding ids (`probe` and `decode`; sorted):
    /// where `analyze` cuts generations and which predictions count as end tokens, unless
    /// told otherwise. Absent where the stage has no model, and in manifests older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ids: Option<Vec<u32>>,
    /// Which shard of a sharded run this folder is (`--shard`); absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::ShardInfo>,
    /// Every other setting of the stage, as given.
    pub params: serde_json::Value,
    /// Files in the folder that this manifest describes.
    pub files: Vec<String>,
}

impl Manifest {
    /// The end ids this manifest records: `end_ids`, else the `eot_ids` that `probe` and
    /// `decode` manifests kept among their params before `end_ids` existed.
    pub fn recorded_end_ids(&self) -> Option<Vec<u32>> {
        if let Some(ids) = &self.end_ids {
            return Some(ids.clone());
        }
        let ids = self.params.get("eot_ids")?.as_array()?;
        ids.iter()
            .map(|v| v.as_u64().and_then(|id| u32::try_from(id).ok()))
            .collect()
    }
}
