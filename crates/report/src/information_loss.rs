//! The corrupt folders behind a report's analyses, and their headline metrics laid out by
//! masked ratio: what the "Information loss" section of the page and of `summary.md` shows.
//!
//! An analysis names a corrupt folder's metrics `corrupt.<metric>[@ratio=R][@label]` and its
//! curves' series `[label:]ratio=R`, `[label:]top10` or `label` / `all` (crates/analysis
//! METRICS.md); the label is absent when the analysis held one corrupt folder.

use cp_records::{CurvePoint, Metric};

use crate::figures::curves;
use crate::inputs::{split_metric_name, ReportInputs, RunData};

/// Every metric name of a corrupt folder starts with this.
pub(crate) const PREFIX: &str = "corrupt.";

/// Whether a metric belongs to a corrupt folder (the general metric tables leave these out:
/// their `@ratio=R` is no folder label).
pub(crate) fn is_corrupt_metric(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The per-ratio metrics the section tabulates, in row order, with what each row says.
pub(crate) const BY_RATIO: [(&str, &str); 7] = [
    ("corrupt.nll", "NLL per masked token"),
    ("corrupt.nll_per_sequence", "NLL per masked sequence"),
    ("corrupt.nll_frequent", "NLL, most frequent decile"),
    ("corrupt.nll_rare", "NLL, rarest decile"),
    ("corrupt.context_gain", "context gain"),
    ("corrupt.concentration_10", "NLL share of the rarest 10 %"),
    ("corrupt.concentration_20", "NLL share of the rarest 20 %"),
];

/// The whole-folder metrics the section tabulates, one column per folder.
pub(crate) const PER_FOLDER: [&str; 4] = [
    "corrupt.fragility_rare",
    "corrupt.fragility_frequent",
    "corrupt.fragility_gap",
    "corrupt.texts",
];

/// One corrupt folder of one analysed run.
pub(crate) struct CorruptFolder<'a> {
    pub(crate) run: &'a RunData,
    /// The folder's label in the analysis; empty when the analysis had one corrupt folder.
    pub(crate) label: String,
    /// How figures and tables name it: the label, the run's label, or both.
    pub(crate) name: String,
}

/// A parsed corrupt metric name: its base, its ratio (as written) and its folder label.
fn parse(name: &str) -> Option<(&str, Option<&str>, String)> {
    let (base, labels) = split_metric_name(name);
    if !is_corrupt_metric(base) {
        return None;
    }
    let ratio = labels.iter().find_map(|l| l.strip_prefix("ratio="));
    let folder: Vec<&str> = labels
        .iter()
        .copied()
        .filter(|l| !l.starts_with("ratio="))
        .collect();
    Some((base, ratio, folder.join("@")))
}

impl<'a> CorruptFolder<'a> {
    /// The metric `base` (at `ratio`, as the name writes it) of this folder.
    pub(crate) fn metric(&self, base: &str, ratio: Option<&str>) -> Option<&'a Metric> {
        self.run.metrics.as_ref()?.metrics.iter().find(|m| {
            m.value.is_finite()
                && parse(&m.name)
                    .is_some_and(|(b, r, l)| b == base && r == ratio && l == self.label)
        })
    }

    /// The ratios this folder's metrics name, ascending, as written (`0.1`) and as numbers.
    pub(crate) fn ratios(&self) -> Vec<(String, f64)> {
        let mut out: Vec<(String, f64)> = Vec::new();
        for m in self.run.metrics.iter().flat_map(|f| f.metrics.iter()) {
            if let Some((_, Some(r), l)) = parse(&m.name) {
                if l == self.label && !out.iter().any(|(s, _)| s == r) {
                    if let Ok(v) = r.parse::<f64>() {
                        out.push((r.to_owned(), v));
                    }
                }
            }
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out
    }

    /// This folder's series of `curve`, named without the folder's `label:` prefix (`ratio=0.1`,
    /// `top10`; its own series, `label` or `all`, comes back as `all`).
    pub(crate) fn series(&self, curve: &str) -> Vec<(String, Vec<CurvePoint>)> {
        self.run
            .curve(curve)
            .into_iter()
            .filter_map(|(s, points)| {
                let inner = if self.label.is_empty() {
                    // A lone folder's series carry no prefix.
                    (!s.contains(':')).then_some(s.as_str())
                } else if s == self.label {
                    Some("all")
                } else {
                    s.strip_prefix(self.label.as_str())
                        .and_then(|rest| rest.strip_prefix(':'))
                };
                inner.map(|inner| (inner.to_owned(), points.clone()))
            })
            .collect()
    }
}

/// Every corrupt folder of every run, in run order and then in the order the analysis lists
/// them: those with a `corrupt.texts` metric, then those that only left curves.
pub(crate) fn corrupt_folders(inputs: &ReportInputs) -> Vec<CorruptFolder<'_>> {
    let mut labels: Vec<(usize, String)> = Vec::new();
    for (r, run) in inputs.runs.iter().enumerate() {
        let mut push = |label: String| {
            if !labels.iter().any(|(lr, l)| *lr == r && *l == label) {
                labels.push((r, label));
            }
        };
        for m in run.metrics.iter().flat_map(|f| f.metrics.iter()) {
            if let Some(("corrupt.texts", _, label)) = parse(&m.name) {
                push(label);
            }
        }
        for (series, _) in run.curve(curves::CORRUPT_NLL_BY_RATIO) {
            push(if series == "all" {
                String::new()
            } else {
                series
            });
        }
    }
    let several_runs = inputs.runs.len() > 1;
    labels
        .into_iter()
        .map(|(r, label)| {
            let run = &inputs.runs[r];
            let name = match (several_runs, label.is_empty()) {
                (_, true) => run.label.clone(),
                (true, false) => format!("{} · {label}", run.label),
                (false, false) => label.clone(),
            };
            CorruptFolder { run, label, name }
        })
        .collect()
}

