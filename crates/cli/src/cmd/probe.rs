//! `collapse-probe probe`: N masks after each prompt, one forward pass, top-k per position.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use cp_probe::{probe, ProbeInput, ProbeSettings};
use cp_records::{files, write_json, write_table, Format, OutputDir};

use crate::common::{list_files, GlobalArgs, ModelArgs, PromptArgs, Session};

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
    /// Record format.
    #[arg(long, value_enum, default_value_t = TableFormat::Parquet)]
    pub format: TableFormat,
}

/// On-disk format of record tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    /// Apache Parquet (zstd), list columns for top-k.
    Parquet,
    /// JSON Lines, one object per row.
    Jsonl,
}

impl From<TableFormat> for Format {
    fn from(f: TableFormat) -> Format {
        match f {
            TableFormat::Parquet => Format::Parquet,
            TableFormat::Jsonl => Format::Jsonl,
        }
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let session = Session::open(&args.model, &args.prompts, global)?;
    let unigram = match &args.unigram {
        Some(dir) => {
            let table = cp_analysis::Unigram::load(dir).with_context(|| format!("--unigram {}", dir.display()))?;
            // Add-one smoothing keeps KL to the unigram finite at tokens the corpus never shows.
            Some(table.probabilities(session.model.vocab_size() as usize, 1.0).into_iter().map(|p| p as f32).collect())
        }
        None => None,
    };
    let settings = ProbeSettings {
        masks: args.masks,
        top_k: args.top_k,
        batch_size: args.batch_size,
        eot_ids: session.eot_ids(),
        unigram,
    };
    let inputs: Vec<ProbeInput> = session
        .prompts
        .prompts
        .iter()
        .zip(&session.ids)
        .enumerate()
        .map(|(i, (p, ids))| ProbeInput { prompt_index: i as u32, prompt_id: p.id.clone(), ids: ids.clone() })
        .collect();
    settings.validate(session.model.as_ref(), &inputs)?;

    let out = OutputDir::create(&args.out)?;
    let bar = global.progress(inputs.len() as u64, "{spinner} probe {pos}/{len} prompts [{elapsed_precise}] {wide_bar} {msg}");
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let records = probe(session.model.as_ref(), &inputs, &settings, &|id| session.token_text(id), &mut |done, n| {
        tokens += n;
        bar.set_position(done as u64);
        bar.set_message(format!("{:.0} tokens/s", tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9)));
    })?;
    bar.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();

    write_table(out.path(), files::PROBE_RECORDS, &records, args.format.into())?;
    let params = serde_json::json!({
        "masks": args.masks,
        "top_k": args.top_k,
        "batch_size": args.batch_size,
        "eot_ids": settings.eot_ids,
        "unigram": args.unigram.as_ref().map(|p| p.display().to_string()),
        "format": Format::from(args.format).extension(),
        "threads": tch::get_num_threads(),
        "forward_seconds": elapsed,
        "tokens_per_second": tokens as f64 / elapsed.max(1e-9),
    });
    let mut file_list = list_files(out.path());
    file_list.push(files::MANIFEST_JSON.to_string());
    let manifest = session.manifest("probe", 0, params, file_list);
    write_json(&out.path().join(files::MANIFEST_JSON), &manifest)?;
    let dir = out.commit()?;
    if !global.quiet {
        eprintln!(
            "probed {} prompts x {} masks in {:.2}s ({:.0} tokens/s) -> {}",
            inputs.len(),
            args.masks,
            elapsed,
            tokens as f64 / elapsed.max(1e-9),
            dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
