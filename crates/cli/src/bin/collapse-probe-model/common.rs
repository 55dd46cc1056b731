//! Arguments and plumbing shared by the subcommands that run a model: which model and how to
//! load it, the prompts, shards and resume; plus, re-exported, what every subcommand shares.

pub use collapse_probe::common::{report_error, GlobalArgs};

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use cp_model::{
    load_model, load_torchscript, DTypeChoice, DeviceChoice, LoadOptions, LoadedModel,
    MaskedDenoiser,
};
use cp_records::{Manifest, PromptsInfo};
use cp_text::{read_prompts, ModelText, PromptContent, PromptFile, PromptFormat, TemplateChoice};

/// Which model to load and how.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "torchscript",
        conflicts_with = "torchscript"
    )]
    pub model: Option<PathBuf>,
    /// A TorchScript module mapping int64 ids [B, L] to logits [B, L, V], instead of --model.
    #[arg(long, value_name = "FILE", requires = "mask_id")]
    pub torchscript: Option<PathBuf>,
    /// Mask token id (required with --torchscript; overrides config.json otherwise).
    #[arg(long, value_name = "N")]
    pub mask_id: Option<u32>,
    /// tokenizer.json (or a folder holding one), when it is not in the model folder.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Weight and compute dtype (auto: f32 on CPU unless it would not fit in memory, the checkpoint's dtype on CUDA).
    #[arg(long, value_enum, default_value_t = DTypeChoice::Auto)]
    pub dtype: DTypeChoice,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_name = "DEVICE")]
    pub device: String,
    /// LLaDA2.0: the block length of its block-causal attention, as its sampler runs it
    /// (default: `block_length` of generation_config.json, else 32). Other models ignore it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    pub block_length: Option<i64>,
    /// MDLM with time conditioning: the diffusion time t in [0, 1] the model is told
    /// (default: each row's fraction of masked positions). Other models ignore it.
    #[arg(long, value_name = "T")]
    pub timestep: Option<f64>,
}

/// `--restart`: a killed run is resumed unless told otherwise.
#[derive(Debug, Clone, clap::Args)]
pub struct ResumeArgs {
    /// Throw away the batches that an interrupted run of this command kept beside the output
    /// folder (`.NAME.resume/`) and start over; without it, the same command started again
    /// continues from its last completed batch.
    #[arg(long)]
    pub restart: bool,
}

/// `--shard`: one process's part of a run.
#[derive(Debug, Clone, clap::Args)]
pub struct ShardArgs {
    /// Run only shard i of n (counted from 0): a contiguous part of the run's prompt batches,
    /// written to OUT/shard=i/ with its manifest. `auto` reads a Slurm job array's
    /// SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT or a Kubernetes Indexed Job's
    /// JOB_COMPLETION_INDEX/JOB_COMPLETIONS. `analyze --records OUT` merges the shards.
    #[arg(long, value_name = "i/n|auto", value_parser = parse_shard)]
    pub shard: Option<cp_records::Shard>,
}

fn parse_shard(text: &str) -> Result<cp_records::Shard, String> {
    cp_records::Shard::parse_with_env(text, &|name| std::env::var(name).ok())
}

impl ShardArgs {
    /// Where the stage writes: `out` itself, or the shard's folder inside it (created).
    pub fn out_dir(&self, out: &Path) -> anyhow::Result<PathBuf> {
        match self.shard {
            None => Ok(out.to_owned()),
            Some(shard) => {
                std::fs::create_dir_all(out)
                    .with_context(|| format!("creating the shards' folder {}", out.display()))?;
                Ok(out.join(shard.folder_name()))
            }
        }
    }
}

