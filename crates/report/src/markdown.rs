//! `summary.md`: the headline metrics as a Markdown table, for terminals and CI job summaries.

use std::fmt::Write as _;

use cp_records::{Better, Metric};

use crate::findings::findings;
use crate::information_loss::{corrupt_folders, folder_rows, is_corrupt_metric, ratio_table};
use crate::inputs::{ReportInputs, SweepData};

/// The headline metrics laid out as tables: one with a column per run for metrics without an
/// `@label`, and one with a column per (run, label) for the metrics an analysis of several decode
/// folders names `<metric>@<label>`, so schedules sit side by side. Corrupt metrics are left to
/// the information-loss tables ([`crate::information_loss`]): their `@ratio=R` is no folder.
pub(crate) struct MetricTable<'a> {
    /// Empty for the first table; "per decode folder" for the labelled one.
    pub title: &'static str,
    pub columns: Vec<String>,
    /// The metric's base name and its value in every column.
    pub rows: Vec<(String, Vec<Option<&'a Metric>>)>,
}

pub(crate) fn metric_tables(inputs: &ReportInputs) -> Vec<MetricTable<'_>> {
    let several = inputs.runs.len() > 1;
    let mut plain = MetricTable {
        title: "",
        columns: inputs.runs.iter().map(|r| r.label.clone()).collect(),
        rows: Vec::new(),
    };
    let mut labelled = MetricTable {
        title: "per decode folder",
        columns: Vec::new(),
        rows: Vec::new(),
    };
    // (run, label) of every labelled column, in first-appearance order.
    let mut keys: Vec<(usize, String)> = Vec::new();
    let shown = |m: &&Metric| !is_corrupt_metric(&m.name);
    for (r, run) in inputs.runs.iter().enumerate() {
        for m in run
            .metrics
            .iter()
            .flat_map(|f| f.metrics.iter())
            .filter(shown)
        {
            if let Some((_, label)) = m.name.split_once('@') {
                if !keys.iter().any(|(kr, kl)| *kr == r && kl == label) {
                    keys.push((r, label.to_owned()));
                }
            }
        }
    }
    labelled.columns = keys
        .iter()
        .map(|(r, l)| {
            if several {
                format!("{} · {l}", inputs.runs[*r].label)
            } else {
                l.clone()
            }
        })
        .collect();
    for (r, run) in inputs.runs.iter().enumerate() {
        for m in run
            .metrics
            .iter()
            .flat_map(|f| f.metrics.iter())
            .filter(shown)
        {
            let (table, base, col) = match m.name.split_once('@') {
                None => (&mut plain, m.name.as_str(), r),
                Some((base, label)) => {
                    let col = keys
                        .iter()
                        .position(|(kr, kl)| *kr == r && kl == label)
                        .expect("collected above");
                    (&mut labelled, base, col)
                }
            };
            let width = table.columns.len();
            let row = match table.rows.iter().position(|(b, _)| b == base) {
                Some(i) => i,
                None => {
                    table.rows.push((base.to_owned(), vec![None; width]));
                    table.rows.len() - 1
                }
            };
            table.rows[row].1[col] = Some(m);
        }
    }
    [plain, labelled]
        .into_iter()
        .filter(|t| !t.rows.is_empty())
        .collect()
}

/// A value with its standard error, to a precision that suits its size.
pub fn format_value(m: &Metric) -> String {
    let v = format_number(m.value);
    match m.stderr {
        Some(se) if se.is_finite() => format!("{v} ± {}", format_number(se)),
        _ => v,
    }
}

pub(crate) fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 || (a.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.3}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.2e}")
    }
}

/// The arrow that says which direction is better.
pub fn better_symbol(b: Better) -> &'static str {
    match b {
        Better::Higher => "↑",
        Better::Lower => "↓",
        Better::Neither => "·",
    }
}

fn md_cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace('\n', " ")
}