/// The per-ratio metrics of every folder: one row per (metric, folder), folders of one metric
/// side by side, one column per ratio any folder has.
pub(crate) struct RatioTable<'a> {
    /// Ratios as the metric names write them, ascending.
    pub(crate) ratios: Vec<String>,
    /// (metric base, its description, folder name, value at each ratio).
    pub(crate) rows: Vec<(&'static str, &'static str, String, Vec<Option<&'a Metric>>)>,
}

pub(crate) fn ratio_table<'a>(folders: &[CorruptFolder<'a>]) -> RatioTable<'a> {
    let mut ratios: Vec<(String, f64)> = Vec::new();
    for f in folders {
        for r in f.ratios() {
            if !ratios.iter().any(|(s, _)| *s == r.0) {
                ratios.push(r);
            }
        }
    }
    ratios.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut rows = Vec::new();
    for (base, what) in BY_RATIO {
        for f in folders {
            let cells: Vec<Option<&Metric>> = ratios
                .iter()
                .map(|(r, _)| f.metric(base, Some(r)))
                .collect();
            if cells.iter().any(Option::is_some) {
                rows.push((base, what, f.name.clone(), cells));
            }
        }
    }
    RatioTable {
        ratios: ratios.into_iter().map(|(s, _)| s).collect(),
        rows,
    }
}

/// The whole-folder metrics: one row per metric of [`PER_FOLDER`] that any folder has, one
/// cell per folder.
pub(crate) fn folder_rows<'a>(
    folders: &[CorruptFolder<'a>],
) -> Vec<(&'static str, Vec<Option<&'a Metric>>)> {
    PER_FOLDER
        .iter()
        .map(|&base| (base, folders.iter().map(|f| f.metric(base, None)).collect()))
        .filter(|(_, cells): &(_, Vec<Option<&Metric>>)| cells.iter().any(Option::is_some))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cp_records::{Better, MetricsFile};

    fn m(name: &str, value: f64) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: "nats".into(),
            better: Better::Lower,
            stderr: None,
            n: 1,
        }
    }

    fn run(label: &str, metrics: Vec<Metric>) -> RunData {
        RunData {
            label: label.into(),
            metrics: Some(MetricsFile {
                schema_version: 1,
                sources: vec![],
                metrics,
            }),
            ..RunData::default()
        }
    }

    #[test]
    fn folders_and_ratios_are_read_from_the_names() {
        let inputs = ReportInputs {
            runs: vec![run(
                "a",
                vec![
                    m("corrupt.texts@uniform", 4.0),
                    m("corrupt.nll@ratio=0.5@uniform", 3.0),
                    m("corrupt.nll@ratio=0.1@uniform", 2.0),
                    m("corrupt.texts@rare-first", 4.0),
                    m("corrupt.nll@ratio=0.25@rare-first", 5.0),
                    m("trap.rep_2@ratio=0.5", 0.1),
                ],
            )],
            ..ReportInputs::default()
        };
        let folders = corrupt_folders(&inputs);
        let names: Vec<&str> = folders.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["uniform", "rare-first"]);
        assert_eq!(
            folders[0].ratios(),
            vec![("0.1".to_owned(), 0.1), ("0.5".to_owned(), 0.5)]
        );
        assert_eq!(
            folders[1]
                .metric("corrupt.nll", Some("0.25"))
                .map(|m| m.value),
            Some(5.0)
        );
        assert!(folders[1].metric("corrupt.nll", Some("0.1")).is_none());
        let table = ratio_table(&folders);
        assert_eq!(table.ratios, ["0.1", "0.25", "0.5"]);
        let row = |i: usize| -> Vec<Option<f64>> {
            table.rows[i].3.iter().map(|m| m.map(|m| m.value)).collect()
        };
        assert_eq!(table.rows.len(), 2);
        assert_eq!(row(0), [Some(2.0), None, Some(3.0)]);
        assert_eq!(row(1), [None, Some(5.0), None]);
        assert!(is_corrupt_metric("corrupt.fragility_gap@uniform"));
        assert!(!is_corrupt_metric("trap.rep_2"));
    }

    #[test]
    fn a_lone_folder_is_named_after_its_run_and_keeps_its_series() {
        let point = |series: &str| CurvePoint {
            curve: curves::CORRUPT_CONCENTRATION.into(),
            series: series.into(),
            x: 0.5,
            mean: 0.3,
            median: 0.3,
            q25: 0.3,
            q75: 0.3,
            n: 1,
        };
        let mut r = run("corrupt-run", vec![m("corrupt.texts", 2.0)]);
        r.curves = vec![point("top10"), point("top20")];
        let inputs = ReportInputs {
            runs: vec![r],
            ..ReportInputs::default()
        };
        let folders = corrupt_folders(&inputs);
        assert_eq!(folders.len(), 1);
        assert_eq!(folders[0].name, "corrupt-run");
        let series: Vec<String> = folders[0]
            .series(curves::CORRUPT_CONCENTRATION)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        assert_eq!(series, ["top10", "top20"]);
    }
}