/// Which prompts to read and how to turn them into ids.
#[derive(Debug, Clone, clap::Args)]
pub struct PromptArgs {
    /// Prompt file: text (one per line), JSONL (`prompt`), Alpaca, LIMA, chat (`messages`) or pre-tokenized (`input_ids`).
    #[arg(long, value_name = "FILE")]
    pub prompts: PathBuf,
    /// Prompt file format: auto, text, jsonl, alpaca, lima, chat or ids.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub prompt_format: String,
    /// Chat template: auto (tokenizer_config.json or chat_template.jinja), none, or a Jinja file.
    #[arg(long, default_value = "auto", value_name = "auto|none|FILE")]
    pub chat_template: String,
    /// Encode plain-text prompts exactly as written, without the special tokens (such as BOS) that the tokenizer adds by default, as transformers' tokenizer(text) does.
    #[arg(long)]
    pub no_special_tokens: bool,
}

/// A loaded model, its tokenizer side and the prompts as ids: what `probe` and `decode` share.
pub struct Session {
    pub model: LoadedModel,
    /// Absent only for pre-tokenized prompts with a model folder that has no tokenizer.
    pub text: Option<ModelText>,
    pub prompts: PromptFile,
    /// Token ids of every prompt, in file order.
    pub ids: Vec<Vec<i64>>,
    pub prompts_info: PromptsInfo,
    pub started: SystemTime,
}

impl Session {
    pub fn open(
        model: &ModelArgs,
        prompts: &PromptArgs,
        global: &GlobalArgs,
    ) -> anyhow::Result<Session> {
        let started = SystemTime::now();
        if let Some(n) = global.threads {
            tch::set_num_threads(n as i32);
        }
        let format: PromptFormat = prompts
            .prompt_format
            .parse()
            .with_context(|| "--prompt-format")?;
        let template: TemplateChoice = prompts
            .chat_template
            .parse()
            .with_context(|| "--chat-template")?;
        if let Some(t) = model.timestep {
            if !(0.0..=1.0).contains(&t) {
                bail!("--timestep {t}: the diffusion time must lie in [0, 1]");
            }
        }
        let opts = LoadOptions {
            dtype: model.dtype,
            device: model.device.parse::<DeviceChoice>().context("--device")?,
            block_length: model.block_length,
            timestep: model.timestep,
            ..Default::default()
        };
        // Read the prompts first: a bad prompt file should fail before a large model loads.
        let file = read_prompts(
            &prompts.prompts,
            (format != PromptFormat::Auto).then_some(format),
        )?;
        let all_ids = file
            .prompts
            .iter()
            .all(|p| matches!(p.content, PromptContent::Ids(_)));
        let (loaded, text) = match (&model.model, &model.torchscript) {
            (Some(dir), _) => {
                let has_tokenizer =
                    model.tokenizer.is_some() || dir.join("tokenizer.json").is_file();
                let text = if has_tokenizer || !all_ids {
                    Some(
                        ModelText::load(dir, model.tokenizer.as_deref(), template)?
                            .with_plain_special_tokens(!prompts.no_special_tokens),
                    )
                } else {
                    None
                };
                let loaded = load_model(dir, &opts)?;
                if let Some(note) = &loaded.info.dtype_note {
                    eprintln!("warning: {note}");
                }
                (loaded, text)
            }
            (None, Some(ts)) => {
                let mask = model
                    .mask_id
                    .expect("clap requires --mask-id with --torchscript")
                    as i64;
                let text = match &model.tokenizer {
                    Some(t) => Some(
                        ModelText::load(ts, Some(t), template)?
                            .with_plain_special_tokens(!prompts.no_special_tokens),
                    ),
                    None if all_ids => None,
                    None => bail!("--torchscript needs --tokenizer unless the prompts are pre-tokenized (input_ids)"),
                };
                (load_torchscript(ts, mask, None, &opts)?, text)
            }
            (None, None) => bail!("give --model DIR or --torchscript FILE"),
        };
        let loaded = match (model.mask_id, &model.model) {
            (Some(id), Some(_)) => {
                let LoadedModel {
                    denoiser,
                    mut info,
                    eos_ids,
                } = loaded;
                info.mask_id = id;
                LoadedModel {
                    denoiser: Box::new(MaskOverride {
                        inner: denoiser,
                        mask: i64::from(id),
                    }),
                    info,
                    eos_ids,
                }
            }
            _ => loaded,
        };
        if !(0..loaded.vocab_size()).contains(&loaded.mask_id()) {
            bail!(
                "the model's mask id {} is outside its vocabulary of {} (config.json names none, \
                 and the default is the released checkpoint's): give --mask-id",
                loaded.mask_id(),
                loaded.vocab_size()
            );
        }
        if let Some(t) = &text {
            let (model_mask, text_mask) = (loaded.mask_id(), t.mask_id() as i64);
            if model.mask_id.is_none() && model_mask != text_mask {
                eprintln!(
                    "warning: config.json says mask id {model_mask} but the tokenizer side says {text_mask}; using {model_mask} (override with --mask-id)"
                );
            }
        }
        let (ids, prompts_info) = encode_prompts(&file, text.as_ref(), &prompts.prompts)?;
        Ok(Session {
            model: loaded,
            text,
            prompts: file,
            ids,
            prompts_info,
            started,
        })
    }

