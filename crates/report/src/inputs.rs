//! What a report is made from: analysis folders (one per run), and optionally the probe and
//! decode record folders behind them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cp_records::{
    files, read_json, read_table, CurvePoint, Format, Generation, Manifest, Metric, MetricsFile,
    ProbeRecord, PromptMetric, StepRecord,
};
use serde::{Deserialize, Serialize};

use crate::error::ReportError;

/// File name, inside an analysis folder, of an optional corpus-frequency ranking of token ids.
pub const TOKEN_RANKS_JSON: &str = "token_ranks.json";

/// One analysed run: a label, its headline metrics and its curves.
#[derive(Debug, Clone, Default)]
pub struct RunData {
    /// The name the figures' legends and the tables use.
    pub label: String,
    /// The folder it was read from (absent for runs built in code).
    pub dir: Option<PathBuf>,
    pub manifest: Option<Manifest>,
    pub metrics: Option<MetricsFile>,
    /// Long-form curves; any curve may be absent.
    pub curves: Vec<CurvePoint>,
    /// Every prompt's own metric values (`per_prompt.parquet`), when the analysis wrote them.
    pub per_prompt: Vec<PromptMetric>,
}

impl RunData {
    /// The points of one curve, grouped by series in order of first appearance, each sorted by x.
    pub fn curve(&self, name: &str) -> Vec<(String, Vec<CurvePoint>)> {
        let mut series: Vec<(String, Vec<CurvePoint>)> = Vec::new();
        for p in self
            .curves
            .iter()
            .filter(|p| p.curve == name && p.mean.is_finite() && p.x.is_finite())
        {
            match series.iter_mut().find(|(s, _)| *s == p.series) {
                Some((_, pts)) => pts.push(p.clone()),
                None => series.push((p.series.clone(), vec![p.clone()])),
            }
        }
        for (_, pts) in &mut series {
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        }
        series
    }
}

/// A probe folder: one row per (prompt, mask position).
#[derive(Debug, Clone, Default)]
pub struct ProbeData {
    pub dir: Option<PathBuf>,
    pub manifest: Option<Manifest>,
    pub records: Vec<ProbeRecord>,
}

/// A decode folder: the committed positions of every step, and the final sequences.
#[derive(Debug, Clone, Default)]
pub struct DecodeData {
    pub dir: Option<PathBuf>,
    pub manifest: Option<Manifest>,
    pub steps: Vec<StepRecord>,
    pub generations: Vec<Generation>,
}

/// Where a token's frequency rank came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankSource {
    /// A corpus unigram table (the string names it: a file or an index).
    Corpus(String),
    /// No corpus table was given: ids ranked by how often they appear among the probe's top-k predictions.
    Predictions,
}

/// 1-based frequency rank of token ids (1 = most frequent).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRanks {
    pub source: RankSource,
    pub ranks: HashMap<u32, u32>,
}

/// `token_ranks.json`: token ids from most to least frequent in the reference corpus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRanksFile {
    /// What the ranking was computed from (corpus or index path).
    pub source: String,
    /// Token ids, most frequent first; ids not listed have no known rank.
    pub ids: Vec<u32>,
}

impl TokenRanks {
    /// Ranks from a list of ids, most frequent first (a repeated id keeps its first rank).
    pub fn from_ids(source: RankSource, ids: &[u32]) -> Self {
        let mut ranks = HashMap::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            ranks.entry(id).or_insert(i as u32 + 1);
        }
        TokenRanks { source, ranks }
    }

    /// Ranks from corpus counts indexed by token id (an index's unigram table): most frequent first,
    /// ties broken by smaller id; ids that never occur get no rank.
    pub fn from_counts(source: RankSource, counts: &[u64]) -> Self {
        let mut ids: Vec<u32> = (0..counts.len() as u32)
            .filter(|&i| counts[i as usize] > 0)
            .collect();
        ids.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
        Self::from_ids(source, &ids)
    }

    /// Reads a [`TokenRanksFile`].
    pub fn read(path: &Path) -> Result<Self, ReportError> {
        let file: TokenRanksFile = read_json(path)?;
        Ok(Self::from_ids(RankSource::Corpus(file.source), &file.ids))
    }

    /// The fallback when no corpus table exists: ids ranked by their number of appearances among all
    /// top-k predictions of the probe (ties broken by smaller id, so the ranking is deterministic).
    pub fn from_predictions(records: &[ProbeRecord]) -> Self {
        let mut counts: HashMap<u32, u64> = HashMap::new();
        for r in records {
            for &id in &r.top_ids {
                *counts.entry(id).or_default() += 1;
            }
        }
        let mut ids: Vec<(u32, u64)> = counts.into_iter().collect();
        ids.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let ids: Vec<u32> = ids.into_iter().map(|(id, _)| id).collect();
        Self::from_ids(RankSource::Predictions, &ids)
    }

    pub fn rank(&self, id: u32) -> Option<u32> {
        self.ranks.get(&id).copied()
    }
}