/// The whole `summary.md`. `figures` lists the figure files, relative to the report folder.
pub fn summary_markdown(inputs: &ReportInputs, title: &str, figures: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md_cell(title));
    let found = findings(inputs);
    if !found.is_empty() {
        out.push_str("## Findings\n\n");
        for f in &found {
            let shown: Vec<&str> = f
                .figures
                .iter()
                .copied()
                .filter(|name| figures.iter().any(|file| figure_stem(file) == *name))
                .collect();
            let _ = write!(out, "- **{}: {}.** {}", f.title, f.verdict.as_str(), f.text);
            if !shown.is_empty() {
                let _ = write!(out, " (figures: {})", shown.join(", "));
            }
            out.push('\n');
        }
        out.push_str("\n## Headline metrics\n\n");
    }
    let tables = metric_tables(inputs);
    let corrupt = !corrupt_folders(inputs).is_empty();
    if tables.is_empty() && corrupt {
        out.push_str("Every headline metric is an information-loss one: see below.\n");
    } else if tables.is_empty() {
        out.push_str("No headline metrics: the analysis folders have no `metrics.json`.\n");
    } else {
        for table in &tables {
            if !table.title.is_empty() {
                let _ = writeln!(out, "\nMetrics {}:\n", table.title);
            }
            let columns: Vec<String> = table.columns.iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| metric | unit | better | {} |", columns.join(" | "));
            let _ = writeln!(out, "|---|---|:-:|{}", "---:|".repeat(columns.len()));
            for (name, row) in &table.rows {
                let first = row.iter().flatten().next().expect("a row has a value");
                let cells: Vec<String> = row
                    .iter()
                    .map(|m| m.map(format_value).unwrap_or_else(|| "–".into()))
                    .collect();
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    md_cell(name),
                    md_cell(&first.unit),
                    better_symbol(first.better),
                    cells.join(" | ")
                );
            }
        }
        out.push_str("\n± is the bootstrap standard error over prompts; ↑ higher is better, ↓ lower is better.\n");
    }
    if corrupt {
        information_loss(&mut out, inputs, figures);
    }
    if let Some(sweep) = &inputs.sweep {
        sweep_table(&mut out, sweep);
    }
    if !figures.is_empty() {
        out.push_str("\n## Figures\n\n");
        for f in figures {
            let _ = writeln!(out, "- `{}`", md_cell(f));
        }
    }
    out
}

/// The corrupt folders' metrics: by masked ratio, then per folder, and their figures.
fn information_loss(out: &mut String, inputs: &ReportInputs, figures: &[String]) {
    let folders = corrupt_folders(inputs);
    out.push_str("\n## Information loss\n\n");
    out.push_str(
        "What the model loses at masked positions of clean texts (`collapse-probe corrupt`), by the share \
         of positions masked; deciles are corpus-frequency deciles (1 most frequent, 10 rarest).\n",
    );
    let table = ratio_table(&folders);
    if !table.rows.is_empty() {
        let header: Vec<String> = table
            .ratios
            .iter()
            .map(|r| format!("ratio={}", md_cell(r)))
            .collect();
        let _ = writeln!(
            out,
            "\n| metric | folder | unit | better | {} |",
            header.join(" | ")
        );
        let _ = writeln!(out, "|---|---|---|:-:|{}", "---:|".repeat(header.len()));
        for (base, what, folder, cells) in &table.rows {
            let first = cells.iter().flatten().next().expect("a row has a value");
            let values: Vec<String> = cells
                .iter()
                .map(|m| m.map(format_value).unwrap_or_else(|| "–".into()))
                .collect();
            let _ = writeln!(
                out,
                "| `{base}` ({what}) | {} | {} | {} | {} |",
                md_cell(folder),
                md_cell(&first.unit),
                better_symbol(first.better),
                values.join(" | ")
            );
        }
    }
    let rows = folder_rows(&folders);
    if !rows.is_empty() {
        let names: Vec<String> = folders.iter().map(|f| md_cell(&f.name)).collect();
        let _ = writeln!(out, "\n| metric | unit | better | {} |", names.join(" | "));
        let _ = writeln!(out, "|---|---|:-:|{}", "---:|".repeat(names.len()));
        for (base, cells) in &rows {
            let first = cells.iter().flatten().next().expect("a row has a value");
            let values: Vec<String> = cells
                .iter()
                .map(|m| m.map(format_value).unwrap_or_else(|| "–".into()))
                .collect();
            let _ = writeln!(
                out,
                "| `{base}` | {} | {} | {} |",
                md_cell(&first.unit),
                better_symbol(first.better),
                values.join(" | ")
            );
        }
    }
    out.push_str("\n± is the bootstrap standard error over texts.\n");
    let shown: Vec<String> = crate::corrupt_figures::FIGURES
        .iter()
        .filter(|name| figures.iter().any(|f| figure_stem(f) == **name))
        .map(|name| format!("`{name}`"))
        .collect();
    if !shown.is_empty() {
        let _ = writeln!(
            out,
            "\nFigures: {} (files under `figures/`).",
            shown.join(", ")
        );
    }
}

/// The figure name of a figure file (`figures/top_tokens_double.svg` → `top_tokens`).
fn figure_stem(file: &str) -> &str {
    let name = file.rsplit('/').next().unwrap_or(file);
    let name = name.split('.').next().unwrap_or(name);
    name.strip_suffix("_double")
        .or_else(|| name.strip_suffix("_single"))
        .unwrap_or(name)
}

