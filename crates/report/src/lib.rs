//! Paper-quality figures and a self-contained HTML report from collapse-probe analysis and record folders.
//!
//! The report reads what the analysis wrote ([`cp_records::MetricsFile`], long-form
//! [`cp_records::CurvePoint`]s) and, when given, the probe's [`cp_records::ProbeRecord`]s and the
//! decoder's [`cp_records::StepRecord`]s / [`cp_records::Generation`]s, and writes:
//!
//! - `figures/{name}_{single,double}.{svg,png,pdf}`: entropy vs distance, frequent-token share with the
//!   collapse onset, the paper's top-3-tokens-by-position view, KL-to-unigram and adjacent-position JS,
//!   unseen n-gram rate vs tokens per step, same-step vs different-step unseen bigrams, a sweep's
//!   metrics against the swept parameter, and for corrupt folders the NLL heat map by frequency
//!   decile and masked ratio, the loss concentration on rare positions and the context gain by
//!   distance — each only when its data is there;
//! - `report.html`: one file, no network (inline SVG, CSS and JS): manifests, the metrics table, the
//!   figures, an "Information loss" section when a corrupt folder was analysed, a per-prompt browser of
//!   top-k predictions, generated samples with same-step pairs marked;
//! - `summary.md`: the metrics tables in Markdown;
//! - `manifest.json` (kind `report`).
//!
//! Figures are drawn with plotters' SVG backend, in one embedded font (DejaVu Sans) and the Okabe–Ito
//! palette, and converted with resvg (PNG) and svg2pdf (PDF, font subset embedded); nothing depends on
//! the fonts of the machine. **Invariant:** this crate never links libtorch.
//!
//! ```no_run
//! use cp_report::{render_report, InputPaths, ReportInputs, ReportOptions};
//! let inputs = ReportInputs::load(&InputPaths {
//!     analysis: vec!["runs/demo/analysis".into()],
//!     ..InputPaths::default()
//! })?;
//! let out = render_report(&inputs, "runs/demo/report".as_ref(), &ReportOptions::default())?;
//! println!("{}", out.html.display());
//! # Ok::<(), cp_report::ReportError>(())
//! ```

mod corrupt_figures;
mod error;
mod figures;
mod findings;
mod html;
mod information_loss;
mod inputs;
mod markdown;
mod render;
mod style;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cp_records::{write_json, Manifest, OutputDir, SCHEMA_VERSION};
use serde::Serialize;

pub use crate::error::ReportError;
pub use crate::figures::{
    build_figures, collapse_onset, curves, grid_columns, same_vs_cross, Figure, ONSET_SHARE,
};
pub use crate::html::{escape as escape_html, same_step_runs};
pub use crate::inputs::{
    load_decode, load_probe, split_metric_name, DecodeData, InputPaths, ProbeData, RankSource,
    ReportInputs, RunData, SweepData, TokenRanks, TokenRanksFile, TOKEN_RANKS_JSON,
};
pub use crate::markdown::summary_markdown;
pub use crate::style::{display_token, ColumnWidth, PALETTE};

pub use cp_records::FigureFormat;

/// How to render a report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportOptions {
    /// Formats of every figure file (the HTML page inlines the SVG whatever is chosen).
    pub formats: Vec<FigureFormat>,
    /// Widths to draw every figure at.
    pub widths: Vec<ColumnWidth>,
    /// Resolution of PNG figures.
    pub png_dpi: f32,
    /// `prompt_id` of the prompt the top-tokens figure shows (default: the first prompt).
    pub prompt: Option<String>,
    /// Page and summary title.
    pub title: String,
    /// Prompts embedded in the page's prediction browser (the page stays small for big probes).
    pub max_browser_prompts: usize,
    /// Generations shown in the samples section.
    pub max_samples: usize,
    /// The command line, recorded in the report's manifest.
    pub command: Vec<String>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            formats: vec![FigureFormat::Svg, FigureFormat::Png, FigureFormat::Pdf],
            widths: vec![ColumnWidth::Single, ColumnWidth::Double],
            png_dpi: 300.0,
            prompt: None,
            title: "collapse-probe report".into(),
            max_browser_prompts: 200,
            max_samples: 50,
            command: Vec::new(),
        }
    }
}

/// One figure's files.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureFiles {
    pub name: String,
    pub width: ColumnWidth,
    /// Paths in the final report folder, in the order of [`ReportOptions::formats`].
    pub files: Vec<PathBuf>,
}

/// What [`render_report`] wrote.
#[derive(Debug, Clone)]
pub struct ReportOutput {
    /// The report folder.
    pub dir: PathBuf,
    pub html: PathBuf,
    pub summary: PathBuf,
    pub manifest: PathBuf,
    pub figures: Vec<FigureFiles>,
}

/// Names of the files a report folder holds.
pub mod files {
    pub const REPORT_HTML: &str = "report.html";
    pub const SUMMARY_MD: &str = "summary.md";
    pub const FIGURES_DIR: &str = "figures";
}

