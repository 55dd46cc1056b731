//! The report's first section: whether frequency collapse and the marginal trap are present, and
//! whether rare tokens lose more than frequent ones when context is masked away, in plain words
//! with the numbers behind each verdict and the figure that shows it.
//!
//! Everything here reads the analyses' headline metrics (and the sweep's) and, for the share
//! before the collapse onset, the share-by-distance curve, never the records: a finding says
//! nothing the metric tables and figures below it do not also hold.

use cp_records::Metric;

use crate::information_loss::{corrupt_folders, CorruptFolder};
use crate::inputs::{split_metric_name, ReportInputs, RunData, SweepData};
use crate::markdown::format_number;

/// Whether a failure mode was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Present,
    Absent,
    /// The inputs lack what the verdict needs (no index, no answers to measure).
    NotMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Present => "present",
            Verdict::Absent => "not found",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One finding: a failure mode in one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// `Frequency collapse` or `Marginal trap`, with the run's label when there are several.
    pub title: String,
    pub verdict: Verdict,
    /// Plain sentences with the numbers.
    pub text: String,
    /// Names of the figures that show it, most telling first (they may be absent).
    pub figures: Vec<&'static str>,
}

/// The findings of every run: frequency collapse where the run has probe metrics, the
/// marginal trap where it has decode metrics; then rare-token fragility for every corrupt folder.
pub fn findings(inputs: &ReportInputs) -> Vec<Finding> {
    let several = inputs.runs.len() > 1;
    let mut out = Vec::new();
    for run in &inputs.runs {
        let suffix = if several {
            format!(" ({})", run.label)
        } else {
            String::new()
        };
        if let Some(mut f) = collapse_finding(run) {
            f.title.push_str(&suffix);
            out.push(f);
        }
        if let Some(mut f) = trap_finding(run, inputs.sweep.as_ref()) {
            f.title.push_str(&suffix);
            out.push(f);
        }
    }
    let folders = corrupt_folders(inputs);
    let named = several || folders.len() > 1;
    for folder in &folders {
        if let Some(mut f) = fragility_finding(folder) {
            if named {
                f.title.push_str(&format!(" ({})", folder.name));
            }
            out.push(f);
        }
    }
    out
}

fn metric<'a>(run: &'a RunData, name: &str) -> Option<&'a Metric> {
    run.metrics
        .as_ref()?
        .metrics
        .iter()
        .find(|m| m.name == name && m.value.is_finite())
}

fn value(run: &RunData, name: &str) -> Option<f64> {
    metric(run, name).map(|m| m.value)
}

/// A number for a sentence: three significant digits at most, no trailing zeros.
fn short(v: f64) -> String {
    let a = v.abs();
    let digits = if a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else {
        2
    };
    let text = format!("{v:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    if text == "-0" {
        "0".into()
    } else {
        text
    }
}

fn pct(v: f64) -> String {
    format!("{}%", short(100.0 * v))
}

/// The analysis' onset threshold (its manifest's `params.onset_threshold`, default 0.5).
fn onset_threshold(run: &RunData) -> f64 {
    run.manifest
        .as_ref()
        .and_then(|m| m.params.get("onset_threshold")?.as_f64())
        .unwrap_or(0.5)
}

