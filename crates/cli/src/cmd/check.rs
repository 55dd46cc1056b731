//! `collapse-probe check`: the CI gate. Compares a run's metrics with a committed baseline.
//!
//! Exit codes: 0 nothing regressed, 1 at least one metric regressed, 2 bad input
//! (unreadable or malformed files, a baseline metric missing from the run).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cp_gate::{Baseline, Comparison};
use cp_records::MetricsFile;

use crate::common::GlobalArgs;

/// Arguments of `collapse-probe check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The run to check: a folder written by `collapse-probe run` (its analysis/metrics.json, plus
    /// sweep/metrics.json when the run has a sweep),
    /// an analysis folder (its metrics.json), or a metrics.json file.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The baseline TOML file: expected value, better direction and tolerance per metric.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Also write a JUnit XML report to FILE: one test case per metric, a failure per regression.
    #[arg(long, value_name = "FILE", conflicts_with = "update_baseline")]
    pub junit: Option<PathBuf>,
    /// Rewrite the baseline's values from this run instead of failing, keeping every metric's
    /// `better` and `tolerance`. Creates the baseline from all of the run's metrics if the file does not exist.
    #[arg(long)]
    pub update_baseline: bool,
}

pub fn run(args: Args, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let metrics_path = cp_gate::find_metrics(&args.run)?;
    let mut metrics: MetricsFile = cp_records::read_json(&metrics_path)?;
    // A run folder's sweep metrics (`<metric>@<param>=<value>`) can be gated too.
    let sweep = args.run.join("sweep").join(cp_records::files::METRICS_JSON);
    if args.run.is_dir() && sweep.is_file() {
        let swept: MetricsFile = cp_records::read_json(&sweep)?;
        metrics.metrics.extend(swept.metrics);
    }
    if args.update_baseline {
        return update(&args, &metrics, &metrics_path);
    }
    let baseline = Baseline::load(&args.baseline)?;
    let comparison = cp_gate::compare(&baseline, &metrics, &metrics_path)?;
    warn_direction_mismatches(&comparison);

    let mut stdout = std::io::stdout().lock();
    stdout.write_all(cp_gate::table(&comparison).as_bytes())?;
    // GitHub reads workflow commands from stdout.
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        stdout.write_all(cp_gate::github_annotations(&comparison).as_bytes())?;
    }
    stdout.flush()?;
    if let Some(summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|s| !s.is_empty()) {
        let summary = PathBuf::from(summary);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&summary)
            .with_context(|| {
                format!(
                    "{}: cannot open $GITHUB_STEP_SUMMARY for appending",
                    summary.display()
                )
            })?;
        file.write_all(cp_gate::markdown(&comparison).as_bytes())
            .with_context(|| format!("{}: cannot append the summary", summary.display()))?;
    }
    if let Some(junit) = &args.junit {
        let xml = cp_gate::junit(&comparison);
        cp_records::atomic_write(junit, |w| w.write_all(xml.as_bytes()))?;
    }
    Ok(if comparison.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn warn_direction_mismatches(c: &Comparison) {
    for name in &c.direction_mismatches {
        eprintln!(
            "warning: `{name}`: the baseline and the run disagree on which direction is better; using the baseline's"
        );
    }
}

/// `--update-baseline`: rewrite (or create) the baseline from the run, and say so.
fn update(
    args: &Args,
    metrics: &MetricsFile,
    metrics_path: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let source = metrics_path.display().to_string();
    let mut stdout = std::io::stdout().lock();
    if args.baseline.exists() {
        let old = Baseline::load(&args.baseline)?;
        let new = old.updated_from(metrics, metrics_path, &source)?;
        // Show what the update changes; a tolerance in standard errors with none available cannot be shown,
        // but need not stop an update that only copies values.
        if let Ok(comparison) = cp_gate::compare(&old, metrics, metrics_path) {
            warn_direction_mismatches(&comparison);
            stdout.write_all(cp_gate::table(&comparison).as_bytes())?;
        }
        new.write()?;
        let left_out = metrics.metrics.len() - new.metrics.len().min(metrics.metrics.len());
        writeln!(
            stdout,
            "updated baseline {}: rewrote the values of {} metrics from {source}, keeping their `better` and `tolerance`{}",
            args.baseline.display(),
            new.metrics.len(),
            if left_out > 0 {
                format!("; {left_out} run metrics not in the baseline were not added (add them by hand to gate them)")
            } else {
                String::new()
            }
        )?;
    } else {
        let new = Baseline::from_run(&args.baseline, metrics, &source);
        if let Some(parent) = args.baseline.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("{}: cannot create folder", parent.display()))?;
        }
        new.write()?;
        writeln!(
            stdout,
            "created baseline {} with all {} metrics of {source}; tolerances default to 3 standard errors \
             (or 5% of the value where the run has no standard error): review them before committing",
            args.baseline.display(),
            new.metrics.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