/// Writes the figure files of `figure` into `dir` and returns their file names.
pub fn write_figure(
    figure: &Figure,
    dir: &Path,
    formats: &[FigureFormat],
    png_dpi: f32,
) -> Result<Vec<String>, ReportError> {
    let tree = if formats.iter().any(|f| *f != FigureFormat::Svg) {
        Some(render::parse_svg(&figure.name, &figure.svg)?)
    } else {
        None
    };
    let mut names = Vec::new();
    for &format in formats {
        let name = format!(
            "{}_{}.{}",
            figure.name,
            figure.width.name(),
            format.extension()
        );
        let bytes = match format {
            FigureFormat::Svg => figure.svg.clone().into_bytes(),
            FigureFormat::Png => {
                render::to_png(&figure.name, tree.as_ref().expect("parsed"), png_dpi)?
            }
            FigureFormat::Pdf => render::to_pdf(&figure.name, tree.as_ref().expect("parsed"))?,
        };
        let path = dir.join(&name);
        std::fs::write(&path, bytes).map_err(|e| ReportError::io(&path, e))?;
        names.push(name);
    }
    Ok(names)
}

/// Renders the figures, `report.html`, `summary.md` and `manifest.json` into `out`.
///
/// The folder is staged and moved into place at the end ([`OutputDir`]), so an error leaves no
/// partial report; files of an existing `out` that the report does not write are left alone.
pub fn render_report(
    inputs: &ReportInputs,
    out: &Path,
    opts: &ReportOptions,
) -> Result<ReportOutput, ReportError> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if inputs.runs.is_empty() && inputs.probe.is_none() && inputs.decode.is_none() {
        return Err(ReportError::Options(
            "nothing to report: no analysis, probe or decode folder".into(),
        ));
    }
    if opts.widths.is_empty() {
        return Err(ReportError::Options("no figure width chosen".into()));
    }
    if !(opts.png_dpi.is_finite() && opts.png_dpi >= 10.0 && opts.png_dpi <= 2400.0) {
        return Err(ReportError::Options(format!(
            "png dpi {} is outside 10–2400",
            opts.png_dpi
        )));
    }
    let ranks = inputs.effective_ranks();
    let figures = build_figures(inputs, ranks.as_ref(), opts.prompt.as_deref(), &opts.widths)?;

    let staged = OutputDir::create(out)?;
    let fig_dir = staged.path().join(files::FIGURES_DIR);
    std::fs::create_dir_all(&fig_dir).map_err(|e| ReportError::io(&fig_dir, e))?;
    let mut written = Vec::new();
    let mut by_name: HashMap<String, Vec<String>> = HashMap::new();
    let mut all_files = Vec::new();
    for figure in &figures {
        let names = write_figure(figure, &fig_dir, &opts.formats, opts.png_dpi)?;
        let rel: Vec<String> = names
            .iter()
            .map(|n| format!("{}/{n}", files::FIGURES_DIR))
            .collect();
        by_name
            .entry(figure.name.clone())
            .or_default()
            .extend(rel.iter().cloned());
        all_files.extend(rel.iter().cloned());
        written.push(FigureFiles {
            name: figure.name.clone(),
            width: figure.width,
            files: rel.iter().map(|r| out.join(r)).collect(),
        });
    }

    let tool_version = env!("CARGO_PKG_VERSION");
    let page = html::report_html(
        inputs,
        &html::PageParts {
            title: &opts.title,
            figures: &figures,
            files: &by_name,
            ranks: ranks.as_ref(),
            max_prompts: opts.max_browser_prompts,
            max_samples: opts.max_samples,
            tool_version,
        },
    );
    let html_path = staged.path().join(files::REPORT_HTML);
    std::fs::write(&html_path, page).map_err(|e| ReportError::io(&html_path, e))?;
    let summary = summary_markdown(inputs, &opts.title, &all_files);
    let summary_path = staged.path().join(files::SUMMARY_MD);
    std::fs::write(&summary_path, summary).map_err(|e| ReportError::io(&summary_path, e))?;

    let mut listed = vec![files::REPORT_HTML.to_owned(), files::SUMMARY_MD.to_owned()];
    listed.extend(all_files);
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        kind: "report".into(),
        tool_version: tool_version.into(),
        command: opts.command.clone(),
        started_unix,
        wall_time_s: started.elapsed().as_secs_f64(),
        // The report makes no random choice.
        seed: 0,
        model: inputs
            .runs
            .iter()
            .find_map(|r| r.manifest.as_ref().and_then(|m| m.model.clone())),
        tokenizer: None,
        prompts: inputs
            .runs
            .iter()
            .find_map(|r| r.manifest.as_ref().and_then(|m| m.prompts.clone())),
        libtorch_version: None,
        end_ids: inputs.end_ids(),
        shard: None,
        params: serde_json::json!({
            "options": opts,
            "analysis": inputs.runs.iter().map(|r| serde_json::json!({
                "label": r.label,
                "dir": r.dir.as_ref().map(|d| d.display().to_string()),
            })).collect::<Vec<_>>(),
            "probe": inputs.probe.as_ref().and_then(|p| p.dir.as_ref()).map(|d| d.display().to_string()),
            "decode": inputs.decode.as_ref().and_then(|d| d.dir.as_ref()).map(|d| d.display().to_string()),
            "sweep": inputs.sweep.as_ref().and_then(|s| s.dir.as_ref()).map(|d| d.display().to_string()),
            "token_ranks": ranks.as_ref().map(|r| &r.source),
        }),
        files: listed,
    };
    write_json(
        &staged.path().join(cp_records::files::MANIFEST_JSON),
        &manifest,
    )?;
    let dir = staged.commit()?;
    Ok(ReportOutput {
        html: dir.join(files::REPORT_HTML),
        summary: dir.join(files::SUMMARY_MD),
        manifest: dir.join(cp_records::files::MANIFEST_JSON),
        dir,
        figures: written,
    })
}