/// Everything one report shows.
#[derive(Debug, Clone, Default)]
pub struct ReportInputs {
    /// Analysed runs, overlaid in the figures in this order.
    pub runs: Vec<RunData>,
    pub probe: Option<ProbeData>,
    pub decode: Option<DecodeData>,
    /// Corpus-frequency ranks; when absent the report ranks tokens among the probe's predictions.
    pub token_ranks: Option<TokenRanks>,
    /// A parameter sweep (`collapse-probe run` with `[sweep]`): its metrics against the swept value.
    pub sweep: Option<SweepData>,
}

/// A sweep folder (`RUN/sweep/`): every metric of every swept value, named `<metric>@<param>=<value>`
/// (with `@<schedule>` before it when the analysis held several decode folders).
#[derive(Debug, Clone, Default)]
pub struct SweepData {
    pub dir: Option<PathBuf>,
    /// The swept parameter (`masks`, `tokens_per_step`, `steps`, `threshold`).
    pub param: String,
    pub metrics: Vec<Metric>,
}

/// A metric name split into its base and its `@` labels, e.g. `trap.rep_2@fixed@steps=4` →
/// (`trap.rep_2`, [`fixed`, `steps=4`]).
pub fn split_metric_name(name: &str) -> (&str, Vec<&str>) {
    let mut parts = name.split('@');
    let base = parts.next().unwrap_or(name);
    (base, parts.collect())
}

impl SweepData {
    /// Reads `metrics.json` of a sweep folder; the parameter is read from the metric names.
    pub fn load(dir: &Path) -> Result<Self, ReportError> {
        let path = dir.join(files::METRICS_JSON);
        if !path.is_file() {
            return Err(ReportError::Input {
                path: dir.to_owned(),
                message: format!("not a sweep folder: no {}", files::METRICS_JSON),
            });
        }
        let file: MetricsFile = read_json(&path)?;
        let param = file
            .metrics
            .iter()
            .find_map(|m| {
                split_metric_name(&m.name)
                    .1
                    .last()
                    .and_then(|l| l.split_once('='))
                    .map(|(p, _)| p.to_owned())
            })
            .ok_or_else(|| ReportError::Input {
                path: path.clone(),
                message: "no metric is named `<metric>@<param>=<value>`: not a sweep's metrics"
                    .into(),
            })?;
        Ok(SweepData {
            dir: Some(dir.to_owned()),
            param,
            metrics: file.metrics,
        })
    }

    /// The swept value of a metric, with the name's other labels (the schedule) joined by `@`.
    pub fn value_of<'a>(&self, name: &'a str) -> Option<(&'a str, String, f64)> {
        let (base, labels) = split_metric_name(name);
        let (last, rest) = labels.split_last()?;
        let (param, value) = last.split_once('=')?;
        if param != self.param {
            return None;
        }
        Some((base, rest.join("@"), value.parse().ok()?))
    }
}

/// Where to read a report's inputs from (the CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct InputPaths {
    /// Analysis folders, one per run.
    pub analysis: Vec<PathBuf>,
    /// Legend labels, one per analysis folder (default: each folder's name).
    pub labels: Option<Vec<String>>,
    /// The probe folder (default: the first `sources` entry of the first analysis that holds probe records).
    pub probe: Option<PathBuf>,
    /// The decode folder (default: the first `sources` entry of the first analysis that holds decode steps).
    pub decode: Option<PathBuf>,
    /// A `token_ranks.json` (default: the first analysis folder's, if it has one).
    pub token_ranks: Option<PathBuf>,
    /// A sweep folder written by `collapse-probe run` (`RUN/sweep`).
    pub sweep: Option<PathBuf>,
}

