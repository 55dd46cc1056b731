//! `collapse-probe import`: trajectories decoded by another program (docs/trajectories.md)
//! into a decode folder that `analyze`, `report` and `check` read like one `decode` wrote.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use cp_records::{
    files, read_trajectories, write_json, write_table, Format, Manifest, OutputDir, StepRecord,
    TrajectoryForm, TrajectorySettings,
};
use cp_text::{ModelText, TemplateChoice};

use crate::common::{decode_text, list_files, token_text, GlobalArgs};

/// Arguments of `collapse-probe import`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Trajectories: JSON Lines (or a `.parquet` file) in the format of docs/trajectories.md.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,
    /// The model folder the trajectories were decoded with: its tokenizer, mask id, end ids and
    /// `vocab_size` are read (no weights are loaded).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// tokenizer.json (or a folder holding one): the generations' text, the end ids and the
    /// vocabulary bound when there is no --model (or to override the model folder's).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// The mask id (overrides the model's; needed for histories that do not give `mask_id`
    /// when there is no model or tokenizer that names a mask token).
    #[arg(long, value_name = "N")]
    pub mask_id: Option<u32>,
    /// Ids must be below N (default: `vocab_size` of config.json with --model, else the
    /// tokenizer's size; unchecked without either).
    #[arg(long, value_name = "N")]
    pub vocab_size: Option<u32>,
    /// End-of-text ids recorded for the analysis (repeatable; default: the model's or the
    /// tokenizer's, found as `decode` finds them; none without either).
    #[arg(long = "eos-id", value_name = "ID")]
    pub eos_id: Vec<u32>,
    /// Accept positions that lose a committed token (ReMDM-style remasking samplers).
    #[arg(long)]
    pub allow_remasking: bool,
    /// A name for the sampler, recorded in the manifest (default: the file's stem).
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,
    /// The decode folder to write (atomically).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Record format.
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    pub format: Format,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let t0 = std::time::Instant::now();
    let done = import(&args)?;
    if !global.quiet {
        eprintln!(
            "imported {} generations ({} form) in {:.2}s -> {}",
            done.generations,
            done.form,
            t0.elapsed().as_secs_f64(),
            done.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What an import wrote.
pub struct Imported {
    pub dir: PathBuf,
    pub generations: usize,
    pub form: &'static str,
}

/// The model side of an import: tokenizer, mask and end ids, vocabulary bound, found as
/// `decode` finds them for the same folder.
struct ModelSide {
    text: Option<ModelText>,
    mask_id: Option<u32>,
    /// Before `--eos-id`; unfiltered.
    end_ids: Vec<u32>,
    vocab_size: Option<u32>,
    config_sha256: Option<String>,
}

fn model_side(args: &Args) -> anyhow::Result<ModelSide> {
    let folder = match &args.model {
        Some(dir) => {
            Some(cp_model::folder_ids(dir).with_context(|| format!("--model {}", dir.display()))?)
        }
        None => None,
    };
    let config_sha256 = match &args.model {
        Some(dir) => Some(cp_records::sha256_file(&dir.join("config.json"))?),
        None => None,
    };
    // A model folder without a tokenizer (the parity checkpoints) is read for its ids alone.
    let folder_has_tokenizer = args.model.as_ref().is_some_and(|d| {
        d.join("tokenizer.json").is_file()
            || (d.join("vocab.json").is_file() && d.join("merges.txt").is_file())
    });
    let text = match (&args.model, &args.tokenizer) {
        (Some(dir), tok) if tok.is_some() || folder_has_tokenizer => Some(
            ModelText::load_with_mask_id(dir, tok.as_deref(), TemplateChoice::None, args.mask_id)?,
        ),
        (None, Some(tok)) => Some(ModelText::load_with_mask_id(
            tok,
            Some(tok),
            TemplateChoice::None,
            args.mask_id,
        )?),
        _ => None,
    };
    let mask_id = args
        .mask_id
        .or_else(|| folder.as_ref().and_then(|f| f.mask_id))
        .or_else(|| text.as_ref().map(ModelText::mask_id));
    let end_ids = match (&text, &folder) {
        (Some(t), _) => t.eot_ids().to_vec(),
        (None, Some(f)) => f
            .eos_ids
            .iter()
            .filter_map(|&i| u32::try_from(i).ok())
            .collect(),
        (None, None) => Vec::new(),
    };
    let vocab_size = args
        .vocab_size
        .or_else(|| folder.as_ref().and_then(|f| f.vocab_size))
        .or_else(|| text.as_ref().map(|t| t.tokenizer().vocab_size() as u32));
    Ok(ModelSide {
        text,
        mask_id,
        end_ids,
        vocab_size,
        config_sha256,
    })
}

fn settings(args: &Args, side: &ModelSide) -> TrajectorySettings {
    TrajectorySettings {
        mask_id: side.mask_id,
        vocab_size: side.vocab_size,
        allow_remasking: args.allow_remasking,
    }
}

/// A trajectories file read, checked and turned into decode tables, ready to be written (once,
/// or into several folders, as `run` does for a sweep).
pub struct Prepared {
    args: Args,
    generations: Vec<cp_records::Generation>,
    steps: Vec<StepRecord>,
    end_ids: Vec<u32>,
    form: &'static str,
    params: serde_json::Value,
    tokenizer: Option<String>,
    seconds: f64,
}

/// Imports `args.input` into `args.out`; every check runs before anything is written.
pub fn import(args: &Args) -> anyhow::Result<Imported> {
    prepare(args)?.write(&args.out)
}

/// Reads and checks `args.input` and builds its tables, writing nothing.
pub fn prepare(args: &Args) -> anyhow::Result<Prepared> {
    let t0 = std::time::Instant::now();
    let side = model_side(args)?;
    let trajectories = read_trajectories(&args.input, &settings(args, &side))?;
    let text = side.text.as_ref();
    warn_about_start_rows(&args.input, &trajectories);
    let mut generations = Vec::with_capacity(trajectories.items.len());
    let mut steps = Vec::new();
    for t in &trajectories.items {
        let mut g = t.generation.clone();
        if !t.text_given {
            // The same text `decode` writes.
            g.text = decode_text(text, &g.gen_ids);
        }
        let prompt_len = g.prompt_ids.len() as u32;
        steps.extend(t.commits.iter().map(|c| StepRecord {
            prompt_index: g.prompt_index,
            step: c.step,
            position: prompt_len + c.gen_index,
            distance: c.gen_index + 1,
            token_id: c.token_id,
            token: token_text(text, c.token_id),
            prob: None,
            confidence: None,
            masked_after: c.masked_after,
        }));
        generations.push(g);
    }
    let mut end_ids: Vec<u32> = if args.eos_id.is_empty() {
        side.end_ids.clone()
    } else {
        args.eos_id.clone()
    };
    if let Some(v) = side.vocab_size {
        end_ids.retain(|&i| i < v);
    }
    end_ids.sort_unstable();
    end_ids.dedup();
    if end_ids.is_empty() {
        eprintln!(
            "warning: {}: no end-of-text ids are known (give --model, --tokenizer or --eos-id); \
             `analyze` will not cut the generations at one",
            args.input.display()
        );
    }

    let name = args.name.clone().unwrap_or_else(|| stem(&args.input));
    let params = serde_json::json!({
        "schedule_spec": format!("import:{name}"),
        "format": args.format.extension(),
        "import": {
            "name": name,
            "path": args.input.display().to_string(),
            "sha256": cp_records::sha256_file(&args.input)?,
            "form": trajectories.form.name(),
            "format_version": cp_records::TRAJECTORY_VERSION,
            "mask_id": trajectories.mask_id,
            "vocab_size": side.vocab_size,
            "allow_remasking": args.allow_remasking,
            "model": args.model.as_ref().map(|m| m.display().to_string()),
            "config_sha256": side.config_sha256,
            "unknown": ["steps.prob", "steps.confidence"],
        },
    });
    Ok(Prepared {
        args: args.clone(),
        generations,
        steps,
        end_ids,
        form: trajectories.form.name(),
        params,
        tokenizer: text.map(|t| t.tokenizer().path().display().to_string()),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

impl Prepared {
    /// Writes the decode folder `out` atomically.
    pub fn write(&self, out: &Path) -> anyhow::Result<Imported> {
        let format = self.args.format;
        let staged = OutputDir::create(out)?;
        write_table(staged.path(), files::DECODE_STEPS, &self.steps, format)?;
        write_table(
            staged.path(),
            files::DECODE_GENERATIONS,
            &self.generations,
            format,
        )?;
        let mut files_written = list_files(staged.path());
        files_written.push(files::MANIFEST_JSON.into());
        files_written.sort();
        let manifest = Manifest {
            schema_version: cp_records::SCHEMA_VERSION,
            kind: "decode".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            command: std::env::args().collect(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            wall_time_s: self.seconds,
            seed: 0,
            model: None,
            tokenizer: self.tokenizer.clone(),
            prompts: None,
            libtorch_version: None,
            end_ids: Some(self.end_ids.clone()),
            shard: None,
            params: self.params.clone(),
            files: files_written,
        };
        write_json(&staged.path().join(files::MANIFEST_JSON), &manifest)?;
        let dir = staged.commit()?;
        Ok(Imported {
            dir,
            generations: self.generations.len(),
            form: self.form,
        })
    }
}

/// Histories hold the sequence after each step. A first row that commits nothing is legal (a
/// Dream step may commit nothing), but in every history at once it is more likely the
/// all-mask start recorded as a step, which adds one step to each and shifts every commit.
fn warn_about_start_rows(input: &Path, trajectories: &cp_records::Trajectories) {
    if trajectories.form != TrajectoryForm::History {
        return;
    }
    let empty_first = trajectories
        .items
        .iter()
        .filter(|t| t.generation.steps > 1 && !t.commits.iter().any(|c| c.step == 0))
        .count();
    if empty_first == trajectories.items.len() {
        eprintln!(
            "warning: {}: the first row of every history commits nothing; rows are the sequence \
             after each step, so if the first is the all-mask start, leave it out",
            input.display()
        );
    }
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into())
}
