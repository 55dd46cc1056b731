//! `collapse-probe export`: a decode folder's generations in the trajectories format
//! (docs/trajectories.md), so that `import` of the result gives the folder back.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cp_records::{files, read_table, write_table, write_trajectories, Format, Generation};

use crate::common::GlobalArgs;

/// Arguments of `collapse-probe export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A decode folder (written by `decode`, `import` or `run` under `decode/<name>`).
    #[arg(value_name = "DECODE_DIR")]
    pub decode: PathBuf,
    /// The file to write: JSON Lines (commit form), or Parquet when it ends in `.parquet`.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let table = Format::find(&args.decode, files::DECODE_GENERATIONS)
        .with_context(|| format!("{}: not a decode folder", args.decode.display()))?;
    let mut generations: Vec<Generation> = read_table(&table)?;
    generations.sort_by_key(|g| g.prompt_index);
    let parquet = args
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if parquet {
        let (Some(dir), Some(stem)) = (args.out.parent(), args.out.file_stem()) else {
            anyhow::bail!("--out {}: not a file path", args.out.display());
        };
        let dir = if dir.as_os_str().is_empty() {
            std::path::Path::new(".")
        } else {
            dir
        };
        write_table(dir, &stem.to_string_lossy(), &generations, Format::Parquet)?;
    } else {
        write_trajectories(&args.out, &generations)?;
    }
    if !global.quiet {
        eprintln!(
            "exported {} generations -> {}",
            generations.len(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
