//! Trajectories decoded elsewhere: the interchange format (collapse-probe trajectories,
//! version 1; docs/trajectories.md) read into [`Generation`]s and their commits, and
//! written back from a decode folder's generations.
//!
//! A line is validated field by field (from a `serde_json::Value`, not a derived struct) so
//! that every error names the line and the field at fault; Parquet rows go through the same
//! checks after conversion to the same JSON objects.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::io::atomic_write;
use crate::schema::Generation;

mod commits;
mod fields;
mod history;
mod input;

use fields::{line_form, parse_line};
use input::{jsonl_objects, parquet_objects};

/// The format version this build reads and writes.
pub const TRAJECTORY_VERSION: u64 = 1;

/// Fields a line may hold; anything else is an error (a misspelt field must not pass).
const FIELDS: &[&str] = &[
    "version",
    "prompt_index",
    "prompt_id",
    "prompt_ids",
    "gen_ids",
    "commit_step",
    "steps",
    "remask_count",
    "history",
    "mask_id",
    "text",
];

/// How a file writes its generations; one file holds one form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrajectoryForm {
    /// `gen_ids` + `commit_step` + `steps`.
    Commits,
    /// `history`: the full sequence after every step.
    History,
}

impl TrajectoryForm {
    pub fn name(self) -> &'static str {
        match self {
            TrajectoryForm::Commits => "commits",
            TrajectoryForm::History => "history",
        }
    }
}

/// What the importer knows beyond the file.
#[derive(Debug, Clone, Default)]
pub struct TrajectorySettings {
    /// The mask id (`--mask-id`, or the model's); a line's `mask_id` must agree with it.
    pub mask_id: Option<u32>,
    /// Ids must be below this (the mask id excepted); unchecked when absent.
    pub vocab_size: Option<u32>,
    /// Accept positions that lose a committed token (ReMDM-style samplers).
    pub allow_remasking: bool,
}

/// One position written at one step (a remasked position is written more than once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Commit {
    pub step: u32,
    /// 0-based index among the generated positions.
    pub gen_index: u32,
    pub token_id: u32,
    /// Generated positions still masked after this step.
    pub masked_after: u32,
}

/// One imported generation. `generation.text` is empty when the line gave none
/// (`text_given` false): the caller decodes it with its tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub generation: Generation,
    pub text_given: bool,
    pub commits: Vec<Commit>,
}

/// A whole imported file.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectories {
    pub form: TrajectoryForm,
    /// The mask id used for histories and checks (absent: commit form, none given).
    pub mask_id: Option<u32>,
    pub items: Vec<Trajectory>,
}

/// Where in the input an error is: `line 3` of a JSON Lines file, `row 2` of a Parquet file.
#[derive(Debug, Clone, Copy)]
struct At {
    parquet: bool,
    number: usize,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.parquet {
            false => write!(f, "line {}", self.number),
            true => write!(f, "row {}", self.number),
        }
    }
}

struct LineError {
    field: Option<String>,
    message: String,
}

fn field_err(field: &str, message: impl Into<String>) -> LineError {
    LineError {
        field: Some(field.to_owned()),
        message: message.into(),
    }
}

/// Reads a trajectories file (`.parquet`, else JSON Lines).
pub fn read_trajectories(
    path: &Path,
    settings: &TrajectorySettings,
) -> Result<Trajectories, Error> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let objects = if is_parquet {
        parquet_objects(path)?
    } else {
        jsonl_objects(path)?
    };
    if objects.is_empty() {
        return Err(Error::Invalid {
            path: path.to_owned(),
            message: "holds no generations".into(),
        });
    }
    let mut form: Option<(TrajectoryForm, usize)> = None;
    let mut mask_id = settings.mask_id;
    let mut items = Vec::with_capacity(objects.len());
    let mut seen_index = std::collections::HashMap::new();
    for (k, (number, object)) in objects.into_iter().enumerate() {
        let at = At {
            parquet: is_parquet,
            number,
        };
        let fail = |e: LineError| Error::Trajectory {
            path: path.to_owned(),
            at: at.to_string(),
            field: e.field,
            message: e.message,
        };
        let this_form = line_form(&object).map_err(fail)?;
        match form {
            None => form = Some((this_form, number)),
            Some((f, first)) if f != this_form => {
                let what = if is_parquet { "row" } else { "line" };
                return Err(fail(field_err(
                    match this_form {
                        TrajectoryForm::History => "history",
                        TrajectoryForm::Commits => "gen_ids",
                    },
                    format!(
                        "this {what} has the {} form but {what} {first} has the {} form; one file holds one form",
                        this_form.name(),
                        f.name()
                    ),
                )));
            }
            Some(_) => {}
        }
        let item = parse_line(&object, this_form, k, &mut mask_id, settings).map_err(fail)?;
        if let Some(earlier) = seen_index.insert(item.generation.prompt_index, number) {
            return Err(fail(field_err(
                "prompt_index",
                format!(
                    "{} was already used at {}",
                    item.generation.prompt_index,
                    At {
                        parquet: is_parquet,
                        number: earlier
                    }
                ),
            )));
        }
        items.push(item);
    }
    Ok(Trajectories {
        form: form.expect("at least one line").0,
        mask_id,
        items,
    })
}

/// Writes generations in the commit form (JSON Lines), atomically.
pub fn write_trajectories(path: &Path, generations: &[Generation]) -> Result<(), Error> {
    atomic_write(path, |w| {
        for g in generations {
            let mut line = Map::new();
            line.insert("version".into(), TRAJECTORY_VERSION.into());
            line.insert("prompt_index".into(), g.prompt_index.into());
            line.insert("prompt_id".into(), g.prompt_id.clone().into());
            line.insert("prompt_ids".into(), g.prompt_ids.clone().into());
            line.insert("gen_ids".into(), g.gen_ids.clone().into());
            line.insert("commit_step".into(), g.commit_step.clone().into());
            line.insert("steps".into(), g.steps.into());
            if let Some(r) = &g.remask_count {
                line.insert("remask_count".into(), r.clone().into());
            }
            line.insert("text".into(), g.text.clone().into());
            serde_json::to_writer(&mut *w, &Value::Object(line)).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}