fn collapse_finding(run: &RunData) -> Option<Finding> {
    let window = value(run, "collapse.max_distance")?;
    let theta = onset_threshold(run);
    let onset = value(run, "collapse.onset");
    let frequent_onset = value(run, "collapse.frequent_onset");
    let eot_onset = value(run, "collapse.eot_onset");
    let within = |o: Option<f64>| o.filter(|&o| o <= window);
    let q = (window / 4.0).ceil().max(1.0);
    let span = |a: f64, b: f64| {
        if a == b {
            format_number(a)
        } else {
            format!("{}–{}", format_number(a), format_number(b))
        }
    };
    let bands = format!(
        "near band: distances {}, far band: {}",
        span(1.0, q),
        span(window - q + 1.0, window)
    );
    let band = |quantity: &str| {
        let near = value(run, &format!("collapse.{quantity}.near"))?;
        let far = value(run, &format!("collapse.{quantity}.far"))?;
        Some((near, far))
    };
    // The generic share is worth its own line only when end tokens are among the predictions.
    let end_tokens_seen = band("eot_share").is_some_and(|(near, far)| near > 0.0 || far > 0.0);
    let mut numbers = Vec::new();
    for (quantity, what) in [
        (
            "generic_share",
            "generic tokens (frequent words or end tokens)",
        ),
        ("frequent_share", "frequent corpus words"),
        ("eot_share", "end tokens"),
    ] {
        if quantity != "frequent_share" && !end_tokens_seen {
            continue;
        }
        if let Some((near, far)) = band(quantity) {
            numbers.push(format!(
                "{what} make up {} of the far band's top-k against {} of the near band's",
                pct(far),
                pct(near)
            ));
        }
    }
    if let Some((near, far)) = band("kl_unigram") {
        numbers.push(format!(
            "the KL divergence to the corpus unigram is {} nats far against {} near",
            short(far),
            short(near)
        ));
    }
    let numbers = if numbers.is_empty() {
        String::new()
    } else {
        format!(" {} ({bands}).", capitalise(&numbers.join("; ")))
    };

    let verdict_onset = onset.or(eot_onset)?;
    let kind = match (within(frequent_onset), within(eot_onset)) {
        (Some(f), Some(e)) => format!(
            "It is collapse to frequent corpus words (alone past {} from distance {}) and to \
             end-of-text (alone past {} from distance {}).",
            pct(theta),
            format_number(f),
            pct(theta),
            format_number(e)
        ),
        (Some(f), None) => format!(
            "It is collapse to the corpus's frequent words: they alone make up at least {} \
             from distance {} on.",
            pct(theta),
            format_number(f)
        ),
        (None, Some(e)) => format!(
            "It is collapse to end-of-text: end tokens alone make up at least {} from distance \
             {} on; far from the prompt the model predicts that the answer has ended.",
            pct(theta),
            format_number(e)
        ),
        (None, None) => {
            "Neither frequent words nor end tokens pass that share alone: it is their mix.".into()
        }
    };
    let (verdict, head) = if verdict_onset <= window {
        let before = share_before_onset(run, verdict_onset)
            .map(|share| {
                format!(
                    " Before it, at {} {}, {} are: there the predictions still follow the \
                     prompt.",
                    if verdict_onset > 2.0 {
                        "distances"
                    } else {
                        "distance"
                    },
                    span(1.0, verdict_onset - 1.0),
                    pct(share)
                )
            })
            .unwrap_or_default();
        (
            Verdict::Present,
            format!(
                "From distance {} of the {} probed masks on, at least {} of the top-k \
                 predictions are generic (frequent corpus words or end tokens).{before} {kind}",
                format_number(verdict_onset),
                format_number(window),
                pct(theta)
            ),
        )
    } else {
        (
            Verdict::Absent,
            format!(
                "No collapse within the {}-mask window: at the far end under {} of the top-k \
                 predictions are generic.",
                format_number(window),
                pct(theta)
            ),
        )
    };
    let note = if onset.is_none() {
        " Without a reference-corpus index only collapse to end tokens is measured."
    } else {
        ""
    };
    Some(Finding {
        title: "Frequency collapse".into(),
        verdict,
        text: format!("{head}{numbers}{note}"),
        figures: vec!["top_tokens", "frequent_share", "divergence"],
    })
}

/// The mean generic share (over prompts, then over distances) at the distances before the
/// collapse onset, from the `generic_share` curve; `None` when the onset is distance 1 or the
/// curve is absent.
fn share_before_onset(run: &RunData, onset: f64) -> Option<f64> {
    let curve = run.curve("generic_share");
    let (_, points) = curve.first()?;
    let before: Vec<f64> = points
        .iter()
        .filter(|p| p.x < onset)
        .map(|p| p.mean)
        .collect();
    if before.is_empty() {
        return None;
    }
    Some(before.iter().sum::<f64>() / before.len() as f64)
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One decode folder's trap metrics: its label ("" when the analysis had one decode folder).
struct Schedule<'a> {
    label: String,
    run: &'a RunData,
}

impl Schedule<'_> {
    fn get(&self, base: &str) -> Option<&Metric> {
        if self.label.is_empty() {
            metric(self.run, base)
        } else {
            metric(self.run, &format!("{base}@{}", self.label))
        }
    }
}

