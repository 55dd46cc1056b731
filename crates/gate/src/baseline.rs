//! The baseline file: committed expected values of a run's metrics, each with a direction and a tolerance.
//!
//! ```toml
//! schema_version = 1
//! source = "runs/toy-trap/analysis/metrics.json"
//!
//! [[metric]]
//! name = "trap.unseen_2gram_rate"
//! value = 0.04
//! better = "lower"
//! tolerance = { abs = 0.02 }
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use cp_records::{Better, MetricsFile};
use serde::Deserialize;
use toml::Spanned;

use crate::error::{read_text, toml_error, GateError};

/// The only baseline schema this version reads and writes.
pub const BASELINE_SCHEMA_VERSION: u32 = 1;

/// How far a metric may move in its worse direction before the gate calls it a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tolerance {
    /// An absolute amount, in the metric's unit: `{ abs = 0.02 }`.
    Abs(f64),
    /// A fraction of the baseline's magnitude: `{ rel = 0.1 }` allows 10% of `|baseline|`.
    Rel(f64),
    /// A multiple of the standard error of the difference, `sqrt(se_baseline² + se_run²)`: `{ stderr = 3.0 }`.
    Stderr(f64),
}

impl Tolerance {
    /// The TOML inline table that writes this tolerance, e.g. `{ rel = 0.1 }`.
    pub fn to_toml(self) -> String {
        match self {
            Tolerance::Abs(x) => format!("{{ abs = {} }}", toml_float(x)),
            Tolerance::Rel(x) => format!("{{ rel = {} }}", toml_float(x)),
            Tolerance::Stderr(x) => format!("{{ stderr = {} }}", toml_float(x)),
        }
    }
}

/// One gated metric of a baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineMetric {
    /// The metric's name in `metrics.json`, e.g. `trap.unseen_2gram_rate`.
    pub name: String,
    /// The expected value.
    pub value: f64,
    /// Which direction is an improvement; the baseline's word wins over the run's.
    pub better: Better,
    pub tolerance: Tolerance,
    /// Standard error of `value` when it was recorded; used by `{ stderr = k }` tolerances.
    pub stderr: Option<f64>,
    /// Unit of `value`, for people reading the file.
    pub unit: Option<String>,
    /// 1-based line of the metric's `[[metric]]` entry in the file it was read from.
    pub line: Option<usize>,
}