/// Whether a sweep metric is one of the headline ones the summary's sweep table shows.
fn headline_sweep_metric(base: &str) -> bool {
    (base.starts_with("trap.unseen_") && base.ends_with("gram_rate"))
        || matches!(
            base,
            "trap.adjacent_duplicate_rate"
                | "trap.rep_2"
                | "trap.tokens_per_step"
                | "collapse.frequent_share.far"
                | "collapse.entropy.far"
                | "collapse.onset"
        )
}

/// A table of the headline metrics (rows, with the schedule when there are several) against the
/// swept values (columns).
fn sweep_table(out: &mut String, sweep: &SweepData) {
    let mut values: Vec<f64> = Vec::new();
    let mut rows: Vec<(String, Vec<(f64, &Metric)>)> = Vec::new();
    for m in &sweep.metrics {
        let Some((base, schedule, value)) = sweep.value_of(&m.name) else {
            continue;
        };
        if !headline_sweep_metric(base) {
            continue;
        }
        if !values.contains(&value) {
            values.push(value);
        }
        let key = if schedule.is_empty() {
            base.to_owned()
        } else {
            format!("{base}@{schedule}")
        };
        match rows.iter_mut().find(|(k, _)| *k == key) {
            Some((_, cells)) => cells.push((value, m)),
            None => rows.push((key, vec![(value, m)])),
        }
    }
    if rows.is_empty() {
        return;
    }
    values.sort_by(f64::total_cmp);
    let _ = writeln!(out, "\n## Sweep over `{}`\n", md_cell(&sweep.param));
    let header: Vec<String> = values
        .iter()
        .map(|v| format!("{}={v}", md_cell(&sweep.param)))
        .collect();
    let _ = writeln!(out, "| metric | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(values.len()));
    for (key, cells) in &rows {
        let row: Vec<String> = values
            .iter()
            .map(|v| {
                cells
                    .iter()
                    .find(|(x, _)| x == v)
                    .map(|(_, m)| format_value(m))
                    .unwrap_or_else(|| "–".into())
            })
            .collect();
        let _ = writeln!(out, "| `{}` | {} |", md_cell(key), row.join(" | "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::RunData;
    use cp_records::MetricsFile;

    fn metric(name: &str, value: f64, stderr: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: "fraction".into(),
            better: Better::Lower,
            stderr,
            n: 10,
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
    fn labelled_metrics_get_a_column_per_decode_folder() {
        let inputs = ReportInputs {
            runs: vec![run(
                "r",
                vec![
                    metric("x", 0.5, None),
                    metric("t@a", 0.1, None),
                    metric("t@b", 0.2, None),
                    metric("u@b", 0.3, None),
                ],
            )],
            ..ReportInputs::default()
        };
        let md = summary_markdown(&inputs, "t", &[]);
        assert!(
            md.contains("| metric | unit | better | r |\n|---|---|:-:|---:|\n| `x` |"),
            "{md}"
        );
        assert!(
            md.contains("Metrics per decode folder:\n\n| metric | unit | better | a | b |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| `t` | fraction | ↓ | 0.1000 | 0.2000 |\n| `u` | fraction | ↓ | – | 0.3000 |"
            ),
            "{md}"
        );
    }

    #[test]
    fn summary_has_one_column_per_run_and_a_dash_for_missing_metrics() {
        let inputs = ReportInputs {
            runs: vec![
                run(
                    "a|b",
                    vec![metric("x", 0.5, Some(0.01)), metric("y", 2.0, None)],
                ),
                run("c", vec![metric("x", 0.25, None)]),
            ],
            ..ReportInputs::default()
        };
        let md = summary_markdown(&inputs, "t", &["figures/e.svg".into()]);
        let expected = "# t\n\n\
| metric | unit | better | a\\|b | c |\n\
|---|---|:-:|---:|---:|\n\
| `x` | fraction | ↓ | 0.5000 ± 0.0100 | 0.2500 |\n\
| `y` | fraction | ↓ | 2 | – |\n\
\n± is the bootstrap standard error over prompts; ↑ higher is better, ↓ lower is better.\n\
\n## Figures\n\n- `figures/e.svg`\n";
        assert_eq!(md, expected);
    }

    #[test]
    fn numbers_keep_sensible_precision() {
        for (v, s) in [
            (0.0, "0"),
            (3.0, "3"),
            (2.71838, "2.718"),
            (0.123456, "0.1235"),
            (0.00001234, "1.23e-5"),
            (12345.6, "12346"),
        ] {
            assert_eq!(format_number(v), s);
        }
    }
}
