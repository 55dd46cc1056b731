//! The half of `collapse-probe` that never runs a model: the subcommands that read and write
//! records, indexes, reports and verdicts, and what every subcommand shares.
//!
//! Two binaries are built from this package. `collapse-probe`, the one users run, links no
//! libtorch: it runs these subcommands itself and hands every other command line, unchanged,
//! to `collapse-probe-model` beside it (the same process, by `exec`), which links libtorch and
//! knows every subcommand. Loading libtorch takes a third of a second, which a user of
//! `analyze`, `report`, `check` or `index` would otherwise wait for on every call.

use std::process::ExitCode;

use clap::Subcommand;

pub mod allocator;
pub mod cmd;
pub mod common;

use common::GlobalArgs;

/// The subcommands that never run a model.
#[derive(Debug, Subcommand)]
pub enum ModelFreeCommand {
    /// Write a decode folder's generations as trajectories (JSON Lines or Parquet).
    Export(cmd::export::Args),
    /// Build or query a reference-corpus n-gram index.
    #[command(subcommand)]
    Index(cmd::index::Command),
    /// Turn probe records and decode trajectories into metrics and curves.
    Analyze(cmd::analyze::Args),
    /// Render figures and a self-contained HTML report from analysis folders.
    Report(cmd::report::Args),
    /// Compare a run's metrics with a baseline; exit 1 on regression.
    Check(cmd::check::Args),
}

impl ModelFreeCommand {
    /// Runs the subcommand.
    pub fn run(self, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
        match self {
            ModelFreeCommand::Export(args) => cmd::export::run(args, global),
            ModelFreeCommand::Index(args) => cmd::index::run(args, global),
            ModelFreeCommand::Analyze(args) => cmd::analyze::run(args, global),
            ModelFreeCommand::Report(args) => cmd::report::run(args, global),
            ModelFreeCommand::Check(args) => cmd::check::run(args, global),
        }
    }

    /// Whether `name` is one of these subcommands.
    pub fn has(name: &str) -> bool {
        use clap::Subcommand as _;
        ModelFreeCommand::has_subcommand(name)
    }
}

/// The binary that runs models, installed beside `collapse-probe`.
pub const MODEL_BINARY: &str = "collapse-probe-model";