fn trap_finding(run: &RunData, sweep: Option<&SweepData>) -> Option<Finding> {
    let mut schedules: Vec<Schedule> = Vec::new();
    for m in run.metrics.iter().flat_map(|f| f.metrics.iter()) {
        let (base, labels) = split_metric_name(&m.name);
        if base == "trap.generations" && !schedules.iter().any(|s| s.label == labels.join("@")) {
            schedules.push(Schedule {
                label: labels.join("@"),
                run,
            });
        }
    }
    if schedules.is_empty() {
        return None;
    }
    let mut lines = Vec::new();
    // Which evidence found the trap: same-step pairs worse than different-step pairs, and
    // unseen rates that rise with the tokens committed per step.
    let (mut by_pairs, mut by_sweep) = (false, false);
    let mut measured = false;
    for s in &schedules {
        let name = if s.label.is_empty() {
            "The decode".to_string()
        } else {
            format!("`{}`", s.label)
        };
        let tps = s.get("trap.tokens_per_step").map(|m| m.value);
        let mut parts = Vec::new();
        if let Some(t) = tps {
            let unit = if t == 1.0 { "token" } else { "tokens" };
            parts.push(format!("{} {unit} per step", short(t)));
        }
        if let Some(e) = s.get("trap.empty_rate").filter(|m| m.value > 0.0) {
            parts.push(format!(
                "{} of its answers are empty (end-of-text from the first position)",
                pct(e.value)
            ));
        }
        if let Some(u) = s.get("trap.unseen_2gram_rate") {
            measured = true;
            parts.push(format!(
                "{} of its bigrams never occur in the reference corpus",
                pct(u.value)
            ));
        }
        let same = s.get("trap.same_step_unseen_bigram_rate");
        let diff = s.get("trap.diff_step_unseen_bigram_rate");
        if let (Some(a), Some(b)) = (same, diff) {
            let ratio = s.get("trap.same_vs_diff_ratio");
            let significant = significantly_above(a, b);
            by_pairs |= significant;
            parts.push(format!(
                "pairs committed in the same step are unseen at {} against {} for pairs from \
                 different steps{}{}",
                pct(a.value),
                pct(b.value),
                ratio.map_or(String::new(), |r| format!(" (ratio {})", short(r.value))),
                if significant {
                    ", more than two standard errors apart"
                } else {
                    ""
                }
            ));
        }
        if s.get("trap.unseen_2gram_rate").is_none()
            && s.get("trap.adjacent_duplicate_rate").is_none()
            && s.get("trap.empty_rate").is_some_and(|m| m.value >= 1.0)
        {
            parts.push("no answer to measure: every generation is empty, so no n-gram rate is computed over padding".into());
        }
        lines.push(format!("{name}: {}.", parts.join("; ")));
    }
    if let Some(sweep) = sweep {
        for line in sweep_lines(sweep) {
            by_sweep |= line.rises;
            measured = true;
            lines.push(line.text);
        }
    }
    let verdict = if by_pairs || by_sweep {
        Verdict::Present
    } else if measured {
        Verdict::Absent
    } else {
        Verdict::NotMeasured
    };
    let head = match (by_pairs, by_sweep, verdict) {
        (true, true, _) => "Tokens committed together in one parallel step form sequences the corpus never shows more often than tokens committed apart, and more so the more tokens a step commits.",
        (true, false, _) => "Tokens committed together in one parallel step form sequences the corpus never shows more often than tokens committed apart.",
        (false, true, _) => "The more tokens a parallel step commits, the more of the generated sequences the corpus never shows.",
        (_, _, Verdict::Absent) => "No sign that committing tokens in parallel makes unseen sequences more frequent.",
        _ => "The unseen n-gram rates need a reference-corpus index (`analyze --index`) and answers to read.",
    };
    Some(Finding {
        title: "Marginal trap".into(),
        verdict,
        text: format!("{head} {}", lines.join(" ")),
        figures: vec!["tradeoff", "same_step", "sweep", "unseen_rate"],
    })
}

