//! `collapse-probe decode`: run a decoding schedule and record every step.

use std::path::PathBuf;
use std::process::ExitCode;

use cp_model::ScheduleSpec;
use cp_records::Format;

use crate::common::{GlobalArgs, ModelArgs, PromptArgs, ResumeArgs, Session, ShardArgs};
use crate::stages::{run_decode, DecodeStage};

/// Arguments of `collapse-probe decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// The schedule: a spec such as `llada:steps=64,gen_length=64,block_length=32`,
    /// `fastdllm:threshold=0.9`, `eb:gamma=0.1`, `pc:background=INDEX_DIR`, `klass`, `llada2`,
    /// `fixed:k=1` or `compose:score=margin,count=entropy_budget,gamma=0.5`, or a TOML file
    /// (probes/schedules/*.toml). docs/schedules.md lists every option.
    #[arg(long, value_name = "SPEC|FILE")]
    pub schedule: String,
    /// Seed of every random choice (Gumbel noise, random remasking, sampling).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Prompts per forward pass.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch_size: usize,
    /// Also keep the top-K distribution of every still-masked position at every step (large).
    #[arg(long, value_name = "K")]
    pub save_step_distributions: Option<usize>,
    /// Output folder (steps, generations, manifest.json); written atomically.
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
    // Parse the schedule before loading anything: a typo should not wait for a model.
    let schedule = ScheduleSpec::from_spec_or_file(&args.schedule)?;
    if schedule.lacks_background() {
        anyhow::bail!(
            "--schedule `{}`: option `background` is required (an index folder or a JSON file of per-id frequencies)",
            args.schedule
        );
    }
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let session = Session::open(&args.model, &args.prompts, global)?;
    let stage = DecodeStage {
        seed: args.seed,
        batch_size: args.batch_size,
        save_step_distributions: args.save_step_distributions,
        format: args.format,
        shard: args.shard.shard,
        restart: args.resume.restart,
        keep_batches: false,
    };
    let out = args.shard.out_dir(&args.out)?;
    let done = run_decode(&session, &schedule, &stage, &out, global)?;
    if !global.quiet {
        eprintln!(
            "decoded {} prompts with {schedule} in {:.2}s -> {}",
            done.generations,
            done.seconds,
            done.dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
