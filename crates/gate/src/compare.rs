//! Comparing a run's metrics with a baseline.

use std::path::{Path, PathBuf};

use cp_records::{Better, MetricsFile};

use crate::baseline::{Baseline, Tolerance};
use crate::error::GateError;

/// The outcome for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the tolerance of the baseline.
    Pass,
    /// Better than the baseline by more than the tolerance; passes, and suggests `--update-baseline`.
    Improved,
    /// Worse than the baseline by more than the tolerance (for `neither`: moved more than it either way),
    /// or the run's value is not a number.
    Regressed,
}

impl Verdict {
    /// The word the table prints.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Improved => "improved",
            Verdict::Regressed => "REGRESSED",
        }
    }
}

/// One compared metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub better: Better,
    pub baseline: f64,
    pub run: f64,
    /// `run - baseline`.
    pub delta: f64,
    pub tolerance: Tolerance,
    /// The tolerance as an absolute amount in the metric's unit.
    pub allowed: f64,
    pub unit: Option<String>,
    pub verdict: Verdict,
    /// 1-based line of the metric in the baseline file.
    pub line: Option<usize>,
}

impl Row {
    /// How far the run moved in the worse direction (negative: it improved).
    pub fn worsening(&self) -> f64 {
        match self.better {
            Better::Higher => self.baseline - self.run,
            Better::Lower => self.run - self.baseline,
            Better::Neither => (self.run - self.baseline).abs(),
        }
    }

    /// One sentence explaining a verdict, for annotations and JUnit failures.
    pub fn explain(&self) -> String {
        let direction = match self.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
            Better::Neither => "should not move",
        };
        format!(
            "{} {}: run {} vs baseline {} (delta {}, {}; tolerance {})",
            self.name,
            match self.verdict {
                Verdict::Pass => "within tolerance",
                Verdict::Improved => "improved",
                Verdict::Regressed => "regressed",
            },
            crate::render::num(self.run),
            crate::render::num(self.baseline),
            crate::render::signed(self.delta),
            direction,
            crate::render::tolerance(self),
        )
    }
}

/// Every gated metric of a baseline compared with a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub baseline_path: PathBuf,
    pub run_path: PathBuf,
    /// In baseline order.
    pub rows: Vec<Row>,
    /// Run metrics the baseline does not name (not gated).
    pub ungated: Vec<String>,
    /// Metrics whose `better` differs between the baseline and the run (the baseline's is used).
    pub direction_mismatches: Vec<String>,
}

impl Comparison {
    /// The rows that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.verdict == Verdict::Regressed)
    }

    /// True when nothing regressed.
    pub fn passed(&self) -> bool {
        self.regressions().next().is_none()
    }
}