    /// Reads and encodes another prompt file with this session's tokenizer and template (a
    /// spec's `[corrupt] texts`), for [`Session::swap_prompts`].
    pub fn read_prompts(&self, path: &Path) -> anyhow::Result<Prompts> {
        let file = read_prompts(path, None)?;
        if self.text.is_none()
            && !file
                .prompts
                .iter()
                .all(|p| matches!(p.content, PromptContent::Ids(_)))
        {
            bail!(
                "{}: text needs a tokenizer, and the model folder has none",
                path.display()
            );
        }
        let (ids, info) = encode_prompts(&file, self.text.as_ref(), path)?;
        Ok(Prompts { file, ids, info })
    }

    /// Puts `prompts` in place of the session's prompts and returns the ones it had.
    pub fn swap_prompts(&mut self, prompts: Prompts) -> Prompts {
        Prompts {
            file: std::mem::replace(&mut self.prompts, prompts.file),
            ids: std::mem::replace(&mut self.ids, prompts.ids),
            info: std::mem::replace(&mut self.prompts_info, prompts.info),
        }
    }

    /// Renders one token for records (see [`token_text`]).
    pub fn token_text(&self, id: u32) -> String {
        token_text(self.text.as_ref(), id)
    }

    /// Decodes generated ids to text (see [`decode_text`]).
    pub fn decode_text(&self, ids: &[u32]) -> String {
        decode_text(self.text.as_ref(), ids)
    }

    /// Every prompt as the probe and the corruption probe take it, with its index in the file.
    pub fn inputs(&self) -> Vec<cp_model::ProbeInput> {
        self.prompts
            .prompts
            .iter()
            .zip(&self.ids)
            .enumerate()
            .map(|(i, (p, ids))| cp_model::ProbeInput {
                prompt_index: i as u32,
                prompt_id: p.id.clone(),
                ids: ids.clone(),
            })
            .collect()
    }

    /// End-of-text / end-of-turn ids: the tokenizer side's, else config.json's `eos_token_id`.
    pub fn eot_ids(&self) -> Vec<u32> {
        let vocab = self.model.vocab_size() as u32;
        let mut ids: Vec<u32> = match &self.text {
            Some(t) => t.eot_ids().to_vec(),
            None => self.model.eos_ids.iter().map(|&i| i as u32).collect(),
        };
        ids.retain(|&i| i < vocab);
        ids
    }

    /// A manifest for a stage run with this session.
    pub fn manifest(
        &self,
        kind: &str,
        seed: u64,
        params: serde_json::Value,
        files: Vec<String>,
    ) -> Manifest {
        Manifest {
            schema_version: cp_records::SCHEMA_VERSION,
            kind: kind.to_string(),
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            command: std::env::args().collect(),
            started_unix: self
                .started
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            wall_time_s: self
                .started
                .elapsed()
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            seed,
            model: Some(self.model.info.clone()),
            tokenizer: self
                .text
                .as_ref()
                .map(|t| t.tokenizer().path().display().to_string()),
            prompts: Some(self.prompts_info.clone()),
            libtorch_version: Some(LIBTORCH_VERSION.to_string()),
            end_ids: Some(self.eot_ids()),
            shard: None,
            params,
            files,
        }
    }
}

