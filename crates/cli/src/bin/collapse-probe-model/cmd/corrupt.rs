//! `collapse-probe corrupt`: mask a share of every clean text under a scheme and record what
//! the model lost at each masked position (uniform corruption, uneven information loss).

use std::path::PathBuf;
use std::process::ExitCode;

use cp_model::CorruptScheme;
use cp_records::Format;

use crate::common::{GlobalArgs, ModelArgs, PromptArgs, ResumeArgs, Session, ShardArgs};
use crate::stages::{run_corrupt, CorruptStage, Part};

/// Arguments of `collapse-probe corrupt`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Clean texts, in any prompt-file format `probe` reads (one text per line, JSONL, ...).
    #[arg(long, value_name = "FILE")]
    pub texts: PathBuf,
    /// Text file format: auto, text, jsonl, alpaca, lima, chat or ids.
    #[arg(long, default_value = "auto", value_name = "FORMAT")]
    pub text_format: String,
    /// Chat template around each text: none (the default: texts are clean sequences), auto or a file.
    #[arg(long, default_value = "none", value_name = "auto|none|FILE")]
    pub chat_template: String,
    /// Encode plain texts exactly as written, without the tokenizer's special tokens.
    #[arg(long)]
    pub no_special_tokens: bool,
    /// Shares of each text's positions to mask, each in (0, 1), comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0.1,0.3,0.5,0.7,0.9",
        value_name = "R,..."
    )]
    pub ratios: Vec<f64>,
    /// Masking draws per text and ratio.
    #[arg(long, default_value_t = 4, value_name = "S")]
    pub samples: usize,
    /// Which positions a ratio masks: uniform, rare-first, frequent-first or span.
    #[arg(long, default_value = "uniform", value_name = "SCHEME")]
    pub scheme: String,
    /// The reference corpus index (`index build`, with the model's tokenizer): frequency ranks
    /// and the unigram the context gain is measured against.
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,
    /// Seed of the masking draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Predictions recorded per masked position.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top_k: usize,
    /// Masked sequences per forward pass, all of one text (its ratios x samples sequences take
    /// that many divided by N passes, rounded up).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch_size: usize,
    /// Output folder (corrupt, texts, manifest.json); written atomically.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub resume: ResumeArgs,
    /// Record format.
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    pub format: Format,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // Everything that needs no model is checked first.
    let stage = stage_of(&args)?;
    if !args.index.join("index.json").is_file() {
        anyhow::bail!(
            "--index {}: not an index folder (no index.json; build one with `collapse-probe index build`)",
            args.index.display()
        );
    }
    let prompts = PromptArgs {
        prompts: args.texts.clone(),
        prompt_format: args.text_format.clone(),
        chat_template: args.chat_template.clone(),
        no_special_tokens: args.no_special_tokens,
    };
    let session = Session::open(&args.model, &prompts, global)
        .map_err(|e| e.context(format!("--texts {}", args.texts.display())))?;
    let out = args.shard.out_dir(&args.out)?;
    let done = run_corrupt(&session, &stage, &args.index, &out, global)?;
    if !global.quiet {
        eprintln!(
            "corrupted {} texts x {} ratios x {} samples ({} scheme): {} masked positions in {:.2}s ({:.0} tokens/s) -> {}",
            session.ids.len(),
            stage.ratios.len(),
            stage.samples,
            stage.scheme,
            done.records,
            done.seconds,
            done.tokens_per_second,
            done.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stage_of(args: &Args) -> anyhow::Result<CorruptStage> {
    if args.ratios.is_empty() {
        anyhow::bail!("--ratios: give at least one ratio");
    }
    if let Some(r) = args.ratios.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
        anyhow::bail!("--ratios: {r} is outside (0, 1)");
    }
    for (i, r) in args.ratios.iter().enumerate() {
        if args.ratios[..i].contains(r) {
            anyhow::bail!("--ratios: {r} is listed twice");
        }
    }
    if args.samples == 0 {
        anyhow::bail!("--samples must be at least 1");
    }
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    if args.top_k == 0 {
        anyhow::bail!("--top-k must be at least 1");
    }
    let scheme: CorruptScheme = args
        .scheme
        .parse()
        .map_err(|e| anyhow::anyhow!("--scheme: {e}"))?;
    Ok(CorruptStage {
        ratios: args.ratios.clone(),
        samples: args.samples,
        scheme,
        seed: args.seed,
        top_k: args.top_k,
        batch_size: args.batch_size,
        format: args.format,
        part: Part {
            shard: args.shard.shard,
            restart: args.resume.restart,
            keep_batches: false,
        },
    })
}