impl ReportInputs {
    /// Reads every folder. Each analysis folder needs `metrics.json` (`curves.{parquet,jsonl}` and
    /// `manifest.json` are optional). Probe and decode folders not named are looked for among the
    /// `sources` of the analyses' `metrics.json`, resolved as written, then relative to the analysis folder,
    /// then relative to its parent.
    pub fn load(paths: &InputPaths) -> Result<Self, ReportError> {
        if paths.analysis.is_empty() {
            return Err(ReportError::Options(
                "at least one analysis folder is needed".into(),
            ));
        }
        if let Some(labels) = &paths.labels {
            if labels.len() != paths.analysis.len() {
                return Err(ReportError::Options(format!(
                    "{} labels given for {} analysis folders",
                    labels.len(),
                    paths.analysis.len()
                )));
            }
        }
        let mut runs = Vec::new();
        for (i, dir) in paths.analysis.iter().enumerate() {
            let label = match &paths.labels {
                Some(labels) => labels[i].clone(),
                None => folder_label(dir),
            };
            runs.push(load_run(dir, label)?);
        }
        let mut seen = std::collections::HashSet::new();
        for r in &runs {
            if !seen.insert(r.label.as_str()) {
                return Err(ReportError::Options(format!(
                    "two runs share the label `{}`; give --labels",
                    r.label
                )));
            }
        }

        let probe_dir = match &paths.probe {
            Some(p) => Some(p.clone()),
            None => find_source(&runs, files::PROBE_RECORDS),
        };
        let decode_dir = match &paths.decode {
            Some(p) => Some(p.clone()),
            None => find_source(&runs, files::DECODE_STEPS),
        };
        let probe = probe_dir.map(|d| load_probe(&d)).transpose()?;
        let decode = decode_dir.map(|d| load_decode(&d)).transpose()?;

        let ranks_path = match &paths.token_ranks {
            Some(p) => Some(p.clone()),
            None => paths
                .analysis
                .iter()
                .map(|d| d.join(TOKEN_RANKS_JSON))
                .find(|p| p.is_file()),
        };
        let token_ranks = ranks_path.map(|p| TokenRanks::read(&p)).transpose()?;
        let sweep = paths.sweep.as_deref().map(SweepData::load).transpose()?;
        Ok(ReportInputs {
            runs,
            probe,
            decode,
            token_ranks,
            sweep,
        })
    }

    /// The model's end ids (end-of-text, end-of-turn, padding), as the probe folder's manifest
    /// records them, else the decode folder's.
    pub fn end_ids(&self) -> Option<Vec<u32>> {
        let probe = self.probe.as_ref().and_then(|p| p.manifest.as_ref());
        let decode = self.decode.as_ref().and_then(|d| d.manifest.as_ref());
        probe
            .and_then(Manifest::recorded_end_ids)
            .or_else(|| decode.and_then(Manifest::recorded_end_ids))
    }

    /// The ranks the figures and the page use: the corpus table if given, else ranks among predictions.
    pub fn effective_ranks(&self) -> Option<TokenRanks> {
        self.token_ranks.clone().or_else(|| {
            self.probe
                .as_ref()
                .map(|p| TokenRanks::from_predictions(&p.records))
        })
    }
}

