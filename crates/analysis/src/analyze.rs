//! Turning record folders into `metrics.json`, `curves.parquet` and `manifest.json`.

use std::fs::File;
use std::path::{Path, PathBuf};

use cp_records::{
    files, read_table, write_json, write_table, CorruptRecord, CurvePoint, Format, Generation,
    Manifest, MetricsFile, OutputDir, ProbeRecord, PromptMetric, SCHEMA_VERSION,
};
use polars::prelude::*;
use polars_io::prelude::*;

use crate::collapse::{analyze_probe, Analysis, CollapseSettings, ProbeColumns};
use crate::corrupt::analyze_corrupt;
use crate::error::{AnalysisError, Result};
use crate::index::NgramIndex;
use crate::trap::{analyze_decode, TrapSettings};
use crate::unigram::Unigram;

/// What a records folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsKind {
    /// `records.parquet`/`records.jsonl` from `collapse-probe probe`.
    Probe,
    /// `generations.*` (and `steps.*`) from `collapse-probe decode`.
    Decode,
    /// `corrupt.*` (and `texts.*`) from `collapse-probe corrupt`.
    Corrupt,
}

/// A records folder to analyse, with the label that names its series and metric suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordsFolder {
    pub path: PathBuf,
    pub kinds: Vec<RecordsKind>,
    pub label: String,
    /// The model's end ids as the folder's manifest records them (absent without a manifest
    /// or in one that predates them).
    pub end_ids: Option<Vec<u32>>,
    /// For a folder of shard folders (`--shard`), the shards in order: their records,
    /// concatenated, are the folder's. Empty for a plain records folder.
    pub shards: Vec<PathBuf>,
}

impl RecordsFolder {
    /// The folders whose tables make up this one: its shards, or itself.
    pub fn parts(&self) -> Vec<&Path> {
        match self.shards.is_empty() {
            true => vec![self.path.as_path()],
            false => self.shards.iter().map(PathBuf::as_path).collect(),
        }
    }
}

/// The end ids recorded in `dir/manifest.json`, if it has one that records them.
pub fn recorded_end_ids(dir: &Path) -> Result<Option<Vec<u32>>> {
    let path = dir.join(files::MANIFEST_JSON);
    if !path.is_file() {
        return Ok(None);
    }
    let manifest: Manifest = cp_records::read_json(&path)?;
    Ok(manifest.recorded_end_ids())
}

/// Detects what `dir` holds from its files; `manifest.json`, when present, must agree.
pub fn detect(dir: &Path) -> Result<Vec<RecordsKind>> {
    let mut kinds = Vec::new();
    if Format::find(dir, files::PROBE_RECORDS).is_ok() {
        kinds.push(RecordsKind::Probe);
    }
    if Format::find(dir, files::DECODE_GENERATIONS).is_ok() {
        kinds.push(RecordsKind::Decode);
    }
    if Format::find(dir, files::CORRUPT_RECORDS).is_ok() {
        kinds.push(RecordsKind::Corrupt);
    }
    let manifest_path = dir.join(files::MANIFEST_JSON);
    if manifest_path.is_file() {
        let manifest: Manifest = cp_records::read_json(&manifest_path)?;
        let wanted = match manifest.kind.as_str() {
            "probe" => Some(RecordsKind::Probe),
            "decode" => Some(RecordsKind::Decode),
            "corrupt" => Some(RecordsKind::Corrupt),
            _ => None,
        };
        if let Some(k) = wanted {
            if !kinds.contains(&k) {
                return Err(AnalysisError::BadRecords {
                    path: dir.to_owned(),
                    message: format!(
                        "manifest.json says kind `{}` but the folder lacks its tables",
                        manifest.kind
                    ),
                });
            }
        }
    }
    if kinds.is_empty() {
        return Err(AnalysisError::BadRecords {
            path: dir.to_owned(),
            message: "neither probe records (records.parquet/.jsonl), decode output (generations.parquet/.jsonl) nor corrupt records (corrupt.parquet/.jsonl)".into(),
        });
    }
    Ok(kinds)
}