/// Compares `run` (read from `run_path`) with `baseline`.
///
/// A metric regresses when it moved in its worse direction by more than its tolerance; a move of exactly the
/// tolerance passes (up to 1e-12 relative rounding slack, so that a tolerance written as the exact difference of
/// two decimals is not failed by binary rounding). Every baseline metric missing from the run is an error.
pub fn compare(
    baseline: &Baseline,
    run: &MetricsFile,
    run_path: &Path,
) -> Result<Comparison, GateError> {
    let missing: Vec<String> = baseline
        .metrics
        .iter()
        .filter(|m| run.get(&m.name).is_none())
        .map(|m| m.name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(GateError::MissingMetrics {
            run: run_path.to_owned(),
            baseline: baseline.path.clone(),
            names: missing,
        });
    }
    let mut rows = Vec::with_capacity(baseline.metrics.len());
    let mut direction_mismatches = Vec::new();
    for b in &baseline.metrics {
        let r = run.get(&b.name).expect("checked above");
        if r.better != b.better {
            direction_mismatches.push(b.name.clone());
        }
        let allowed = match b.tolerance {
            Tolerance::Abs(x) => x,
            Tolerance::Rel(x) => x * b.value.abs(),
            Tolerance::Stderr(k) => {
                if b.stderr.is_none() && r.stderr.is_none() {
                    return Err(GateError::NoStderr {
                        baseline: baseline.path.clone(),
                        run: run_path.to_owned(),
                        metric: b.name.clone(),
                    });
                }
                let (sb, sr) = (b.stderr.unwrap_or(0.0), r.stderr.unwrap_or(0.0));
                k * (sb * sb + sr * sr).sqrt()
            }
        };
        let mut row = Row {
            name: b.name.clone(),
            better: b.better,
            baseline: b.value,
            run: r.value,
            delta: r.value - b.value,
            tolerance: b.tolerance,
            allowed,
            unit: b.unit.clone().or_else(|| Some(r.unit.clone())),
            verdict: Verdict::Pass,
            line: b.line,
        };
        let slack = 1e-12 * b.value.abs().max(r.value.abs()).max(allowed);
        let worse = row.worsening();
        row.verdict = if !r.value.is_finite() || worse > allowed + slack {
            Verdict::Regressed
        } else if b.better != Better::Neither && -worse > allowed + slack {
            Verdict::Improved
        } else {
            Verdict::Pass
        };
        rows.push(row);
    }
    let ungated = run
        .metrics
        .iter()
        .filter(|m| !baseline.metrics.iter().any(|b| b.name == m.name))
        .map(|m| m.name.clone())
        .collect();
    Ok(Comparison {
        baseline_path: baseline.path.clone(),
        run_path: run_path.to_owned(),
        rows,
        ungated,
        direction_mismatches,
    })
}