fn folder_label(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    canonical
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

fn read_manifest(dir: &Path) -> Result<Option<Manifest>, ReportError> {
    let path = dir.join(files::MANIFEST_JSON);
    if path.is_file() {
        Ok(Some(read_json(&path)?))
    } else {
        Ok(None)
    }
}

fn load_run(dir: &Path, label: String) -> Result<RunData, ReportError> {
    if !dir.is_dir() {
        return Err(ReportError::Input {
            path: dir.to_owned(),
            message: "analysis folder does not exist".into(),
        });
    }
    let metrics_path = dir.join(files::METRICS_JSON);
    if !metrics_path.is_file() {
        // Say what the folder is when its manifest tells, and where its analysis would be.
        let hint = match read_manifest(dir).ok().flatten().map(|m| m.kind) {
            Some(kind) if kind == "run" => format!(
                "; it is a `run` folder, whose analysis is {}",
                dir.join("analysis").display()
            ),
            Some(kind) if kind != "analysis" => {
                format!(
                    "; it is a `{kind}` folder: run `collapse-probe analyze --records` on it first"
                )
            }
            _ => String::new(),
        };
        return Err(ReportError::Input {
            path: dir.to_owned(),
            message: format!(
                "not an analysis folder: {} is missing{hint}",
                files::METRICS_JSON
            ),
        });
    }
    let metrics: Option<MetricsFile> = Some(read_json(&metrics_path)?);
    let curves = match Format::find(dir, files::CURVES) {
        Ok(path) => read_table(&path)?,
        Err(_) => Vec::new(),
    };
    let per_prompt = match Format::find(dir, files::PER_PROMPT) {
        Ok(path) => read_table(&path)?,
        Err(_) => Vec::new(),
    };
    Ok(RunData {
        label,
        dir: Some(dir.to_owned()),
        manifest: read_manifest(dir)?,
        metrics,
        curves,
        per_prompt,
    })
}

/// The first source folder of any run that holds the table `stem`.
fn find_source(runs: &[RunData], stem: &str) -> Option<PathBuf> {
    for run in runs {
        let (Some(metrics), Some(dir)) = (&run.metrics, &run.dir) else {
            continue;
        };
        for source in &metrics.sources {
            let source = Path::new(source);
            let mut candidates = vec![source.to_owned(), dir.join(source)];
            if let Some(parent) = dir.parent() {
                candidates.push(parent.join(source));
            }
            // A folder of shards holds its tables in `shard=0/` and the others.
            if let Some(found) = candidates.into_iter().find(|c| {
                Format::find(c, stem).is_ok() || Format::find(&c.join("shard=0"), stem).is_ok()
            }) {
                return Some(found);
            }
        }
    }
    None
}

/// Reads a probe folder (`records.parquet` or `.jsonl`, optional `manifest.json`), or a folder
/// of its shards (`--shard`), whose records are concatenated in shard order.
pub fn load_probe(dir: &Path) -> Result<ProbeData, ReportError> {
    let parts = parts_of(dir)?;
    Ok(ProbeData {
        dir: Some(dir.to_owned()),
        manifest: read_manifest(&parts[0])?,
        records: read_parts(&parts, files::PROBE_RECORDS)?,
    })
}

/// Reads a decode folder (`steps` and `generations` tables, optional `manifest.json`), or a
/// folder of its shards.
pub fn load_decode(dir: &Path) -> Result<DecodeData, ReportError> {
    let parts = parts_of(dir)?;
    Ok(DecodeData {
        dir: Some(dir.to_owned()),
        manifest: read_manifest(&parts[0])?,
        steps: read_parts(&parts, files::DECODE_STEPS)?,
        generations: read_parts(&parts, files::DECODE_GENERATIONS)?,
    })
}

/// The folders whose tables make up `dir`: its shards in order, or itself.
fn parts_of(dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    Ok(cp_records::shard_folders(dir)?.unwrap_or_else(|| vec![dir.to_owned()]))
}

fn read_parts<T: cp_records::Table>(parts: &[PathBuf], stem: &str) -> Result<Vec<T>, ReportError> {
    let mut rows = Vec::new();
    for part in parts {
        rows.extend(read_table::<T>(&Format::find(part, stem)?)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ids: &[u32]) -> ProbeRecord {
        ProbeRecord {
            prompt_index: 0,
            prompt_id: "0".into(),
            prompt_len: 1,
            position: 1,
            distance: 1,
            top_ids: ids.to_vec(),
            top_tokens: ids.iter().map(|i| i.to_string()).collect(),
            top_probs: vec![0.1; ids.len()],
            entropy: 1.0,
            max_prob: 0.1,
            margin: 0.0,
            eot_mass: 0.0,
            kl_unigram: None,
            xent_unigram: None,
            js_prev: None,
        }
    }

    #[test]
    fn prediction_ranks_count_appearances_and_break_ties_by_id() {
        let ranks = TokenRanks::from_predictions(&[
            record(&[5, 7, 9]),
            record(&[7, 9, 2]),
            record(&[7, 1, 3]),
        ]);
        // 7 appears three times, 9 twice, then 1, 2, 3, 5 once each in id order.
        let expected = [(7, 1), (9, 2), (1, 3), (2, 4), (3, 5), (5, 6)];
        for (id, rank) in expected {
            assert_eq!(ranks.rank(id), Some(rank), "id {id}");
        }
        assert_eq!(ranks.rank(4), None);
        assert_eq!(ranks.source, RankSource::Predictions);
    }

    #[test]
    fn count_ranks_skip_unseen_ids() {
        let ranks = TokenRanks::from_counts(RankSource::Corpus("u".into()), &[5, 0, 9, 5]);
        assert_eq!(
            (ranks.rank(2), ranks.rank(0), ranks.rank(3), ranks.rank(1)),
            (Some(1), Some(2), Some(3), None)
        );
    }

    #[test]
    fn a_repeated_id_keeps_its_first_rank() {
        let ranks = TokenRanks::from_ids(RankSource::Corpus("c".into()), &[3, 1, 3, 2]);
        assert_eq!(
            (ranks.rank(3), ranks.rank(1), ranks.rank(2)),
            (Some(1), Some(2), Some(4))
        );
    }

    #[test]
    fn curves_are_grouped_by_series_and_sorted() {
        let p = |series: &str, x: f64| CurvePoint {
            curve: "entropy".into(),
            series: series.into(),
            x,
            mean: x,
            median: x,
            q25: x,
            q75: x,
            n: 1,
        };
        let run = RunData {
            curves: vec![p("b", 2.0), p("a", 3.0), p("b", 1.0), p("a", 1.0)],
            ..RunData::default()
        };
        let got = run.curve("entropy");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, "b");
        assert_eq!(
            got[0].1.iter().map(|p| p.x).collect::<Vec<_>>(),
            vec![1.0, 2.0]
        );
        assert_eq!(got[1].0, "a");
        assert!(run.curve("missing").is_empty());
    }
}
