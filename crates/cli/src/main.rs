//! `collapse-probe`: frequency-collapse and marginal-trap diagnostics for masked diffusion LMs.
//!
//! This binary only parses arguments, shows progress and maps errors to exit codes;
//! the work happens in the library crates (see ARCHITECTURE.md).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod common;
mod stages;

/// Diagnose frequency collapse and the marginal trap in masked diffusion language models.
#[derive(Debug, Parser)]
#[command(name = "collapse-probe", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append N masks to each prompt and record the top-k predictions at every mask position.
    Probe(cmd::probe::Args),
    /// Mask a share of every clean text under a scheme and record what the model lost at each
    /// masked position (information loss by token frequency, ratio and context).
    Corrupt(cmd::corrupt::Args),
    /// Run a decoding schedule and record the full trajectory.
    Decode(cmd::decode::Args),
    /// Turn trajectories decoded by another program (JSON Lines or Parquet) into a decode folder.
    Import(cmd::import::Args),
    /// Write a decode folder's generations as trajectories (JSON Lines or Parquet).
    Export(cmd::export::Args),
    /// Build or query a reference-corpus n-gram index.
    #[command(subcommand)]
    Index(cmd::index::Command),
    /// Turn probe records and decode trajectories into metrics and curves.
    Analyze(cmd::analyze::Args),
    /// Render figures and a self-contained HTML report from analysis folders.
    Report(cmd::report::Args),
    /// Run a probe spec (probe → decode → analyze → report) into one run folder.
    Run(cmd::run::Args),
    /// Compare a run's metrics with a baseline; exit 1 on regression.
    Check(cmd::check::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, usage errors with exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let global = cli.global.clone();
    let result = match cli.command {
        Command::Probe(args) => cmd::probe::run(args, &global),
        Command::Decode(args) => cmd::decode::run(args, &global),
        Command::Corrupt(args) => cmd::corrupt::run(args, &global),
        Command::Import(args) => cmd::import::run(args, &global),
        Command::Export(args) => cmd::export::run(args, &global),
        Command::Index(args) => cmd::index::run(args, &global),
        Command::Analyze(args) => cmd::analyze::run(args, &global),
        Command::Report(args) => cmd::report::run(args, &global),
        Command::Run(args) => cmd::run::run(args, &global),
        Command::Check(args) => cmd::check::run(args, &global),
    };
    match result {
        Ok(code) => code,
        Err(err) => common::report_error(&err),
    }
}
