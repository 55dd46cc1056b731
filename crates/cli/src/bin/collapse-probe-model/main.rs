//! `collapse-probe-model`: every `collapse-probe` subcommand, including those that run a model
//! (and so link libtorch). Users run `collapse-probe`, which hands command lines here; see the
//! library's documentation for why there are two binaries.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use collapse_probe::ModelFreeCommand;

/// The subcommands: the model binary's own, then the model-free ones of the library.
mod cmd {
    pub use collapse_probe::cmd::*;

    pub mod corrupt;
    pub mod decode;
    pub mod import;
    pub mod probe;
    pub mod run;
}
mod common;
mod stages;

/// Diagnose frequency collapse and the marginal trap in masked diffusion language models.
#[derive(Debug, Parser)]
#[command(name = "collapse-probe", bin_name = "collapse-probe", version, about, long_about = None, propagate_version = true)]
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
    /// Run a probe spec (probe → decode → analyze → report) into one run folder.
    Run(cmd::run::Args),
    #[command(flatten)]
    ModelFree(ModelFreeCommand),
}

fn main() -> ExitCode {
    collapse_probe::allocator::configure();
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
        Command::Run(args) => cmd::run::run(args, &global),
        Command::ModelFree(command) => command.run(&global),
    };
    match result {
        Ok(code) => code,
        Err(err) => common::report_error(&err),
    }
}