/// Detects every folder and gives each a unique label (its file name, made unique by `#k`).
pub fn detect_all(dirs: &[PathBuf]) -> Result<Vec<RecordsFolder>> {
    let mut out: Vec<RecordsFolder> = Vec::new();
    for dir in dirs {
        let shards = match Format::find(dir, files::PROBE_RECORDS)
            .or_else(|_| Format::find(dir, files::DECODE_GENERATIONS))
            .or_else(|_| Format::find(dir, files::CORRUPT_RECORDS))
        {
            Ok(_) => Vec::new(),
            Err(_) => cp_records::shard_folders(dir)?.unwrap_or_default(),
        };
        let kinds = match shards.first() {
            None => detect(dir)?,
            Some(first) => {
                let kinds = detect(first)?;
                for shard in &shards[1..] {
                    if detect(shard)? != kinds {
                        return Err(AnalysisError::BadRecords {
                            path: shard.clone(),
                            message: format!(
                                "holds other tables than {}: shards of different stages",
                                first.display()
                            ),
                        });
                    }
                }
                kinds
            }
        };
        let base = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        let mut label = base.clone();
        let mut k = 2;
        while out.iter().any(|f| f.label == label) {
            label = format!("{base}#{k}");
            k += 1;
        }
        out.push(RecordsFolder {
            path: dir.clone(),
            kinds,
            label,
            end_ids: recorded_end_ids(shards.first().unwrap_or(dir))?,
            shards,
        });
    }
    Ok(out)
}

/// Settings of a whole analysis.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AnalyzeSettings {
    /// Their `end_ids` / `eos_ids` are ignored: each folder's come from [`Self::end_ids`].
    /// Corrupt folders are bootstrapped over texts with `collapse.bootstrap` (the CLI gives
    /// every group the same `--bootstrap` and `--seed`).
    pub collapse: CollapseSettings,
    pub trap: TrapSettings,
    /// End ids for every folder (`analyze --eos-id`); `None`: each folder's recorded ones.
    pub end_ids: Option<Vec<u32>>,
    /// Label every folder's metrics and series, even the only folder of its kind (`analyze
    /// --label`): analyses to be compared by name whose folders differ (a sweep whose values
    /// hold different schedules) stay comparable.
    pub always_label: bool,
}

/// Which end ids the analysis of one folder used, and where they came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EndIdsUsed {
    pub label: String,
    pub ids: Vec<u32>,
    /// `option` (`--eos-id`), `manifest` (recorded by the stage that wrote the folder) or
    /// `none` (no manifest records them: nothing is cut, no end-token metric is computed).
    pub source: &'static str,
}

/// The result of [`analyze_folders`].
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOutput {
    pub metrics: MetricsFile,
    pub curves: Vec<CurvePoint>,
    /// Every prompt's (generation's) value of the metrics that have one, by records folder.
    pub per_prompt: Vec<PromptMetric>,
    /// Metric groups that were skipped, and why (recorded in the manifest).
    pub skipped: Vec<String>,
    /// The end ids each folder was analysed with.
    pub end_ids: Vec<EndIdsUsed>,
}

/// Reads the probe records of a folder, skipping the `top_tokens` column.
pub fn read_probe_columns(dir: &Path) -> Result<ProbeColumns> {
    let path = Format::find(dir, files::PROBE_RECORDS)?;
    let name = path.display().to_string();
    if path.extension().and_then(|e| e.to_str()) == Some("parquet") {
        let perr = |e: PolarsError| AnalysisError::Polars {
            context: name.clone(),
            source: e,
        };
        let file = File::open(&path).map_err(|e| AnalysisError::io(&path, e))?;
        let mut reader = ParquetReader::new(file);
        let schema = reader.schema().map_err(perr)?;
        let wanted: Vec<String> = schema
            .iter_names()
            .map(|n| n.to_string())
            .filter(|n| n != "top_tokens" && n != "prompt_id")
            .collect();
        let file = File::open(&path).map_err(|e| AnalysisError::io(&path, e))?;
        let df = ParquetReader::new(file)
            .with_columns(Some(wanted))
            .finish()
            .map_err(perr)?;
        ProbeColumns::from_frame(&df, &name)
    } else {
        let rows: Vec<ProbeRecord> = read_table(&path)?;
        Ok(ProbeColumns::from_records(&rows))
    }
}

