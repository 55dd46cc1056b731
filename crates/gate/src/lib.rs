//! Probe specs and the CI regression gate of collapse-probe. Never links libtorch.
//!
//! - [`Spec`] is a probe spec (`probes/*.toml`): the model, prompts, probe settings, decoding
//!   schedules, reference corpus, metric and report options, and at most one sweep, with every
//!   relative path resolved against the spec file. `collapse-probe run` executes one.
//! - [`Baseline`] is a committed baseline file: expected metric values, each with the direction that is
//!   better and a tolerance ([`Tolerance::Abs`], [`Tolerance::Rel`] or [`Tolerance::Stderr`]).
//! - [`compare`] checks a run's [`cp_records::MetricsFile`] against a baseline and gives a
//!   [`Comparison`] with one [`Verdict`] per metric; [`table`], [`markdown`], [`github_annotations`]
//!   and [`junit`] render it for a terminal, `$GITHUB_STEP_SUMMARY`, workflow commands and CI test reports.
//!
//! ```no_run
//! use std::path::Path;
//! use cp_gate::{compare, find_metrics, Baseline};
//! let baseline = Baseline::load(Path::new("probes/baselines/toy-trap.toml"))?;
//! let metrics_path = find_metrics(Path::new("runs/toy-trap"))?;
//! let metrics = cp_records::read_json(&metrics_path)?;
//! let comparison = compare(&baseline, &metrics, &metrics_path)?;
//! print!("{}", cp_gate::table(&comparison));
//! std::process::exit(if comparison.passed() { 0 } else { 1 });
//! # Ok::<(), cp_gate::GateError>(())
//! ```

mod baseline;
mod compare;
mod error;
mod render;
mod spec;
mod sweep;

pub use crate::baseline::{Baseline, BaselineMetric, Tolerance, BASELINE_SCHEMA_VERSION};
pub use crate::compare::{compare, find_metrics, Comparison, Row, Verdict};
pub use crate::error::GateError;
pub use crate::render::{github_annotations, junit, markdown, summary_line, table};
pub use crate::spec::{
    CorruptSpec, MetricsSpec, ModelSpec, ProbeSpec, PromptsSpec, ReferenceSpec, ReportSpec,
    ScheduleSection, ScheduleSource, Spec, CORRUPT_SCHEMES,
};
pub use crate::sweep::{SweepParam, SweepSpec};
