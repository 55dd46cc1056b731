//! The four forms of a [`Comparison`]: a terminal table, a Markdown summary, GitHub annotations and JUnit XML.

use std::fmt::Write as _;

use cp_records::Better;

use crate::baseline::Tolerance;
use crate::compare::{Comparison, Row, Verdict};

/// A number with four significant digits, in fixed notation between 1e-3 and 1e5 and scientific outside.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

/// [`num`] with an explicit sign.
pub(crate) fn signed(x: f64) -> String {
    if x > 0.0 {
        format!("+{}", num(x))
    } else {
        num(x)
    }
}

/// The tolerance column: the allowed amount and how it was given.
pub(crate) fn tolerance(row: &Row) -> String {
    let how = match row.tolerance {
        Tolerance::Abs(_) => "abs".to_string(),
        Tolerance::Rel(x) => format!("{}% rel", num_plain(x * 100.0)),
        Tolerance::Stderr(k) => format!("{} stderr", num_plain(k)),
    };
    format!("{} ({how})", num(row.allowed))
}

/// A short number without trailing zeros (`10`, `2.5`), for tolerance parameters.
fn num_plain(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn better_label(b: Better) -> &'static str {
    match b {
        Better::Higher => "higher",
        Better::Lower => "lower",
        Better::Neither => "neither",
    }
}

fn cells(row: &Row) -> [String; 7] {
    [
        row.name.clone(),
        better_label(row.better).to_string(),
        num(row.baseline),
        num(row.run),
        signed(row.delta),
        tolerance(row),
        row.verdict.label().to_string(),
    ]
}

const HEADER: [&str; 7] = [
    "metric",
    "better",
    "baseline",
    "run",
    "delta",
    "tolerance",
    "verdict",
];

/// One line that sums a comparison up, e.g. `2 of 5 metrics regressed`.
pub fn summary_line(c: &Comparison) -> String {
    let regressed = c.regressions().count();
    let improved = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Improved)
        .count();
    let mut s = if regressed == 0 {
        format!("{} metrics within tolerance", c.rows.len() - improved)
    } else {
        format!("{regressed} of {} metrics regressed", c.rows.len())
    };
    if improved > 0 {
        let _ = write!(
            s,
            ", {improved} improved beyond tolerance (consider --update-baseline)"
        );
    }
    s
}