/// Analyses every folder. `unigram` enables the frequency metrics of probe folders, `index`
/// the unseen n-gram metrics of decode folders (corrupt folders need neither: their records
/// carry each token's frequency rank). When several folders hold the same kind of records,
/// their metric names get the suffix `@label` and their curves the series `label`.
pub fn analyze_folders(
    folders: &[RecordsFolder],
    unigram: Option<&Unigram>,
    index: Option<&NgramIndex>,
    settings: &AnalyzeSettings,
) -> Result<AnalysisOutput> {
    let count = |k: RecordsKind| folders.iter().filter(|f| f.kinds.contains(&k)).count();
    let (n_probe, n_decode, n_corrupt) = (
        count(RecordsKind::Probe),
        count(RecordsKind::Decode),
        count(RecordsKind::Corrupt),
    );
    let mut metrics = Vec::new();
    let mut curves = Vec::new();
    let mut per_prompt = Vec::new();
    let mut skipped = Vec::new();
    let mut end_ids = Vec::new();
    if n_probe > 0 && unigram.is_none() {
        skipped.push("collapse.frequent_share, collapse.frequent_mass, collapse.generic_share, collapse.top1_rank, collapse.onset, collapse.frequent_onset: no --index given".into());
    }
    if n_decode > 0 && index.is_none() {
        skipped.push("trap.unseen_*gram_rate, trap.*_unseen_bigram_rate, trap.same_vs_diff_ratio: no --index given".into());
    }
    for folder in folders {
        let (ids, source) = match (&settings.end_ids, &folder.end_ids) {
            (Some(ids), _) => (ids.clone(), "option"),
            (None, Some(ids)) => (ids.clone(), "manifest"),
            (None, None) => (Vec::new(), "none"),
        };
        let collapse = CollapseSettings {
            end_ids: ids.clone(),
            ..settings.collapse.clone()
        };
        let trap = TrapSettings {
            eos_ids: ids.clone(),
            ..settings.trap.clone()
        };
        // Only probe and decode metrics read end ids: a corrupt folder alone reports none.
        if folder.kinds.iter().any(|&k| k != RecordsKind::Corrupt) {
            end_ids.push(EndIdsUsed {
                label: folder.label.clone(),
                ids,
                source,
            });
        }
        for &kind in &folder.kinds {
            let several = settings.always_label
                || match kind {
                    RecordsKind::Probe => n_probe > 1,
                    RecordsKind::Decode => n_decode > 1,
                    RecordsKind::Corrupt => n_corrupt > 1,
                };
            let series = if several {
                folder.label.clone()
            } else {
                "all".to_string()
            };
            let Analysis {
                metrics: m,
                curves: c,
                per_prompt: p,
                skipped: s,
            } = match kind {
                RecordsKind::Probe => {
                    let mut cols = read_probe_columns(folder.parts()[0])?;
                    for part in &folder.parts()[1..] {
                        cols.append(read_probe_columns(part)?);
                    }
                    analyze_probe(&cols, unigram, &collapse, &series)?
                }
                RecordsKind::Decode => {
                    let gens: Vec<Generation> =
                        read_parts(&folder.parts(), files::DECODE_GENERATIONS)?;
                    analyze_decode(&gens, index, &trap, &series)?
                }
                RecordsKind::Corrupt => {
                    let rows: Vec<CorruptRecord> =
                        read_parts(&folder.parts(), files::CORRUPT_RECORDS)?;
                    analyze_corrupt(&rows, &settings.collapse.bootstrap, &series)?
                }
            };
            skipped.extend(s.into_iter().map(|s| {
                if several {
                    format!("{s} (in {})", folder.label)
                } else {
                    s
                }
            }));
            metrics.extend(m.into_iter().map(|mut m| {
                if several {
                    m.name = format!("{}@{}", m.name, folder.label);
                }
                m
            }));
            curves.extend(c);
            per_prompt.extend(p.into_iter().map(|mut p| {
                p.source = folder.label.clone();
                p
            }));
        }
    }
    Ok(AnalysisOutput {
        metrics: MetricsFile {
            schema_version: SCHEMA_VERSION,
            sources: folders
                .iter()
                .map(|f| f.path.display().to_string())
                .collect(),
            metrics,
        },
        curves,
        per_prompt,
        skipped,
        end_ids,
    })
}

/// The rows of table `name` of every folder of `parts`, in order.
fn read_parts<T: cp_records::Table>(parts: &[&Path], name: &str) -> Result<Vec<T>> {
    let mut rows = Vec::new();
    for part in parts {
        let path = Format::find(part, name)?;
        rows.extend(read_table::<T>(&path)?);
    }
    Ok(rows)
}

/// Writes `metrics.json`, `curves.parquet`, `per_prompt.parquet` and `manifest.json` into `out` atomically.
pub fn write_analysis(
    out: &Path,
    output: &AnalysisOutput,
    mut manifest: Manifest,
) -> Result<PathBuf> {
    let staged = OutputDir::create(out)?;
    write_json(&staged.path().join(files::METRICS_JSON), &output.metrics)?;
    let curves = write_table(
        staged.path(),
        files::CURVES,
        &output.curves,
        Format::Parquet,
    )?;
    let per_prompt = write_table(
        staged.path(),
        files::PER_PROMPT,
        &output.per_prompt,
        Format::Parquet,
    )?;
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    manifest.files = vec![
        files::METRICS_JSON.to_owned(),
        name(&curves),
        name(&per_prompt),
        files::MANIFEST_JSON.to_owned(),
    ];
    write_json(&staged.path().join(files::MANIFEST_JSON), &manifest)?;
    Ok(staged.commit()?)
}