/// One token for records: the tokenizer's text, or `<id>` without a tokenizer or for ids past
/// the tokenizer's vocabulary (models pad their embedding tables).
pub fn token_text(text: Option<&ModelText>, id: u32) -> String {
    match text {
        Some(t) if (id as usize) < t.tokenizer().vocab_size() => t.tokenizer().token_text(id),
        _ => format!("<{id}>"),
    }
}

/// Generated ids as text, special tokens skipped; the ids as `<id>` without a tokenizer.
pub fn decode_text(text: Option<&ModelText>, ids: &[u32]) -> String {
    match text {
        Some(t) => t.tokenizer().decode(ids, true).unwrap_or_default(),
        None => ids
            .iter()
            .map(|i| format!("<{i}>"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// A prompt file, its token ids and what the manifest says of it.
pub struct Prompts {
    pub file: PromptFile,
    pub ids: Vec<Vec<i64>>,
    pub info: PromptsInfo,
}

/// Token ids of every prompt (templated by `text` as it says) and the manifest's record of the
/// file. Without `text` every prompt must be pre-tokenized.
fn encode_prompts(
    file: &PromptFile,
    text: Option<&ModelText>,
    path: &Path,
) -> anyhow::Result<(Vec<Vec<i64>>, PromptsInfo)> {
    let ids = file
        .prompts
        .iter()
        .map(|p| match text {
            Some(t) => p.to_ids(t).map(|v| v.into_iter().map(i64::from).collect()),
            None => match &p.content {
                PromptContent::Ids(v) => Ok(v.iter().map(|&i| i64::from(i)).collect()),
                _ => unreachable!("a tokenizer is loaded for every non-id prompt"),
            },
        })
        .collect::<Result<Vec<Vec<i64>>, _>>()?;
    let info = PromptsInfo {
        path: path.display().to_string(),
        format: file.format.as_str().to_string(),
        sha256: cp_records::sha256_file(path)?,
        count: file.prompts.len(),
        chat_template: text
            .map_or_else(|| "none".to_string(), |t| t.describe_template().to_string()),
        special_tokens: text.map(|t| t.plain_special_tokens()),
    };
    Ok((ids, info))
}

/// The libtorch version tch was built against.
pub const LIBTORCH_VERSION: &str = "2.13.0";

/// Lists the regular files of a folder (for manifests), sorted.
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A model whose mask id was overridden with `--mask-id`.
struct MaskOverride {
    inner: Box<dyn MaskedDenoiser>,
    mask: i64,
}

impl MaskedDenoiser for MaskOverride {
    fn mask_id(&self) -> i64 {
        self.mask
    }
    fn vocab_size(&self) -> i64 {
        self.inner.vocab_size()
    }
    fn max_len(&self) -> Option<usize> {
        self.inner.max_len()
    }
    fn device(&self) -> tch::Device {
        self.inner.device()
    }
    fn supports_padding(&self) -> bool {
        self.inner.supports_padding()
    }
    fn attention_blocks(&self) -> Option<i64> {
        self.inner.attention_blocks()
    }
    fn logits_at(
        &self,
        ids: &tch::Tensor,
        rows: &tch::Tensor,
    ) -> Result<tch::Tensor, cp_model::ProbeError> {
        self.inner.logits_at(ids, rows)
    }
    fn logits(
        &self,
        ids: &tch::Tensor,
        valid: Option<&tch::Tensor>,
        from: i64,
    ) -> Result<tch::Tensor, cp_model::ProbeError> {
        self.inner.logits(ids, valid, from)
    }
}