/// Whether rare tokens are harder to recover than frequent ones, and whether they lose more as
/// the masked ratio grows: decile 10 against decile 1 at the lowest and highest ratio, and the
/// fragility gap with its standard error. Stated whichever way the numbers go.
fn fragility_finding(folder: &CorruptFolder) -> Option<Finding> {
    let ratios = folder.ratios();
    let cell = |base: &str, r: &str| folder.metric(base, Some(r)).map(|m| m.value);
    // The ratios at which both deciles have tokens.
    let measured: Vec<(&str, f64, f64)> = ratios
        .iter()
        .filter_map(|(r, _)| {
            Some((
                r.as_str(),
                cell("corrupt.nll_rare", r)?,
                cell("corrupt.nll_frequent", r)?,
            ))
        })
        .collect();
    let figures = vec![
        crate::corrupt_figures::HEATMAP,
        crate::corrupt_figures::CONCENTRATION,
        crate::corrupt_figures::CONTEXT_GAIN,
    ];
    let title = "Rare-token fragility".to_string();
    if measured.is_empty() {
        folder.metric("corrupt.texts", None)?;
        return Some(Finding {
            title,
            verdict: Verdict::NotMeasured,
            text: "The rarest or the most frequent frequency decile has no masked token at any \
                   ratio, so rare and frequent tokens cannot be compared."
                .into(),
            figures,
        });
    }
    let (lo, hi) = (measured[0], measured[measured.len() - 1]);
    let first = |(r, rare, frequent): (&str, f64, f64)| {
        format!(
            "at ratio {r} the rarest tenth of the masked tokens (frequency decile 10) costs {} \
             nats each against {} for the most frequent tenth (decile 1)",
            short(rare),
            short(frequent)
        )
    };
    let then = |(r, rare, frequent): (&str, f64, f64)| {
        format!("at ratio {r}, {} against {}", short(rare), short(frequent))
    };
    let harder = measured.iter().filter(|(_, r, f)| r > f).count();
    let which = match (harder, measured.len()) {
        (0, 1) => "Rare tokens are not harder to recover than frequent ones here".to_string(),
        (1, 1) => "Rare tokens are harder to recover than frequent ones".to_string(),
        (0, _) => "Rare tokens are not harder to recover than frequent ones at any ratio".into(),
        (h, n) if h == n => {
            "Rare tokens are harder to recover than frequent ones at every ratio".into()
        }
        (h, n) => format!("Rare tokens are harder to recover at {h} of the {n} ratios"),
    };
    let numbers = if lo.0 == hi.0 {
        format!("{which}: {}.", first(lo))
    } else {
        format!("{which}: {}; {}.", first(lo), then(hi))
    };
    let gap = folder.metric("corrupt.fragility_gap", None);
    let (verdict, tail) = match gap {
        None if ratios.len() < 2 => (
            Verdict::NotMeasured,
            " Whether they lose more as the context disappears needs a second masked ratio.".into(),
        ),
        None => (
            Verdict::NotMeasured,
            format!(
                " No fragility gap: at ratio {} or {} the rarest or the most frequent decile has \
                 no masked token (a scheme that masks by frequency leaves the other end unmasked \
                 at low ratios).",
                ratios[0].0,
                ratios[ratios.len() - 1].0
            ),
        ),
        Some(g) => {
            let rare = folder.metric("corrupt.fragility_rare", None);
            let frequent = folder.metric("corrupt.fragility_frequent", None);
            let rises = match (rare, frequent) {
                (Some(r), Some(f)) => format!(
                    " From ratio {} to {} the rare tokens' NLL rises by {} nats and the frequent \
                     ones' by {}:",
                    lo.0,
                    hi.0,
                    short(r.value),
                    short(f.value)
                ),
                _ => String::new(),
            };
            let se = g.stderr.filter(|s| s.is_finite());
            let with_se = match se {
                Some(se) => format!("{} ± {} nats", short(g.value), short(se)),
                None => format!("{} nats (no standard error)", short(g.value)),
            };
            let two_se = 2.0 * se.unwrap_or(0.0);
            let (verdict, reading) = if g.value > two_se {
                (
                    Verdict::Present,
                    "rare tokens lose more than frequent ones as the context disappears",
                )
            } else if g.value < -two_se {
                (
                    Verdict::Absent,
                    "frequent tokens lose more than rare ones as the context disappears",
                )
            } else {
                (
                    Verdict::Absent,
                    "within two standard errors of zero: no sign that rare tokens lose more than \
                     frequent ones as the context disappears",
                )
            };
            let beyond = if se.is_some() && g.value.abs() > two_se {
                ", more than two standard errors from zero"
            } else {
                ""
            };
            (
                verdict,
                format!("{rises} a fragility gap of {with_se}{beyond}; {reading}."),
            )
        }
    };
    Some(Finding {
        title,
        verdict,
        text: format!("{numbers}{tail}"),
        figures,
    })
}

