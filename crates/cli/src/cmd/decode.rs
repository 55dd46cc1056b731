//! `collapse-probe decode`: run a decoding schedule and record every step.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cp_probe::{decode, DecodeOptions, DecodeProgress, Schedule};
use cp_records::{files, write_json, write_table, Format, OutputDir};

use crate::cmd::probe::TableFormat;
use crate::common::{list_files, GlobalArgs, ModelArgs, PromptArgs, Session};

/// Arguments of `collapse-probe decode`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub prompts: PromptArgs,
    /// The schedule: a spec such as `llada:steps=64,gen_length=64,block_length=32` or
    /// `fixed:k=1`, or a TOML file (probes/schedules/*.toml). See the README for every option.
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
    /// Record format.
    #[arg(long, value_enum, default_value_t = TableFormat::Parquet)]
    pub format: TableFormat,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // Parse the schedule before loading anything: a typo should not wait for a model.
    let schedule = Schedule::from_spec_or_file(&args.schedule)?;
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let session = Session::open(&args.model, &args.prompts, global)?;
    let out = OutputDir::create(&args.out)?;
    let eot_ids: Vec<i64> = session.eot_ids().into_iter().map(i64::from).collect();
    let bar = global.progress(session.ids.len() as u64, "{spinner} decode {pos}/{len} prompts [{elapsed_precise}] {wide_bar} {msg}");
    let progress = |p: &DecodeProgress| {
        bar.set_position(p.prompts_done as u64);
    };
    let opts = DecodeOptions {
        seed: args.seed,
        batch_size: args.batch_size,
        eot_ids,
        save_step_distributions: args.save_step_distributions,
        progress: Some(&progress),
    };
    let t0 = Instant::now();
    let output = decode(session.model.as_ref(), &session.ids, &schedule, &opts)?;
    bar.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();

    let format: Format = args.format.into();
    let ids: Vec<String> = session.prompts.prompts.iter().map(|p| p.id.clone()).collect();
    write_table(out.path(), files::DECODE_STEPS, &output.step_records(&|id| session.token_text(id)), format)?;
    let generations = output.generations(&ids, &|g| session.decode_text(g));
    write_table(out.path(), files::DECODE_GENERATIONS, &generations, format)?;
    if args.save_step_distributions.is_some() {
        write_table(out.path(), files::DECODE_STEP_DISTRIBUTIONS, &output.step_distributions(), format)?;
    }
    let params = serde_json::json!({
        "schedule": schedule,
        "schedule_spec": schedule.to_string(),
        "batch_size": args.batch_size,
        "save_step_distributions": args.save_step_distributions,
        "format": format.extension(),
        "threads": tch::get_num_threads(),
        "decode_seconds": elapsed,
    });
    let mut file_list = list_files(out.path());
    file_list.push(files::MANIFEST_JSON.to_string());
    let manifest = session.manifest("decode", args.seed, params, file_list);
    write_json(&out.path().join(files::MANIFEST_JSON), &manifest)?;
    let dir = out.commit()?;
    if !global.quiet {
        eprintln!("decoded {} prompts with {schedule} in {elapsed:.2}s -> {}", generations.len(), dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
