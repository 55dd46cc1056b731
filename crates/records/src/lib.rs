//! Record types, on-disk schemas and file I/O shared by every collapse-probe crate.
//!
//! This crate is the contract between the stages of the pipeline:
//! the probe writes [`ProbeRecord`]s, the decoder writes [`StepRecord`]s and
//! [`Generation`]s, the analysis reads both and writes a [`MetricsFile`] and
//! [`CurvePoint`]s, and the report reads everything. It never links libtorch.
//!
//! Every table is written as Parquet (or JSON Lines) through [`write_table`] and
//! read back through [`read_table`]; every run folder holds a [`Manifest`].
//! Output folders are staged and renamed into place by [`OutputDir`], so a
//! failed run never leaves half-written files behind.
//!
//! ```no_run
//! use cp_records::{read_table, ProbeRecord};
//! let rows: Vec<ProbeRecord> = read_table("reports/demo/probe/records.parquet".as_ref())?;
//! println!("{} positions", rows.len());
//! # Ok::<(), cp_records::Error>(())
//! ```

mod choices;
mod error;
mod io;
mod manifest;
mod metrics;
mod resume;
mod schema;
mod shard;
mod trajectory;

pub use crate::choices::{DTypeChoice, DocSplit, FigureFormat, SweepParam};
pub use crate::error::Error;
pub use crate::io::{
    atomic_write, read_json, read_table, sha256_file, write_json, write_table, Format, OutputDir,
    Table,
};
pub use crate::manifest::{Manifest, ModelInfo, PromptsInfo};
pub use crate::metrics::{Better, CurvePoint, Metric, MetricsFile, PromptMetric};
pub use crate::resume::Checkpoint;
pub use crate::schema::{
    CorruptRecord, CorruptText, Generation, ProbeRecord, StepDistribution, StepRecord,
};
pub use crate::shard::{shard_folders, Shard, ShardInfo};
pub use crate::trajectory::{
    read_trajectories, write_trajectories, Commit, Trajectories, Trajectory, TrajectoryForm,
    TrajectorySettings, TRAJECTORY_VERSION,
};

/// The version of the on-disk schema; bumped whenever a column changes meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// File names inside a run folder, shared by writers and readers.
pub mod files {
    /// Probe output: one row per (prompt, mask position).
    pub const PROBE_RECORDS: &str = "records";
    /// Decode output: one row per committed position.
    pub const DECODE_STEPS: &str = "steps";
    /// Decode output: one row per prompt with the final sequence.
    pub const DECODE_GENERATIONS: &str = "generations";
    /// Decode output (optional): top-K distributions of still-masked positions at every step.
    pub const DECODE_STEP_DISTRIBUTIONS: &str = "step_distributions";
    /// Corrupt output: one row per masked position of every corrupted text.
    pub const CORRUPT_RECORDS: &str = "corrupt";
    /// Corrupt output: the clean texts as the model saw them.
    pub const CORRUPT_TEXTS: &str = "texts";
    /// Analysis output: curves in long form.
    pub const CURVES: &str = "curves";
    /// Per-prompt metrics of an analysis (`PromptMetric` rows).
    pub const PER_PROMPT: &str = "per_prompt";
    /// Analysis output: headline metrics.
    pub const METRICS_JSON: &str = "metrics.json";
    /// Every run folder: how the run was made.
    pub const MANIFEST_JSON: &str = "manifest.json";
}