/// The aligned plain-text table printed on stdout, followed by a summary line.
pub fn table(c: &Comparison) -> String {
    let rows: Vec<[String; 7]> = c.rows.iter().map(cells).collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Names and words are left-aligned, numbers right-aligned.
    let right = [false, false, true, true, true, true, false];
    let line = |cells: &[String]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            if right[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(&HEADER.map(String::from));
    for r in &rows {
        out.push_str(&line(r));
    }
    let _ = writeln!(
        out,
        "\n{}: {} vs baseline {}",
        summary_line(c),
        c.run_path.display(),
        c.baseline_path.display()
    );
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown summary for `$GITHUB_STEP_SUMMARY`.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let mark = if c.passed() {
        ":white_check_mark:"
    } else {
        ":x:"
    };
    let _ = writeln!(
        out,
        "### {mark} collapse-probe check: {}\n",
        md_cell(&summary_line(c))
    );
    let _ = writeln!(
        out,
        "Run `{}` against baseline `{}`.\n",
        md_cell(&c.run_path.display().to_string()),
        md_cell(&c.baseline_path.display().to_string())
    );
    let _ = writeln!(out, "| {} |", HEADER.join(" | "));
    let _ = writeln!(out, "| :-- | :-- | --: | --: | --: | --: | :-- |");
    for row in &c.rows {
        let mut cells = cells(row).map(|s| md_cell(&s));
        cells[0] = format!("`{}`", cells[0]);
        if row.verdict == Verdict::Regressed {
            cells[6] = format!("**{}**", cells[6]);
        }
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    if !c.ungated.is_empty() {
        let _ = writeln!(
            out,
            "\n{} run metrics are not in the baseline and were not checked.",
            c.ungated.len()
        );
    }
    out.push('\n');
    out
}

/// GitHub Actions workflow-command escaping of a message.
fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// GitHub Actions workflow-command escaping of a property value.
fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One `::error` workflow command per regression, pointing at the metric's line in the baseline file.
pub fn github_annotations(c: &Comparison) -> String {
    let mut out = String::new();
    for row in c.regressions() {
        let mut props = format!(
            "file={}",
            gh_property(&c.baseline_path.display().to_string())
        );
        if let Some(line) = row.line {
            let _ = write!(props, ",line={line}");
        }
        let _ = write!(
            props,
            ",title={}",
            gh_property(&format!("collapse-probe check: {} regressed", row.name))
        );
        let _ = writeln!(out, "::error {props}::{}", gh_data(&row.explain()));
    }
    out
}

/// XML 1.0 text/attribute escaping; characters XML 1.0 cannot hold at all are replaced by U+FFFD.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(ch),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one test suite, one test case per gated metric, a `<failure>` for each regression.
pub fn junit(c: &Comparison) -> String {
    let failures = c.regressions().count();
    let suite = c
        .baseline_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "baseline".into());
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"collapse-probe check\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">", c.rows.len());
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">",
        xml(&suite),
        c.rows.len()
    );
    out.push_str("    <properties>\n");
    let _ = writeln!(
        out,
        "      <property name=\"run\" value=\"{}\"/>",
        xml(&c.run_path.display().to_string())
    );
    let _ = writeln!(
        out,
        "      <property name=\"baseline\" value=\"{}\"/>",
        xml(&c.baseline_path.display().to_string())
    );
    out.push_str("    </properties>\n");
    for row in &c.rows {
        let _ = write!(
            out,
            "    <testcase classname=\"collapse-probe.check.{}\" name=\"{}\"",
            xml(&suite),
            xml(&row.name)
        );
        if row.verdict == Verdict::Regressed {
            out.push_str(">\n");
            let _ = writeln!(
                out,
                "      <failure type=\"regression\" message=\"{}\">{}</failure>",
                xml(&row.explain()),
                xml(&format!(
                    "metric: {}\nbetter: {}\nbaseline: {}\nrun: {}\ndelta: {}\ntolerance: {}",
                    row.name,
                    better_label(row.better),
                    row.baseline,
                    row.run,
                    row.delta,
                    tolerance(row)
                ))
            );
            out.push_str("    </testcase>\n");
        } else {
            out.push_str("/>\n");
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, baseline: f64, run: f64, verdict: Verdict) -> Row {
        Row {
            name: name.into(),
            better: Better::Lower,
            baseline,
            run,
            delta: run - baseline,
            tolerance: Tolerance::Rel(0.1),
            allowed: 0.1 * baseline.abs(),
            unit: None,
            verdict,
            line: Some(7),
        }
    }

    fn comparison() -> Comparison {
        Comparison {
            baseline_path: "probes/baselines/toy,trap.toml".into(),
            run_path: "runs/x".into(),
            rows: vec![
                row("trap.unseen_2gram_rate", 0.05, 0.3125, Verdict::Regressed),
                row("a<b>&\"c\"|d%", 2.0, 2.0, Verdict::Pass),
            ],
            ungated: vec!["extra".into()],
            direction_mismatches: vec![],
        }
    }

    #[test]
    fn numbers_have_four_significant_digits() {
        for (x, s) in [
            (0.0, "0"),
            (0.5, "0.5000"),
            (0.012345, "0.01235"),
            (12.34, "12.34"),
            (-3.0, "-3.000"),
            (123456.0, "1.235e5"),
            (1e-5, "1.000e-5"),
        ] {
            assert_eq!(num(x), s);
        }
        assert_eq!(signed(0.25), "+0.2500");
        assert_eq!(signed(-0.25), "-0.2500");
    }

    #[test]
    fn table_is_aligned() {
        let t = table(&comparison());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), HEADER);
        // Right-aligned columns end at the same character in every row.
        let end = |l: &str, cell: &str| l.find(cell).map(|i| i + cell.len()).unwrap();
        assert_eq!(end(lines[0], "baseline"), end(lines[1], "0.05000"));
        assert_eq!(end(lines[0], "baseline"), end(lines[2], "2.000"));
        assert!(lines[1].ends_with("REGRESSED"), "{}", lines[1]);
        assert!(t.contains("1 of 2 metrics regressed"), "{t}");
        assert!(lines[1].contains("0.005000 (10% rel)"), "{}", lines[1]);
    }

    #[test]
    fn markdown_escapes_pipes_and_marks_regressions() {
        let md = markdown(&comparison());
        assert!(
            md.starts_with("### :x: collapse-probe check: 1 of 2 metrics regressed"),
            "{md}"
        );
        assert!(md.contains("| `a<b>&\"c\"\\|d%` |"), "{md}");
        assert!(md.contains("**REGRESSED**"), "{md}");
        assert!(md.contains("1 run metrics are not in the baseline"), "{md}");
        // Every table row has the same number of unescaped cell separators.
        let seps = |l: &str| l.replace("\\|", "").matches('|').count();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(rows.len(), 4);
        assert!(rows.iter().all(|l| seps(l) == 8), "{md}");
    }

    #[test]
    fn annotations_escape_properties() {
        let a = github_annotations(&comparison());
        assert_eq!(a.lines().count(), 1, "{a}");
        assert!(
            a.starts_with("::error file=probes/baselines/toy%2Ctrap.toml,line=7,title=collapse-probe check%3A trap.unseen_2gram_rate regressed::"),
            "{a}"
        );
        assert!(a.contains("run 0.3125 vs baseline 0.05000"), "{a}");
    }

    #[test]
    fn junit_is_escaped_and_counts_failures() {
        let x = junit(&comparison());
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(
            x.contains("name=\"a&lt;b&gt;&amp;&quot;c&quot;|d%\""),
            "{x}"
        );
        assert_eq!(x.matches("<testcase ").count(), 2);
        assert_eq!(x.matches("<failure ").count(), 1);
        assert_eq!(xml("a\u{1}b"), "a\u{FFFD}b");
        // The document is well-formed XML, and parsing it gives back the unescaped names.
        let doc = roxmltree::Document::parse(&x).expect("well-formed XML");
        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases[1].attribute("name"), Some("a<b>&\"c\"|d%"));
        let failure = cases[0]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .expect("a failure element");
        assert!(failure
            .attribute("message")
            .unwrap()
            .contains("trap.unseen_2gram_rate regressed"));
        assert!(
            failure
                .text()
                .unwrap()
                .contains("baseline: 0.05\nrun: 0.3125"),
            "{x}"
        );
    }
}
