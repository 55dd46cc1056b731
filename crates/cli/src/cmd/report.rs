//! `collapse-probe report`: figures (SVG/PNG/PDF), `report.html` and `summary.md` from analysis folders.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cp_report::{
    ColumnWidth, FigureFormat, InputPaths, RankSource, ReportInputs, ReportOptions, TokenRanks,
};

use crate::common::GlobalArgs;

/// Which column widths to draw figures at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WidthArg {
    /// One column of a two-column paper (3.4 in).
    Single,
    /// Full text width of a two-column paper (7 in).
    Double,
    /// Both widths.
    Both,
}

/// Arguments of `collapse-probe report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// An analysis folder (metrics.json, curves.parquet, manifest.json); repeat to overlay runs.
    #[arg(long, required = true, value_name = "DIR")]
    pub analysis: Vec<PathBuf>,
    /// Probe folder (records.parquet) for the top-token figure and browser [default: found in the analyses' metrics.json sources].
    #[arg(long, value_name = "DIR")]
    pub probe: Option<PathBuf>,
    /// Decode folder (steps, generations) for the generated samples [default: found in the analyses' sources].
    #[arg(long, value_name = "DIR")]
    pub decode: Option<PathBuf>,
    /// Legend labels, one per --analysis, comma-separated [default: the folder names].
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub labels: Option<Vec<String>>,
    /// Index folder whose unigram table ranks tokens by corpus frequency (shading of the token views).
    #[arg(long, value_name = "DIR", conflicts_with = "token_ranks")]
    pub index: Option<PathBuf>,
    /// A token_ranks.json (ids most frequent first) [default: an analysis folder's token_ranks.json; else ranks among the predictions].
    #[arg(long, value_name = "FILE")]
    pub token_ranks: Option<PathBuf>,
    /// A sweep folder written by `collapse-probe run` (RUN/sweep): adds the metrics-against-parameter figure.
    #[arg(long, value_name = "DIR")]
    pub sweep: Option<PathBuf>,
    /// prompt_id of the prompt the top-token figure shows [default: the first prompt].
    #[arg(long, value_name = "ID")]
    pub prompt: Option<String>,
    /// Output folder (written whole at the end; files already there that the report does not write are kept).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Figure file formats, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "svg,png,pdf")]
    pub formats: Vec<FigureFormat>,
    /// Column width(s) to draw figures at.
    #[arg(long, value_enum, default_value = "both")]
    pub width: WidthArg,
    /// Resolution of PNG figures.
    #[arg(long, default_value_t = 300.0, value_name = "DPI")]
    pub dpi: f32,
    /// Title of the page and the summary.
    #[arg(long, default_value = "collapse-probe report")]
    pub title: String,
    /// Prompts embedded in the page's prediction browser.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_prompts: usize,
    /// Generations shown in the page's samples section.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub max_samples: usize,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let out = render(args, global)?;
    println!("{}", out.html.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads the inputs and writes the report; `run` without printing the page's path.
pub fn render(args: Args, global: &GlobalArgs) -> anyhow::Result<cp_report::ReportOutput> {
    let mut inputs = ReportInputs::load(&InputPaths {
        analysis: args.analysis.clone(),
        labels: args.labels.clone(),
        probe: args.probe.clone(),
        decode: args.decode.clone(),
        token_ranks: args.token_ranks.clone(),
        sweep: args.sweep.clone(),
    })?;
    if let Some(index) = &args.index {
        let unigram = cp_analysis::Unigram::load(index)
            .with_context(|| format!("reading the unigram table of index {}", index.display()))?;
        inputs.token_ranks = Some(TokenRanks::from_counts(
            RankSource::Corpus(index.display().to_string()),
            unigram.counts(),
        ));
    }
    let mut formats = args.formats.clone();
    formats.dedup();
    let widths = match args.width {
        WidthArg::Single => vec![ColumnWidth::Single],
        WidthArg::Double => vec![ColumnWidth::Double],
        WidthArg::Both => vec![ColumnWidth::Single, ColumnWidth::Double],
    };
    let opts = ReportOptions {
        formats,
        widths,
        png_dpi: args.dpi,
        prompt: args.prompt.clone(),
        title: args.title.clone(),
        max_browser_prompts: args.max_prompts,
        max_samples: args.max_samples,
        command: std::env::args().collect(),
    };
    let out = cp_report::render_report(&inputs, &args.out, &opts)?;
    if !global.quiet {
        eprintln!(
            "wrote {} figure files, {} and {}",
            out.figures.iter().map(|f| f.files.len()).sum::<usize>(),
            out.summary.display(),
            out.html.display()
        );
    }
    Ok(out)
}
