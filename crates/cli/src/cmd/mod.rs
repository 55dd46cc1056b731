//! One module per subcommand: its clap arguments and its `run`.

pub mod analyze;
pub mod check;
pub mod corrupt;
pub mod decode;
pub mod export;
pub mod import;
pub mod index;
pub mod probe;
pub mod report;
pub mod run;