/// The metrics file of a `--run` path: the path itself when it is a file, else `metrics.json` in it
/// (an analysis folder), else `analysis/metrics.json` in it (a folder written by `collapse-probe run`).
pub fn find_metrics(path: &Path) -> Result<PathBuf, GateError> {
    if path.is_file() {
        return Ok(path.to_owned());
    }
    let tried = vec![
        path.join(cp_records::files::METRICS_JSON),
        path.join("analysis").join(cp_records::files::METRICS_JSON),
    ];
    tried
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| GateError::NoMetrics {
            path: path.to_owned(),
            tried,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::BaselineMetric;
    use cp_records::Metric;

    fn baseline(value: f64, better: Better, tolerance: Tolerance, stderr: Option<f64>) -> Baseline {
        Baseline {
            path: "b.toml".into(),
            source: None,
            header: None,
            metrics: vec![BaselineMetric {
                name: "m".into(),
                value,
                better,
                tolerance,
                stderr,
                unit: None,
                line: Some(3),
            }],
        }
    }

    fn run(value: f64, better: Better, stderr: Option<f64>) -> MetricsFile {
        MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics: vec![Metric {
                name: "m".into(),
                value,
                unit: "fraction".into(),
                better,
                stderr,
                n: 10,
            }],
        }
    }

    /// Compares one metric and checks its verdict.
    fn check(
        base: f64,
        better: Better,
        tol: Tolerance,
        base_se: Option<f64>,
        value: f64,
        run_se: Option<f64>,
        expected: Verdict,
    ) {
        let c = compare(
            &baseline(base, better, tol, base_se),
            &run(value, better, run_se),
            Path::new("r"),
        )
        .unwrap();
        assert_eq!(
            c.rows[0].verdict, expected,
            "{base} -> {value} ({better:?}, {tol:?})"
        );
        assert_eq!(c.passed(), expected != Verdict::Regressed);
    }

    #[test]
    fn absolute_tolerance() {
        use Verdict::*;
        let t = Tolerance::Abs(0.1);
        check(0.5, Better::Lower, t, None, 0.6, None, Pass); // exactly the tolerance passes
        check(0.5, Better::Lower, t, None, 0.61, None, Regressed);
        check(0.5, Better::Lower, t, None, 0.39, None, Improved);
        check(0.5, Better::Higher, t, None, 0.39, None, Regressed);
        check(0.5, Better::Higher, t, None, 0.61, None, Improved);
        check(0.5, Better::Higher, t, None, 0.45, None, Pass);
        check(0.5, Better::Neither, t, None, 0.61, None, Regressed);
        check(0.5, Better::Neither, t, None, 0.39, None, Regressed);
        check(0.5, Better::Neither, t, None, 0.55, None, Pass);
        check(
            0.5,
            Better::Lower,
            Tolerance::Abs(0.0),
            None,
            0.5,
            None,
            Pass,
        );
        check(0.5, Better::Lower, t, None, f64::NAN, None, Regressed);
    }

    #[test]
    fn relative_tolerance_scales_with_the_baseline() {
        use Verdict::*;
        let t = Tolerance::Rel(0.1);
        check(2.0, Better::Lower, t, None, 2.2, None, Pass);
        check(2.0, Better::Lower, t, None, 2.21, None, Regressed);
        check(-2.0, Better::Higher, t, None, -2.21, None, Regressed);
        check(0.0, Better::Lower, t, None, 1e-9, None, Regressed);
    }

    #[test]
    fn stderr_tolerance_uses_the_standard_error_of_the_difference() {
        use Verdict::*;
        // sqrt(0.03² + 0.04²) = 0.05; two of them allow 0.1.
        let t = Tolerance::Stderr(2.0);
        check(1.0, Better::Higher, t, Some(0.03), 0.9, Some(0.04), Pass);
        check(
            1.0,
            Better::Higher,
            t,
            Some(0.03),
            0.89,
            Some(0.04),
            Regressed,
        );
        check(1.0, Better::Higher, t, None, 0.9, Some(0.05), Pass);
        check(1.0, Better::Higher, t, Some(0.05), 0.89, None, Regressed);
        let err = compare(
            &baseline(1.0, Better::Higher, t, None),
            &run(1.0, Better::Higher, None),
            Path::new("r"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("`m`"), "{err}");
    }

    #[test]
    fn missing_metric_is_an_error_naming_it() {
        let b = baseline(1.0, Better::Lower, Tolerance::Abs(0.1), None);
        let mut r = run(1.0, Better::Lower, None);
        r.metrics[0].name = "other".into();
        let err = compare(&b, &r, Path::new("runs/x"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`m`") && err.contains("runs/x") && err.contains("b.toml"),
            "{err}"
        );
    }

    #[test]
    fn ungated_and_mismatched_directions_are_reported() {
        let b = baseline(1.0, Better::Lower, Tolerance::Abs(0.1), None);
        let mut r = run(1.0, Better::Higher, None);
        r.metrics.push(Metric {
            name: "extra".into(),
            value: 0.0,
            unit: "x".into(),
            better: Better::Lower,
            stderr: None,
            n: 1,
        });
        let c = compare(&b, &r, Path::new("r")).unwrap();
        assert_eq!(c.ungated, vec!["extra".to_string()]);
        assert_eq!(c.direction_mismatches, vec!["m".to_string()]);
    }

    #[test]
    fn finds_metrics_in_analysis_and_run_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_metrics(dir.path())
            .unwrap_err()
            .to_string()
            .contains("analysis/metrics.json"));
        std::fs::create_dir(dir.path().join("analysis")).unwrap();
        std::fs::write(dir.path().join("analysis/metrics.json"), "{}").unwrap();
        assert_eq!(
            find_metrics(dir.path()).unwrap(),
            dir.path().join("analysis/metrics.json")
        );
        std::fs::write(dir.path().join("metrics.json"), "{}").unwrap();
        assert_eq!(
            find_metrics(dir.path()).unwrap(),
            dir.path().join("metrics.json")
        );
        let file = dir.path().join("analysis/metrics.json");
        assert_eq!(find_metrics(&file).unwrap(), file);
    }
}