/// A baseline file.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// The file it was read from (or will be written to); messages and annotations name it.
    pub path: PathBuf,
    /// Where the values came from (a metrics file), for people reading the file.
    pub source: Option<String>,
    /// The file's opening comment lines, `#` included: `--update-baseline` writes them back, so
    /// a hand-written note on how the values were produced and why the tolerances are what they
    /// are survives an update. `None` for a new baseline, which gets the generic header.
    pub header: Option<String>,
    pub metrics: Vec<BaselineMetric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    schema_version: Spanned<u32>,
    source: Option<String>,
    #[serde(default)]
    metric: Vec<Spanned<RawMetric>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: Spanned<String>,
    value: f64,
    better: Better,
    tolerance: RawTolerance,
    stderr: Option<f64>,
    unit: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTolerance {
    abs: Option<f64>,
    rel: Option<f64>,
    stderr: Option<f64>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

impl Baseline {
    /// Reads and validates a baseline file.
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses baseline text; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, GateError> {
        let raw: RawBaseline = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let invalid = |key: String, message: String| GateError::Invalid {
            path: path.to_owned(),
            key,
            message,
        };
        if *raw.schema_version.get_ref() != BASELINE_SCHEMA_VERSION {
            return Err(invalid(
                "schema_version".into(),
                format!(
                    "this collapse-probe reads baseline schema {BASELINE_SCHEMA_VERSION}, the file has {} (line {})",
                    raw.schema_version.get_ref(),
                    line_of(text, raw.schema_version.span().start)
                ),
            ));
        }
        let mut metrics: Vec<BaselineMetric> = Vec::with_capacity(raw.metric.len());
        for (i, entry) in raw.metric.into_iter().enumerate() {
            let line = line_of(text, entry.span().start);
            let m = entry.into_inner();
            let name_line = line_of(text, m.name.span().start);
            let name = m.name.into_inner();
            let key = |field: &str| format!("metric[{i}].{field} (`{name}`, line {name_line})");
            if name.is_empty() {
                return Err(invalid(key("name"), "empty metric name".into()));
            }
            if let Some(prev) = metrics.iter().find(|p| p.name == name) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "duplicate metric, first given at line {}",
                        prev.line.unwrap_or(0)
                    ),
                ));
            }
            if !m.value.is_finite() {
                return Err(invalid(
                    key("value"),
                    format!("must be a finite number, found {}", m.value),
                ));
            }
            if let Some(se) = m.stderr {
                if !(se.is_finite() && se >= 0.0) {
                    return Err(invalid(
                        key("stderr"),
                        format!("must be a finite number >= 0, found {se}"),
                    ));
                }
            }
            let t = m.tolerance;
            let tolerance = match (t.abs, t.rel, t.stderr) {
                (Some(x), None, None) => Tolerance::Abs(x),
                (None, Some(x), None) => Tolerance::Rel(x),
                (None, None, Some(x)) => Tolerance::Stderr(x),
                _ => {
                    return Err(invalid(
                        key("tolerance"),
                        "give exactly one of `abs`, `rel` or `stderr`, e.g. `tolerance = { abs = 0.02 }`".into(),
                    ))
                }
            };
            let amount = match tolerance {
                Tolerance::Abs(x) | Tolerance::Rel(x) | Tolerance::Stderr(x) => x,
            };
            if !(amount.is_finite() && amount >= 0.0) {
                return Err(invalid(
                    key("tolerance"),
                    format!("must be a finite number >= 0, found {amount}"),
                ));
            }
            metrics.push(BaselineMetric {
                name,
                value: m.value,
                better: m.better,
                tolerance,
                stderr: m.stderr,
                unit: m.unit,
                line: Some(line),
            });
        }
        Ok(Baseline {
            path: path.to_owned(),
            source: raw.source,
            header: leading_comments(text),
            metrics,
        })
    }

    /// A new baseline holding every metric of a run. The direction comes from the run;
    /// the tolerance is three standard errors where the run gives one and 5% of the value otherwise.
    /// Both are starting points for a person to review, and [`Baseline::to_toml`] says so in the file.
    pub fn from_run(path: &Path, run: &MetricsFile, source: &str) -> Self {
        let metrics = run
            .metrics
            .iter()
            .map(|m| BaselineMetric {
                name: m.name.clone(),
                value: m.value,
                better: m.better,
                tolerance: match m.stderr {
                    Some(se) if se > 0.0 => Tolerance::Stderr(3.0),
                    _ => Tolerance::Rel(0.05),
                },
                stderr: m.stderr,
                unit: Some(m.unit.clone()),
                line: None,
            })
            .collect();
        Baseline {
            path: path.to_owned(),
            source: Some(source.to_owned()),
            header: None,
            metrics,
        }
    }

    /// The same baseline with every value (and standard error and unit) taken from the run;
    /// names, directions and tolerances are kept. Fails naming every baseline metric the run lacks.
    pub fn updated_from(
        &self,
        run: &MetricsFile,
        run_path: &Path,
        source: &str,
    ) -> Result<Self, GateError> {
        let missing: Vec<String> = self
            .metrics
            .iter()
            .filter(|m| run.get(&m.name).is_none())
            .map(|m| m.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(GateError::MissingMetrics {
                run: run_path.to_owned(),
                baseline: self.path.clone(),
                names: missing,
            });
        }
        let metrics = self
            .metrics
            .iter()
            .map(|b| {
                let r = run.get(&b.name).expect("checked above");
                BaselineMetric {
                    value: r.value,
                    stderr: r.stderr,
                    unit: Some(r.unit.clone()),
                    line: None,
                    ..b.clone()
                }
            })
            .collect();
        Ok(Baseline {
            path: self.path.clone(),
            source: Some(source.to_owned()),
            header: self.header.clone(),
            metrics,
        })
    }

    /// The baseline as TOML, in the layout `--update-baseline` writes. Reading it back with
    /// [`Baseline::parse`] gives the same values bit for bit (floats are written in their shortest exact form).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        match &self.header {
            Some(header) => out.push_str(header),
            None => {
                out.push_str("# collapse-probe check baseline.\n");
                out.push_str("# Values are rewritten by `collapse-probe check --update-baseline`, which keeps each metric's\n");
                out.push_str("# `better` and `tolerance`: review those by hand. A regression is a move in the worse direction\n");
                out.push_str("# (`better`; `neither` = either direction) by more than the tolerance: { abs = x } in the metric's\n");
                out.push_str("# unit, { rel = x } times |value|, or { stderr = k } times sqrt(stderr² + run stderr²).\n");
            }
        }
        let _ = writeln!(out, "schema_version = {BASELINE_SCHEMA_VERSION}");
        if let Some(source) = &self.source {
            let _ = writeln!(out, "source = {}", toml_string(source));
        }
        for m in &self.metrics {
            out.push_str("\n[[metric]]\n");
            let _ = writeln!(out, "name = {}", toml_string(&m.name));
            let _ = writeln!(out, "value = {}", toml_float(m.value));
            let better = match m.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
                Better::Neither => "neither",
            };
            let _ = writeln!(out, "better = \"{better}\"");
            let _ = writeln!(out, "tolerance = {}", m.tolerance.to_toml());
            if let Some(se) = m.stderr {
                let _ = writeln!(out, "stderr = {}", toml_float(se));
            }
            if let Some(unit) = &m.unit {
                let _ = writeln!(out, "unit = {}", toml_string(unit));
            }
        }
        out
    }

    /// Writes [`Baseline::to_toml`] to `self.path` atomically.
    pub fn write(&self) -> Result<(), GateError> {
        let text = self.to_toml();
        cp_records::atomic_write(&self.path, |w| {
            std::io::Write::write_all(w, text.as_bytes())
        })?;
        Ok(())
    }
}

