//! One module per subcommand that never runs a model: its clap arguments and its `run`.

pub mod analyze;
pub mod check;
pub mod export;
pub mod index;
pub mod report;
