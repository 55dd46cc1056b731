//! PC-Sampler's background frequencies: from an index folder's counts, as upstream builds its
//! table, or from a JSON file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde::{Serialize, Serializer};

use crate::error::ProbeError;

const MISSING: &str = "option `background` is required: an index folder (its unigram counts) or \
     a JSON file of per-id frequencies (collapse-probe run uses the spec's reference index)";

/// PC-Sampler's background frequencies `f_bg`, one float32 per token id.
///
/// From a JSON file: a list of numbers, or an object whose `values` is one (as the parity
/// traces store it), exactly one per id of the model's vocabulary. From an index folder:
/// upstream's construction from token counts, `count / total` for every counted id and
/// `1 / total` for the others, in float32.
#[derive(Debug, Clone)]
pub struct Background {
    path: PathBuf,
    source: BackgroundSource,
    table: Arc<OnceLock<Vec<f32>>>,
}

#[derive(Debug, Clone)]
enum BackgroundSource {
    /// Not given: `collapse-probe run` uses the spec's reference index; elsewhere an error.
    Missing,
    Frequencies(Vec<f64>),
    /// Unigram counts of an index folder, read by the caller ([`Background::set_counts`]).
    Index(Option<Vec<u64>>),
}

impl PartialEq for Background {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path
    }
}

impl Serialize for Background {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path.display().to_string())
    }
}

impl Background {
    /// Opens `path`: a folder is an index (counts come later), a file is read as JSON now.
    pub fn open(path: &Path) -> Result<Background, String> {
        let source = if path.is_dir() {
            BackgroundSource::Index(None)
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("option `background`: cannot read {}: {e}", path.display()))?;
            BackgroundSource::Frequencies(
                parse_frequencies(&text)
                    .map_err(|m| format!("option `background`: {}: {m}", path.display()))?,
            )
        };
        Ok(Background {
            path: path.to_owned(),
            source,
            table: Arc::new(OnceLock::new()),
        })
    }

    /// No background yet (the option was not given).
    pub fn missing() -> Background {
        Background {
            path: PathBuf::new(),
            source: BackgroundSource::Missing,
            table: Arc::new(OnceLock::new()),
        }
    }

    /// The index folder or file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the option was not given.
    pub fn is_missing(&self) -> bool {
        matches!(self.source, BackgroundSource::Missing)
    }

    /// The index folder whose counts are still to be read, if any.
    pub fn index_to_read(&self) -> Option<&Path> {
        match self.source {
            BackgroundSource::Index(None) => Some(&self.path),
            _ => None,
        }
    }

    /// Gives an index background its unigram counts (indexed by token id).
    pub fn set_counts(&mut self, counts: Vec<u64>) {
        self.source = BackgroundSource::Index(Some(counts));
        self.table = Arc::new(OnceLock::new());
    }

    /// Builds the table for a vocabulary of `vocab` ids; errors name the option.
    pub fn prepare(&self, vocab: usize) -> Result<(), ProbeError> {
        let bad = |m: String| {
            ProbeError::Input(format!("option `background`: {}: {m}", self.path.display()))
        };
        let table: Vec<f32> = match &self.source {
            BackgroundSource::Missing => return Err(ProbeError::Input(MISSING.into())),
            BackgroundSource::Frequencies(values) => {
                if values.len() != vocab {
                    return Err(bad(format!(
                        "holds {} frequencies; the model's vocabulary has {vocab} ids",
                        values.len()
                    )));
                }
                values.iter().map(|&v| v as f32).collect()
            }
            BackgroundSource::Index(None) => {
                return Err(bad("the index's counts were not read".into()))
            }
            BackgroundSource::Index(Some(counts)) => {
                if counts.len() > vocab {
                    return Err(bad(format!(
                        "the index counts {} token ids; the model's vocabulary has {vocab}",
                        counts.len()
                    )));
                }
                let total: u64 = counts.iter().sum();
                if total == 0 {
                    return Err(bad("the index holds no tokens".into()));
                }
                let total = total as f64;
                (0..vocab)
                    .map(|i| match counts.get(i) {
                        Some(&c) if c > 0 => (c as f64 / total) as f32,
                        _ => (1.0 / total) as f32,
                    })
                    .collect()
            }
        };
        let _ = self.table.set(table);
        Ok(())
    }

    /// The table built by [`Background::prepare`].
    pub fn table(&self) -> Result<&[f32], ProbeError> {
        self.table.get().map(Vec::as_slice).ok_or_else(|| {
            ProbeError::Input("option `background`: the table was not prepared".into())
        })
    }
}

fn parse_frequencies(text: &str) -> Result<Vec<f64>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    // A list; an object with a `values` list; or a parity trace file, whose frequencies are
    // under `pc_sampler_bg_freq`.
    let values = |o: &serde_json::Map<String, serde_json::Value>| match o.get("values") {
        Some(serde_json::Value::Array(a)) => Some(a.clone()),
        _ => match o.get("pc_sampler_bg_freq") {
            Some(serde_json::Value::Object(inner)) => match inner.get("values") {
                Some(serde_json::Value::Array(a)) => Some(a.clone()),
                _ => None,
            },
            _ => None,
        },
    };
    let list = match &value {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Object(o) => values(o)
            .ok_or("expected a list of numbers or an object with a `values` list".to_owned())?,
        _ => return Err("expected a list of numbers or an object with a `values` list".into()),
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| match v.as_f64() {
            Some(f) if f.is_finite() && f >= 0.0 => Ok(f),
            _ => Err(format!("value {i} is not a number >= 0: {v}")),
        })
        .collect()
}
