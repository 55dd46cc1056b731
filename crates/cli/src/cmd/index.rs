use std::process::ExitCode;

use crate::common::GlobalArgs;

/// `collapse-probe index` subcommands (not implemented yet).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Build an index.
    Build {},
    /// Query an index.
    Query {},
}

pub fn run(_cmd: Command, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`index` is not implemented yet")
}
