//! `summary.md`: the headline metrics as a Markdown table, for terminals and CI job summaries.

use std::fmt::Write as _;

use cp_records::{Better, Metric};

use crate::inputs::ReportInputs;

/// Metric names in first-appearance order across runs.
pub(crate) fn metric_names(inputs: &ReportInputs) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in &inputs.runs {
        for m in run.metrics.iter().flat_map(|f| f.metrics.iter()) {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    names
}

/// The metric `name` of every run (None where a run lacks it).
pub(crate) fn metric_row<'a>(inputs: &'a ReportInputs, name: &str) -> Vec<Option<&'a Metric>> {
    inputs.runs.iter().map(|r| r.metrics.as_ref().and_then(|m| m.get(name))).collect()
}

/// A value with its standard error, to a precision that suits its size.
pub fn format_value(m: &Metric) -> String {
    let v = format_number(m.value);
    match m.stderr {
        Some(se) if se.is_finite() => format!("{v} ± {}", format_number(se)),
        _ => v,
    }
}

fn format_number(v: f64) -> String {
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
    s.replace('\\', "\\\\").replace('|', "\\|").replace('\n', " ")
}

/// The whole `summary.md`. `figures` lists the figure files, relative to the report folder.
pub fn summary_markdown(inputs: &ReportInputs, title: &str, figures: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md_cell(title));
    let labels: Vec<String> = inputs.runs.iter().map(|r| md_cell(&r.label)).collect();
    let names = metric_names(inputs);
    if names.is_empty() {
        out.push_str("No headline metrics: the analysis folders have no `metrics.json`.\n");
    } else {
        let _ = writeln!(out, "| metric | unit | better | {} |", labels.join(" | "));
        let _ = writeln!(out, "|---|---|:-:|{}", "---:|".repeat(labels.len()));
        for name in &names {
            let row = metric_row(inputs, name);
            let first = row.iter().flatten().next().expect("name comes from a run");
            let cells: Vec<String> = row.iter().map(|m| m.map(format_value).unwrap_or_else(|| "–".into())).collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                md_cell(name),
                md_cell(&first.unit),
                better_symbol(first.better),
                cells.join(" | ")
            );
        }
        out.push_str("\n± is the bootstrap standard error over prompts; ↑ higher is better, ↓ lower is better.\n");
    }
    if !figures.is_empty() {
        out.push_str("\n## Figures\n\n");
        for f in figures {
            let _ = writeln!(out, "- `{}`", md_cell(f));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::RunData;
    use cp_records::MetricsFile;

    fn metric(name: &str, value: f64, stderr: Option<f64>) -> Metric {
        Metric { name: name.into(), value, unit: "fraction".into(), better: Better::Lower, stderr, n: 10 }
    }

    fn run(label: &str, metrics: Vec<Metric>) -> RunData {
        RunData {
            label: label.into(),
            metrics: Some(MetricsFile { schema_version: 1, sources: vec![], metrics }),
            ..RunData::default()
        }
    }

    #[test]
    fn summary_has_one_column_per_run_and_a_dash_for_missing_metrics() {
        let inputs = ReportInputs {
            runs: vec![
                run("a|b", vec![metric("x", 0.5, Some(0.01)), metric("y", 2.0, None)]),
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
        for (v, s) in [(0.0, "0"), (3.0, "3"), (2.71828, "2.718"), (0.123456, "0.1235"), (0.00001234, "1.23e-5"), (12345.6, "12346")] {
            assert_eq!(format_number(v), s);
        }
    }
}