/// Whether `a` exceeds `b` by more than two standard errors of the difference (by any amount
/// when neither has one).
fn significantly_above(a: &Metric, b: &Metric) -> bool {
    let se = (a.stderr.unwrap_or(0.0).powi(2) + b.stderr.unwrap_or(0.0).powi(2)).sqrt();
    a.value - b.value > 2.0 * se && a.value > b.value
}

struct SweepLine {
    text: String,
    /// Whether the unseen-bigram rate rises with the swept parameter beyond two standard errors.
    rises: bool,
}

/// For each schedule of a sweep: the unseen-bigram rate at the smallest and largest swept
/// value and the least-squares slope per doubling of the swept value.
fn sweep_lines(sweep: &SweepData) -> Vec<SweepLine> {
    let mut by_schedule: Vec<(String, Vec<(f64, &Metric)>)> = Vec::new();
    for m in &sweep.metrics {
        let Some((base, schedule, x)) = sweep.value_of(&m.name) else {
            continue;
        };
        if base != "trap.unseen_2gram_rate" || !m.value.is_finite() || x <= 0.0 {
            continue;
        }
        match by_schedule.iter_mut().find(|(s, _)| *s == schedule) {
            Some((_, points)) => points.push((x, m)),
            None => by_schedule.push((schedule, vec![(x, m)])),
        }
    }
    let mut out = Vec::new();
    for (schedule, mut points) in by_schedule {
        if points.len() < 2 {
            continue;
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (x0, first) = points[0];
        let (x1, last) = points[points.len() - 1];
        let slope = slope_per_doubling(&points);
        let name = if schedule.is_empty() {
            String::new()
        } else {
            format!(" for `{schedule}`")
        };
        out.push(SweepLine {
            text: format!(
                "Sweeping {}{name} from {} to {}, the unseen-bigram rate goes from {} to {} \
                 ({} percentage points per doubling).",
                sweep.param.replace('_', " "),
                short(x0),
                short(x1),
                pct(first.value),
                pct(last.value),
                short(100.0 * slope)
            ),
            rises: significantly_above(last, first),
        });
    }
    out
}

/// The least-squares slope of the values against log2 of the swept value.
fn slope_per_doubling(points: &[(f64, &Metric)]) -> f64 {
    let n = points.len() as f64;
    let xs: Vec<f64> = points.iter().map(|(x, _)| x.log2()).collect();
    let ys: Vec<f64> = points.iter().map(|(_, m)| m.value).collect();
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx > 0.0 {
        sxy / sxx
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cp_records::{Better, MetricsFile};

    fn m(name: &str, value: f64, stderr: Option<f64>) -> Metric {
        Metric {
            name: name.into(),
            value,
            unit: String::new(),
            better: Better::Neither,
            stderr,
            n: 1,
        }
    }

    fn run(metrics: Vec<Metric>) -> RunData {
        RunData {
            label: "run".into(),
            metrics: Some(MetricsFile {
                schema_version: 1,
                sources: Vec::new(),
                metrics,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn collapse_to_end_of_text_is_named_as_such() {
        let r = run(vec![
            m("collapse.max_distance", 128.0, None),
            m("collapse.onset", 3.0, None),
            m("collapse.frequent_onset", 129.0, None),
            m("collapse.eot_onset", 3.0, None),
            m("collapse.eot_share.near", 0.25, None),
            m("collapse.eot_share.far", 0.97, None),
        ]);
        let f = collapse_finding(&r).unwrap();
        assert_eq!(f.verdict, Verdict::Present);
        assert!(
            f.text.contains("It is collapse to end-of-text: end tokens alone make up at least 50% from distance 3 on"),
            "{}",
            f.text
        );
        assert!(
            f.text
                .contains("End tokens make up 97% of the far band's top-k against 25%"),
            "{}",
            f.text
        );
        assert!(f.text.contains("far band: 97–128"), "{}", f.text);
    }

    #[test]
    fn collapse_to_frequent_words_and_no_collapse() {
        let r = run(vec![
            m("collapse.max_distance", 64.0, None),
            m("collapse.onset", 5.0, None),
            m("collapse.frequent_onset", 5.0, None),
            m("collapse.eot_onset", 65.0, None),
        ]);
        let f = collapse_finding(&r).unwrap();
        assert!(
            f.text.contains("collapse to the corpus's frequent words: they alone make up at least 50% from distance 5 on"),
            "{}",
            f.text
        );
        // With the share-by-distance curve, the share before the onset is stated.
        let mut r = r;
        r.curves = [
            (1.0, 0.1),
            (2.0, 0.3),
            (3.0, 0.2),
            (4.0, 0.4),
            (5.0, 0.9),
            (6.0, 1.0),
        ]
        .into_iter()
        .map(|(x, mean)| cp_records::CurvePoint {
            curve: "generic_share".into(),
            series: "all".into(),
            x,
            mean,
            median: mean,
            q25: mean,
            q75: mean,
            n: 16,
        })
        .collect();
        let f = collapse_finding(&r).unwrap();
        assert!(
            f.text.contains(
                "Before it, at distances 1–4, 25% are: there the predictions still follow the prompt."
            ),
            "{}",
            f.text
        );
        let r = run(vec![
            m("collapse.max_distance", 64.0, None),
            m("collapse.onset", 65.0, None),
        ]);
        assert_eq!(collapse_finding(&r).unwrap().verdict, Verdict::Absent);
        assert!(collapse_finding(&run(vec![m("collapse.entropy.far", 1.0, None)])).is_none());
    }

    #[test]
    fn trap_needs_same_step_rate_two_standard_errors_above() {
        let trap = |same: f64| {
            run(vec![
                m("trap.generations@a", 16.0, None),
                m("trap.unseen_2gram_rate@a", 0.1, Some(0.01)),
                m("trap.same_step_unseen_bigram_rate@a", same, Some(0.01)),
                m("trap.diff_step_unseen_bigram_rate@a", 0.05, Some(0.01)),
            ])
        };
        assert_eq!(
            trap_finding(&trap(0.2), None).unwrap().verdict,
            Verdict::Present
        );
        assert_eq!(
            trap_finding(&trap(0.06), None).unwrap().verdict,
            Verdict::Absent
        );
        let empty = run(vec![
            m("trap.generations", 4.0, None),
            m("trap.empty_rate", 1.0, None),
        ]);
        let f = trap_finding(&empty, None).unwrap();
        assert_eq!(f.verdict, Verdict::NotMeasured);
        assert!(f.text.contains("every generation is empty"), "{}", f.text);
    }

    #[test]
    fn sweep_slope_is_per_doubling() {
        let sweep = SweepData {
            dir: None,
            param: "tokens_per_step".into(),
            metrics: vec![
                m(
                    "trap.unseen_2gram_rate@s@tokens_per_step=1",
                    0.1,
                    Some(0.01),
                ),
                m(
                    "trap.unseen_2gram_rate@s@tokens_per_step=2",
                    0.2,
                    Some(0.01),
                ),
                m(
                    "trap.unseen_2gram_rate@s@tokens_per_step=4",
                    0.3,
                    Some(0.01),
                ),
            ],
        };
        let lines = sweep_lines(&sweep);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].rises);
        assert!(
            lines[0]
                .text
                .contains("from 10% to 30% (10 percentage points per doubling)"),
            "{}",
            lines[0].text
        );
    }

    fn fragility(gap: f64, se: f64) -> RunData {
        run(vec![
            m("corrupt.texts", 20.0, None),
            m("corrupt.nll@ratio=0.1", 2.0, None),
            m("corrupt.nll@ratio=0.5", 3.0, None),
            m("corrupt.nll_rare@ratio=0.1", 5.0, Some(0.2)),
            m("corrupt.nll_frequent@ratio=0.1", 1.0, Some(0.1)),
            m("corrupt.nll_rare@ratio=0.5", 5.0 + 0.5 + gap, Some(0.2)),
            m("corrupt.nll_frequent@ratio=0.5", 1.5, Some(0.1)),
            m("corrupt.fragility_rare", 0.5 + gap, Some(se)),
            m("corrupt.fragility_frequent", 0.5, Some(se)),
            m("corrupt.fragility_gap", gap, Some(se)),
        ])
    }

    fn fragility_of(r: &RunData) -> Finding {
        let inputs = ReportInputs {
            runs: vec![r.clone()],
            ..ReportInputs::default()
        };
        let found = findings(&inputs);
        assert_eq!(found.len(), 1, "{found:?}");
        found.into_iter().next().unwrap()
    }

    #[test]
    fn rare_tokens_losing_more_is_stated_with_the_gap_and_its_error() {
        let f = fragility_of(&fragility(1.5, 0.2));
        assert_eq!(f.verdict, Verdict::Present);
        assert_eq!(f.title, "Rare-token fragility");
        assert!(
            f.text.contains("at ratio 0.1 the rarest tenth of the masked tokens (frequency decile 10) costs 5 nats each against 1")
                && f.text.contains("; at ratio 0.5, 7 against 1.5.")
                && f.text.contains("rises by 2 nats and the frequent ones' by 0.5")
                && f.text.contains("a fragility gap of 1.5 ± 0.2 nats, more than two standard errors from zero"),
            "{}",
            f.text
        );
        assert!(f
            .text
            .starts_with("Rare tokens are harder to recover than frequent ones at every ratio"));
    }

    #[test]
    fn a_gap_within_two_errors_or_below_zero_is_said_plainly() {
        let f = fragility_of(&fragility(0.3, 0.2));
        assert_eq!(f.verdict, Verdict::Absent);
        assert!(
            f.text.contains("within two standard errors of zero"),
            "{}",
            f.text
        );
        let f = fragility_of(&fragility(-1.0, 0.2));
        assert_eq!(f.verdict, Verdict::Absent);
        assert!(
            f.text.contains("frequent tokens lose more than rare ones"),
            "{}",
            f.text
        );
        // One ratio: the deciles compare, the fragility is not measured.
        let one = run(vec![
            m("corrupt.texts", 20.0, None),
            m("corrupt.nll_rare@ratio=0.3", 0.8, None),
            m("corrupt.nll_frequent@ratio=0.3", 1.2, None),
        ]);
        let f = fragility_of(&one);
        assert_eq!(f.verdict, Verdict::NotMeasured);
        assert!(
            f.text
                .starts_with("Rare tokens are not harder to recover than frequent ones here")
                && f.text.contains("needs a second masked ratio"),
            "{}",
            f.text
        );
    }

    #[test]
    fn a_scheme_that_leaves_a_decile_unmasked_has_no_gap_and_says_why() {
        // Rare-first at a low ratio masks no frequent token.
        let r = run(vec![
            m("corrupt.texts", 20.0, None),
            m("corrupt.nll@ratio=0.1", 5.0, None),
            m("corrupt.nll_rare@ratio=0.1", 5.0, None),
            m("corrupt.nll_rare@ratio=0.5", 6.0, None),
            m("corrupt.nll_frequent@ratio=0.5", 2.0, None),
            m("corrupt.fragility_rare", 1.0, None),
        ]);
        let f = fragility_of(&r);
        assert_eq!(f.verdict, Verdict::NotMeasured);
        assert!(
            f.text
                .starts_with("Rare tokens are harder to recover than frequent ones: at ratio 0.5")
                && f.text.contains("No fragility gap: at ratio 0.1 or 0.5"),
            "{}",
            f.text
        );
    }

    #[test]
    fn short_numbers_keep_three_digits_and_drop_trailing_zeros() {
        assert_eq!(short(10.000000000000002), "10");
        assert_eq!(short(97.8), "97.8");
        assert_eq!(short(123.4), "123");
        assert_eq!(short(0.254), "0.25");
        assert_eq!(short(-0.001), "0");
    }
}