/// The comment lines (and blank lines between them) that open a file, each with its newline;
/// `None` when the file does not open with a comment.
fn leading_comments(text: &str) -> Option<String> {
    let mut header = String::new();
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && !header.is_empty()) {
            header.push_str(line);
        } else {
            break;
        }
    }
    let header = header.trim_end().to_string();
    (!header.is_empty()).then(|| header + "\n")
}

/// A float in TOML syntax, shortest form that reads back to the same bits.
pub(crate) fn toml_float(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        // `{:?}` is the shortest round-trip form and always has a `.` or an exponent, both valid TOML floats.
        format!("{x:?}")
    }
}

/// A TOML basic string with the escapes TOML requires.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cp_records::Metric;

    const GOOD: &str = r#"
schema_version = 1

[[metric]]
name = "trap.unseen_2gram_rate"
value = 0.04
better = "lower"
tolerance = { abs = 0.02 }

[[metric]]
name = "collapse.entropy.far"
value = 3
better = "higher"
tolerance = { stderr = 3.0 }
stderr = 0.1
unit = "nats"
"#;

    fn parse(text: &str) -> Result<Baseline, GateError> {
        Baseline::parse(text, Path::new("b.toml"))
    }

    /// Parses `text`, expects an error, and checks that its message contains every one of `needles`.
    fn check_err(text: &str, needles: &[&str]) {
        let err = parse(text).expect_err("expected an error").to_string();
        for needle in needles {
            assert!(err.contains(needle), "`{needle}` not in: {err}");
        }
    }

    #[test]
    fn parses_a_good_file() {
        let b = parse(GOOD).unwrap();
        assert_eq!(b.metrics.len(), 2);
        assert_eq!(b.metrics[0].name, "trap.unseen_2gram_rate");
        assert_eq!(b.metrics[0].tolerance, Tolerance::Abs(0.02));
        assert_eq!(b.metrics[0].line, Some(4));
        assert_eq!(b.metrics[1].value, 3.0, "an integer value reads as a float");
        assert_eq!(b.metrics[1].better, Better::Higher);
        assert_eq!(b.metrics[1].tolerance, Tolerance::Stderr(3.0));
        assert_eq!(b.metrics[1].stderr, Some(0.1));
    }

    #[test]
    fn unknown_key_is_named_with_file_and_line() {
        check_err(
            &GOOD.replace("tolerance = { abs", "tolerence = { abs"),
            &["b.toml:8:1", "unknown field `tolerence`"],
        );
        check_err(
            &GOOD.replace("{ abs = 0.02 }", "{ absolute = 0.02 }"),
            &["b.toml:8:", "unknown field `absolute`"],
        );
        check_err(
            &format!("colour = 1\n{GOOD}"),
            &["b.toml:1:1", "unknown field `colour`"],
        );
    }

    #[test]
    fn missing_value_is_named() {
        check_err(
            &GOOD.replace("value = 0.04\n", ""),
            &["b.toml:", "missing field `value`"],
        );
        check_err(
            &GOOD.replace("schema_version = 1\n", ""),
            &["missing field `schema_version`"],
        );
    }

    #[test]
    fn wrong_types_are_named_with_their_line() {
        check_err(
            &GOOD.replace("value = 0.04", "value = \"0.04\""),
            &["b.toml:6:9", "in `value = \"0.04\"`"],
        );
        check_err(
            &GOOD.replace("better = \"lower\"", "better = \"smaller\""),
            &["b.toml:7:", "unknown variant `smaller`"],
        );
        check_err(
            &GOOD.replace("tolerance = { abs = 0.02 }", "tolerance = 0.02"),
            &["b.toml:8:", "tolerance = 0.02"],
        );
    }

    #[test]
    fn bad_tolerances_are_rejected() {
        check_err(
            &GOOD.replace("{ abs = 0.02 }", "{ abs = 0.02, rel = 0.1 }"),
            &["metric[0].tolerance", "exactly one"],
        );
        check_err(
            &GOOD.replace("{ abs = 0.02 }", "{}"),
            &["metric[0].tolerance", "exactly one"],
        );
        check_err(
            &GOOD.replace("{ abs = 0.02 }", "{ abs = -0.02 }"),
            &["metric[0].tolerance", ">= 0"],
        );
        check_err(
            &GOOD.replace("{ stderr = 3.0 }", "{ stderr = nan }"),
            &["metric[1].tolerance"],
        );
    }

    #[test]
    fn duplicates_and_schema_version_are_rejected() {
        check_err(
            &GOOD.replace("collapse.entropy.far", "trap.unseen_2gram_rate"),
            &["metric[1].name", "duplicate", "line 4"],
        );
        check_err(
            &GOOD.replace("schema_version = 1", "schema_version = 7"),
            &["schema_version", "schema 1", "has 7"],
        );
        check_err(
            &GOOD.replace("value = 0.04", "value = inf"),
            &["metric[0].value", "finite"],
        );
    }

    #[test]
    fn written_baseline_reads_back_exactly() {
        let mut b = parse(GOOD).unwrap();
        b.source = Some("a \"quoted\"\\path".into());
        b.metrics[0].value = 0.1 + 0.2;
        b.metrics[1].value = 1e-300;
        b.metrics[1].tolerance = Tolerance::Rel(0.1);
        let back = parse(&b.to_toml()).unwrap();
        assert_eq!(back.source, b.source);
        for (x, y) in back.metrics.iter().zip(&b.metrics) {
            assert_eq!(
                BaselineMetric {
                    line: None,
                    ..x.clone()
                },
                BaselineMetric {
                    line: None,
                    ..y.clone()
                }
            );
        }
    }

    #[test]
    fn written_baseline_keeps_the_files_own_opening_comments() {
        let text = format!("# How these values were made:\n#   collapse-probe run x.toml\n\n# Why the tolerances.\n{GOOD}");
        let b = parse(&text).unwrap();
        let written = b.to_toml();
        assert!(
            written.starts_with("# How these values were made:\n#   collapse-probe run x.toml\n\n# Why the tolerances.\nschema_version = 1\n"),
            "{written}"
        );
        assert!(
            !written.contains("collapse-probe check baseline."),
            "{written}"
        );
        // A file without opening comments gets the generic header.
        assert!(parse(GOOD)
            .unwrap()
            .to_toml()
            .starts_with("# collapse-probe check baseline.\n"));
    }

    #[test]
    fn update_keeps_tolerance_and_direction_and_takes_values() {
        let b = parse(GOOD).unwrap();
        let run = MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics: vec![
                Metric {
                    name: "collapse.entropy.far".into(),
                    value: 2.5,
                    unit: "nats".into(),
                    better: Better::Higher,
                    stderr: Some(0.2),
                    n: 8,
                },
                Metric {
                    name: "trap.unseen_2gram_rate".into(),
                    value: 0.5,
                    unit: "fraction".into(),
                    better: Better::Neither,
                    stderr: None,
                    n: 8,
                },
                Metric {
                    name: "extra".into(),
                    value: 1.0,
                    unit: "x".into(),
                    better: Better::Lower,
                    stderr: None,
                    n: 1,
                },
            ],
        };
        let u = b
            .updated_from(&run, Path::new("run"), "run/metrics.json")
            .unwrap();
        assert_eq!(
            u.metrics.len(),
            2,
            "metrics the baseline does not gate are not added"
        );
        assert_eq!(
            (
                u.metrics[0].value,
                u.metrics[0].better,
                u.metrics[0].tolerance
            ),
            (0.5, Better::Lower, Tolerance::Abs(0.02))
        );
        assert_eq!((u.metrics[1].value, u.metrics[1].stderr), (2.5, Some(0.2)));

        let short = MetricsFile {
            metrics: run.metrics[..1].to_vec(),
            ..run.clone()
        };
        let err = b
            .updated_from(&short, Path::new("run"), "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`trap.unseen_2gram_rate`") && err.contains("b.toml"),
            "{err}"
        );

        let fresh = Baseline::from_run(Path::new("new.toml"), &run, "run/metrics.json");
        assert_eq!(fresh.metrics.len(), 3);
        assert_eq!(fresh.metrics[0].tolerance, Tolerance::Stderr(3.0));
        assert_eq!(fresh.metrics[1].tolerance, Tolerance::Rel(0.05));
    }
}
