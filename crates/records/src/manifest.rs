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
    pub device: String,
    pub mask_id: u32,
    pub vocab_size: u32,
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
    /// Every other setting of the stage, as given.
    pub params: serde_json::Value,
    /// Files in the folder that this manifest describes.
    pub files: Vec<String>,
}
