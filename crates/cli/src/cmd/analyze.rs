//! `collapse-probe analyze`: metrics and curves from probe and decode folders.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cp_analysis::{
    analyze_folders, detect_all, write_analysis, AnalyzeSettings, Bootstrap, CollapseSettings,
    NgramIndex, TrapSettings,
};
use cp_records::{Manifest, SCHEMA_VERSION};

use crate::common::GlobalArgs;

/// Arguments of `collapse-probe analyze` (metric definitions: crates/analysis/METRICS.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A probe folder (records.parquet) or decode folder (generations.parquet); repeatable.
    #[arg(long, value_name = "DIR", required = true)]
    pub records: Vec<PathBuf>,
    /// Reference-corpus index (`collapse-probe index build`): enables the frequency and unseen n-gram metrics.
    #[arg(long, value_name = "DIR")]
    pub index: Option<PathBuf>,
    /// The tokenizer.json of the records' model, checked against the index's tokenizer hash.
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
    /// The analysis folder to write (metrics.json, curves.parquet, manifest.json).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// F: how many of the corpus's most frequent tokens count as frequent.
    #[arg(long, value_name = "F", default_value_t = 20)]
    pub top_frequent: usize,
    /// Frequent-token share from which collapse is declared (collapse.onset).
    #[arg(long, value_name = "X", default_value_t = 0.5)]
    pub onset_threshold: f64,
    /// Orders of the unseen n-gram rates.
    #[arg(
        long,
        value_name = "N,...",
        value_delimiter = ',',
        default_value = "2,3,4,5"
    )]
    pub unseen_n: Vec<usize>,
    /// End ids (end-of-text, end-of-turn, padding) instead of those each folder's manifest records: a generation's answer ends before the first one, and predictions of them are end tokens; repeatable or comma-separated.
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub eos_id: Vec<u32>,
    /// Compute the n-gram and repetition metrics over whole generations, end tokens and padding included, instead of over the answers.
    #[arg(long)]
    pub keep_eos: bool,
    /// Seed of the bootstrap.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u64,
    /// Bootstrap replicates for standard errors (0 or 1: none).
    #[arg(long, value_name = "B", default_value_t = 1000)]
    pub bootstrap: usize,
    /// Suffix every metric with its folder's label (`@label`) and name its series by it, even
    /// when a folder is the only one of its kind.
    #[arg(long)]
    pub label: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(n) = global.threads {
        cp_analysis::set_threads(n);
    }
    if !(0.0..=1.0).contains(&args.onset_threshold) {
        anyhow::bail!(
            "--onset-threshold must lie in [0, 1], got {}",
            args.onset_threshold
        );
    }
    if args.top_frequent == 0 {
        anyhow::bail!("--top-frequent must be at least 1");
    }
    let bootstrap = Bootstrap {
        replicates: args.bootstrap,
        seed: args.seed,
    };
    let settings = AnalyzeSettings {
        collapse: CollapseSettings {
            top_frequent: args.top_frequent,
            onset_threshold: args.onset_threshold,
            bootstrap,
            ..Default::default()
        },
        trap: TrapSettings {
            unseen_ns: args.unseen_n.clone(),
            cut_at_end: !args.keep_eos,
            bootstrap,
            ..Default::default()
        },
        end_ids: (!args.eos_id.is_empty()).then(|| args.eos_id.clone()),
        always_label: args.label,
    };
    let folders = detect_all(&args.records)?;
    let sha = args
        .tokenizer
        .as_deref()
        .map(cp_records::sha256_file)
        .transpose()?;
    let index = args
        .index
        .as_deref()
        .map(|dir| NgramIndex::open(dir, sha.as_deref()))
        .transpose()?;
    let output = analyze_folders(
        &folders,
        index.as_ref().map(|i| i.unigram()),
        index.as_ref(),
        &settings,
    )?;
    if !global.quiet {
        for used in &output.end_ids {
            let what = match used.source {
                "option" => "--eos-id",
                "manifest" => "its manifest",
                _ => "nowhere: its manifest records none (give --eos-id)",
            };
            let action = if args.keep_eos {
                "kept in the n-gram metrics (--keep-eos)"
            } else {
                "answers end before the first"
            };
            eprintln!(
                "analyze: {}: end ids {:?} from {what}; {action}",
                used.label, used.ids
            );
        }
        for s in &output.skipped {
            eprintln!("warning: skipped {s}");
        }
    }
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        kind: "analysis".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command: std::env::args().collect(),
        started_unix,
        wall_time_s: start.elapsed().as_secs_f64(),
        seed: args.seed,
        model: None,
        tokenizer: args.tokenizer.as_ref().map(|p| p.display().to_string()),
        prompts: None,
        libtorch_version: None,
        end_ids: None,
        shard: None,
        params: serde_json::json!({
            "records": folders.iter().map(|f| serde_json::json!({"path": f.path.display().to_string(), "label": f.label, "shards": f.shards.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(), "kinds": f.kinds.iter().map(|k| format!("{k:?}").to_lowercase()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            "index": args.index.as_ref().map(|p| p.display().to_string()),
            "index_tokenizer_sha256": index.as_ref().and_then(|i| i.header().tokenizer_sha256.clone()),
            "top_frequent": args.top_frequent,
            "onset_threshold": args.onset_threshold,
            "unseen_n": args.unseen_n,
            "rep_n": settings.trap.rep_ns,
            "distinct_n": settings.trap.distinct_ns,
            "eos_ids": args.eos_id,
            "keep_eos": args.keep_eos,
            "end_ids": output.end_ids,
            "bootstrap": args.bootstrap,
            "skipped": output.skipped,
        }),
        files: Vec::new(),
    };
    let out = write_analysis(&args.out, &output, manifest)?;
    if !global.quiet {
        eprintln!(
            "wrote {} metrics and {} curve points to {}",
            output.metrics.metrics.len(),
            output.curves.len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
