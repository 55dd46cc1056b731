//! `collapse-probe probe`: N masks after each prompt, one forward pass, top-k per position.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cp_model::ProbeSettings;
use cp_records::Format;

use crate::common::{GlobalArgs, ModelArgs, PromptArgs, ResumeArgs, Session, ShardArgs};
use crate::stages::{run_probe, unigram_probabilities, Part};

/// Arguments of `collapse-probe probe`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// Number of mask tokens appended to every prompt.
    #[arg(long, default_value_t = 128, value_name = "N")]
    pub masks: usize,
    /// Number of top predictions recorded per mask position.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub top_k: usize,
    /// Prompts per forward pass (left-padded; results equal unbatched runs).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch_size: usize,
    /// An n-gram index folder (`collapse-probe index build`): its unigram table adds KL and
    /// cross-entropy to the corpus unigram and the JS divergence between adjacent positions.
    #[arg(long, value_name = "DIR")]
    pub unigram: Option<PathBuf>,
    /// Output folder (records.parquet and manifest.json); written atomically.
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
    let session = Session::open(&args.model, &args.prompts, global)?;
    let unigram = args
        .unigram
        .as_deref()
        .map(|dir| unigram_probabilities(&session, dir))
        .transpose()
        .context("--unigram")?;
    let settings = ProbeSettings {
        masks: args.masks,
        top_k: args.top_k,
        batch_size: args.batch_size,
        eot_ids: session.eot_ids(),
        unigram,
    };
    let done = run_probe(
        &session,
        &settings,
        args.unigram.as_deref(),
        args.format,
        &args.shard.out_dir(&args.out)?,
        Part {
            shard: args.shard.shard,
            restart: args.resume.restart,
            keep_batches: false,
        },
        global,
    )?;
    if !global.quiet {
        eprintln!(
            "probed {} prompts x {} masks in {:.2}s ({:.0} tokens/s) -> {}",
            done.prompts,
            args.masks,
            done.seconds,
            done.tokens_per_second,
            done.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
