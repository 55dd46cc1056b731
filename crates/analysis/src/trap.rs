//! Marginal-trap metrics from decode output (the final generations with the step that
//! committed each position).
//!
//! Rates are pooled (sum of events over sum of opportunities across generations) and
//! bootstrapped over generations. METRICS.md gives every formula and the n-gram conventions.

use std::collections::{HashMap, HashSet};

use cp_records::{Better, CurvePoint, Generation, Metric, PromptMetric};
use rayon::prelude::*;

use crate::collapse::{distance_curves, Analysis, Quantity};
use crate::error::{AnalysisError, Result};
use crate::index::NgramIndex;
use crate::stats::{entropy_nats, mean_of, pooled, Bootstrap};

/// Settings of the marginal-trap metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct TrapSettings {
    /// Orders of the unseen n-gram rates (against the index).
    pub unseen_ns: Vec<usize>,
    /// Orders of rep-n (SimCTG; diversity multiplies `1 - rep_n` over these) and seq-rep-n.
    pub rep_ns: Vec<usize>,
    /// Orders of distinct-n.
    pub distinct_ns: Vec<usize>,
    /// End ids (end-of-text, end-of-turn, padding): a generation's answer is what comes
    /// before the first of them.
    pub eos_ids: Vec<u32>,
    /// Whether the n-gram and repetition metrics read answers only (the default) or whole
    /// generations, end tokens included (`analyze --keep-eos`).
    pub cut_at_end: bool,
    pub bootstrap: Bootstrap,
}

impl Default for TrapSettings {
    fn default() -> Self {
        TrapSettings {
            unseen_ns: vec![2, 3, 4, 5],
            rep_ns: vec![2, 3, 4],
            distinct_ns: vec![1, 2, 3, 4],
            eos_ids: Vec::new(),
            cut_at_end: true,
            bootstrap: Bootstrap {
                replicates: 1000,
                seed: 0,
            },
        }
    }
}

/// The analysed part of a generation: the generated ids up to (excluding) the first
/// never-committed position or end-of-text id, with their commit steps.
pub fn analysed_tokens<'a>(g: &'a Generation, eos_ids: &[u32]) -> (&'a [u32], &'a [i32]) {
    let n = g.gen_ids.len().min(g.commit_step.len());
    let cut = (0..n)
        .find(|&i| g.commit_step[i] < 0 || eos_ids.contains(&g.gen_ids[i]))
        .unwrap_or(n);
    (&g.gen_ids[..cut], &g.commit_step[..cut])
}

/// `(unique, total)` n-gram counts of one sequence. With `simctg`, the n-gram that ends at the
/// last token is left out, as in SimCTG's `eval_text` (`while end_idx < len(token_list)`).
pub fn ngram_counts(tokens: &[u32], n: usize, simctg: bool) -> (usize, usize) {
    if n == 0 || tokens.len() < n {
        return (0, 0);
    }
    let mut windows: Vec<&[u32]> = tokens.windows(n).collect();
    if simctg {
        windows.pop();
    }
    let total = windows.len();
    let unique = windows.iter().collect::<HashSet<_>>().len();
    (unique, total)
}

/// The tokens the n-gram metrics read: the answer (see [`analysed_tokens`]), or with
/// `cut_at_end` off everything up to the first never-committed position.
fn metric_tokens<'a>(g: &'a Generation, s: &TrapSettings) -> (&'a [u32], &'a [i32]) {
    analysed_tokens(g, if s.cut_at_end { &s.eos_ids } else { &[] })
}

/// How a generation's end tokens sit beside its answer.
#[derive(Debug, Default, Clone)]
struct EndStats {
    /// Generated positions (`min(gen_ids, commit_step)` long).
    positions: usize,
    /// Of those, positions holding an end id.
    end_tokens: usize,
    /// Whether the answer (tokens before the first end id) is empty.
    empty: bool,
    /// (mean commit step of the committed end tokens − mean commit step of the answer's
    /// tokens) / steps; NaN unless the generation has both.
    early_eos: f64,
}

fn end_stats(g: &Generation, end_ids: &[u32]) -> EndStats {
    let n = g.gen_ids.len().min(g.commit_step.len());
    let (answer, answer_steps) = analysed_tokens(g, end_ids);
    let is_end = |t: &u32| end_ids.contains(t);
    let end_steps: Vec<f64> = (0..n)
        .filter(|&i| is_end(&g.gen_ids[i]) && g.commit_step[i] >= 0)
        .map(|i| g.commit_step[i] as f64)
        .collect();
    let early_eos = if end_steps.is_empty() || answer.is_empty() || g.steps == 0 {
        f64::NAN
    } else {
        let content = answer_steps.iter().map(|&s| s as f64).sum::<f64>() / answer.len() as f64;
        let end = end_steps.iter().sum::<f64>() / end_steps.len() as f64;
        (end - content) / g.steps as f64
    };
    EndStats {
        positions: n,
        end_tokens: g.gen_ids[..n].iter().filter(|t| is_end(t)).count(),
        empty: answer.is_empty(),
        early_eos,
    }
}

/// Per-generation counts; each field is a numerator or denominator of a pooled rate.
#[derive(Debug, Default, Clone)]
struct GenStats {
    len: usize,
    end: EndStats,
    /// By position in `unseen_ns`: (unseen n-grams, n-grams).
    unseen: Vec<(usize, usize)>,
    /// Per position `i`: 1 if the n-gram starting at `i` is unseen, else 0; by order.
    unseen_at: Vec<Vec<f64>>,
    pairs_same: usize,
    pairs_diff: usize,
    unseen_same: usize,
    unseen_diff: usize,
    dup_same: usize,
    dup_diff: usize,
    /// By position in `rep_ns`: SimCTG (unique, total).
    rep: Vec<(usize, usize)>,
    /// By position in `rep_ns`: 1 - unique/total over all n-grams (NaN when there are none).
    seq_rep: Vec<f64>,
    entropy: f64,
    tokens_per_step: f64,
    /// (generated positions remasked at least once, generated positions), for generations
    /// that record remask counts (imported from remasking samplers).
    remasked: Option<(usize, usize)>,
}

fn gen_stats(g: &Generation, index: Option<&NgramIndex>, s: &TrapSettings) -> GenStats {
    let (tokens, steps) = metric_tokens(g, s);
    let len = tokens.len();
    let max_n = s.unseen_ns.iter().copied().max().unwrap_or(0).max(2);
    let matched = index.map(|idx| idx.match_lengths(tokens, max_n));
    let mut st = GenStats {
        len,
        end: end_stats(g, &s.eos_ids),
        remasked: g
            .remask_count
            .as_ref()
            .map(|r| (r.iter().filter(|&&c| c > 0).count(), r.len())),
        ..Default::default()
    };
    if let Some(m) = &matched {
        for &n in &s.unseen_ns {
            let starts = (len + 1).saturating_sub(n);
            let at: Vec<f64> = (0..starts).map(|i| (m[i] < n) as u8 as f64).collect();
            st.unseen
                .push((at.iter().filter(|&&u| u > 0.0).count(), starts));
            st.unseen_at.push(at);
        }
    }
    for i in 0..len.saturating_sub(1) {
        let same = steps[i] == steps[i + 1];
        let dup = tokens[i] == tokens[i + 1];
        let unseen = matched.as_ref().is_some_and(|m| m[i] < 2);
        if same {
            st.pairs_same += 1;
            st.dup_same += dup as usize;
            st.unseen_same += unseen as usize;
        } else {
            st.pairs_diff += 1;
            st.dup_diff += dup as usize;
            st.unseen_diff += unseen as usize;
        }
    }
    for &n in &s.rep_ns {
        st.rep.push(ngram_counts(tokens, n, true));
        let (u, t) = ngram_counts(tokens, n, false);
        st.seq_rep.push(if t > 0 {
            1.0 - u as f64 / t as f64
        } else {
            f64::NAN
        });
    }
    let mut counts: HashMap<u32, f64> = HashMap::new();
    tokens
        .iter()
        .for_each(|&t| *counts.entry(t).or_default() += 1.0);
    // By token id: summed in hash-map order, the entropy's last bits changed from run to run.
    let mut by_id: Vec<(u32, f64)> = counts.into_iter().collect();
    by_id.sort_unstable_by_key(|&(t, _)| t);
    st.entropy = if len > 0 {
        entropy_nats(&by_id.iter().map(|&(_, c)| c).collect::<Vec<_>>())
    } else {
        f64::NAN
    };
    let committed = g.commit_step.iter().filter(|&&c| c >= 0).count();
    st.tokens_per_step = if g.steps > 0 {
        committed as f64 / g.steps as f64
    } else {
        f64::NAN
    };
    st
}

/// Computes the marginal-trap metrics and curves of one decode folder. Without an index the
/// unseen n-gram metrics are skipped.
pub fn analyze_decode(
    gens: &[Generation],
    index: Option<&NgramIndex>,
    settings: &TrapSettings,
    series: &str,
) -> Result<Analysis> {
    if settings
        .unseen_ns
        .iter()
        .chain(&settings.rep_ns)
        .chain(&settings.distinct_ns)
        .any(|&n| n == 0)
    {
        return Err(AnalysisError::Setting {
            name: "n",
            message: "n-gram orders must be at least 1".into(),
        });
    }
    let stats: Vec<GenStats> = gens
        .par_iter()
        .map(|g| gen_stats(g, index, settings))
        .collect();
    let units = stats.len();
    let all: Vec<usize> = (0..units).collect();
    let bs = &settings.bootstrap;
    let mut metrics = Vec::new();
    let col = |f: &dyn Fn(&GenStats) -> f64| stats.iter().map(f).collect::<Vec<f64>>();
    let push_rate = |metrics: &mut Vec<Metric>,
                     name: String,
                     num: Vec<f64>,
                     den: Vec<f64>,
                     unit: &str,
                     better: Better| {
        let value = pooled(&num, &den, &all);
        if value.is_nan() {
            return;
        }
        let stderr = bs.stderr(&name, units, |idx| pooled(&num, &den, idx));
        metrics.push(Metric {
            name,
            value,
            unit: unit.into(),
            better,
            stderr,
            n: den.iter().sum::<f64>() as u64,
        });
    };

    if index.is_some() {
        for (k, &n) in settings.unseen_ns.iter().enumerate() {
            push_rate(
                &mut metrics,
                format!("trap.unseen_{n}gram_rate"),
                col(&|s| s.unseen[k].0 as f64),
                col(&|s| s.unseen[k].1 as f64),
                "fraction",
                Better::Lower,
            );
        }
        let (us, ps, ud, pd) = (
            col(&|s| s.unseen_same as f64),
            col(&|s| s.pairs_same as f64),
            col(&|s| s.unseen_diff as f64),
            col(&|s| s.pairs_diff as f64),
        );
        push_rate(
            &mut metrics,
            "trap.same_step_unseen_bigram_rate".into(),
            us.clone(),
            ps.clone(),
            "fraction",
            Better::Lower,
        );
        push_rate(
            &mut metrics,
            "trap.diff_step_unseen_bigram_rate".into(),
            ud.clone(),
            pd.clone(),
            "fraction",
            Better::Lower,
        );
        let ratio = |idx: &[usize]| pooled(&us, &ps, idx) / pooled(&ud, &pd, idx);
        let value = ratio(&all);
        if value.is_finite() {
            let name = "trap.same_vs_diff_ratio".to_string();
            let stderr = bs.stderr(&name, units, ratio);
            metrics.push(Metric {
                name,
                value,
                unit: "ratio".into(),
                better: Better::Lower,
                stderr,
                n: (ps.iter().sum::<f64>() + pd.iter().sum::<f64>()) as u64,
            });
        }
    }
    let (ps, pd) = (col(&|s| s.pairs_same as f64), col(&|s| s.pairs_diff as f64));
    let pairs: Vec<f64> = ps.iter().zip(&pd).map(|(a, b)| a + b).collect();
    push_rate(
        &mut metrics,
        "trap.same_step_pair_fraction".into(),
        ps.clone(),
        pairs.clone(),
        "fraction",
        Better::Neither,
    );
    let (ds, dd) = (col(&|s| s.dup_same as f64), col(&|s| s.dup_diff as f64));
    let dups: Vec<f64> = ds.iter().zip(&dd).map(|(a, b)| a + b).collect();
    push_rate(
        &mut metrics,
        "trap.adjacent_duplicate_rate".into(),
        dups,
        pairs,
        "fraction",
        Better::Lower,
    );
    push_rate(
        &mut metrics,
        "trap.same_step_duplicate_rate".into(),
        ds,
        ps,
        "fraction",
        Better::Lower,
    );
    push_rate(
        &mut metrics,
        "trap.diff_step_duplicate_rate".into(),
        dd,
        pd,
        "fraction",
        Better::Lower,
    );

    // rep-n (SimCTG): 1 - sum(unique) / sum(total); as a pooled rate of repeated n-grams.
    let mut rep_num = Vec::new();
    for (k, &n) in settings.rep_ns.iter().enumerate() {
        let rep: Vec<f64> = col(&|s| (s.rep[k].1 - s.rep[k].0) as f64);
        let tot: Vec<f64> = col(&|s| s.rep[k].1 as f64);
        push_rate(
            &mut metrics,
            format!("trap.rep_{n}"),
            rep.clone(),
            tot.clone(),
            "fraction",
            Better::Lower,
        );
        rep_num.push((rep, tot));
    }
    let diversity = |idx: &[usize]| {
        rep_num
            .iter()
            .map(|(r, t)| 1.0 - pooled(r, t, idx))
            .product::<f64>()
    };
    let value = diversity(&all);
    if value.is_finite() && !rep_num.is_empty() {
        let name = "trap.diversity".to_string();
        let stderr = bs.stderr(&name, units, diversity);
        metrics.push(Metric {
            name,
            value,
            unit: "fraction".into(),
            better: Better::Higher,
            stderr,
            n: units as u64,
        });
    }
    for (k, &n) in settings.rep_ns.iter().enumerate() {
        let v = col(&|s| s.seq_rep[k]);
        let value = mean_of(&v, &all);
        if !value.is_nan() {
            let name = format!("trap.seq_rep_{n}");
            let stderr = bs.stderr(&name, units, |idx| mean_of(&v, idx));
            metrics.push(Metric {
                name,
                value,
                unit: "fraction".into(),
                better: Better::Lower,
                stderr,
                n: v.iter().filter(|x| !x.is_nan()).count() as u64,
            });
        }
    }
    // distinct-n pools one n-gram set over all generations. A bootstrap resample repeats
    // generations, which by itself lowers distinctness, so no standard error is given.
    for &n in &settings.distinct_ns {
        let mut set: HashSet<&[u32]> = HashSet::new();
        let mut total = 0usize;
        for g in gens {
            let (tokens, _) = metric_tokens(g, settings);
            if tokens.len() >= n {
                total += tokens.len() - n + 1;
                set.extend(tokens.windows(n));
            }
        }
        if total > 0 {
            metrics.push(Metric {
                name: format!("trap.distinct_{n}"),
                value: set.len() as f64 / total as f64,
                unit: "fraction".into(),
                better: Better::Higher,
                stderr: None,
                n: total as u64,
            });
        }
    }
    for (name, unit, v) in [
        ("trap.sample_entropy", "nats", col(&|s| s.entropy)),
        (
            "trap.tokens_per_step",
            "tokens",
            col(&|s| s.tokens_per_step),
        ),
        ("trap.gen_length", "tokens", col(&|s| s.len as f64)),
    ] {
        let value = mean_of(&v, &all);
        if !value.is_nan() {
            let stderr = bs.stderr(name, units, |idx| mean_of(&v, idx));
            metrics.push(Metric {
                name: name.into(),
                value,
                unit: unit.into(),
                better: Better::Neither,
                stderr,
                n: v.iter().filter(|x| !x.is_nan()).count() as u64,
            });
        }
    }
    if stats.iter().any(|s| s.remasked.is_some()) {
        push_rate(
            &mut metrics,
            "trap.remask_rate".into(),
            col(&|s| s.remasked.map_or(0.0, |r| r.0 as f64)),
            col(&|s| s.remasked.map_or(0.0, |r| r.1 as f64)),
            "fraction",
            Better::Lower,
        );
    }
    if !settings.eos_ids.is_empty() {
        push_rate(
            &mut metrics,
            "trap.empty_rate".into(),
            col(&|s| s.end.empty as u8 as f64),
            vec![1.0; units],
            "fraction",
            Better::Lower,
        );
        push_rate(
            &mut metrics,
            "trap.eos_fraction".into(),
            col(&|s| s.end.end_tokens as f64),
            col(&|s| s.end.positions as f64),
            "fraction",
            Better::Neither,
        );
        let early = col(&|s| s.end.early_eos);
        let value = mean_of(&early, &all);
        if !value.is_nan() {
            let name = "trap.early_eos_step".to_string();
            let stderr = bs.stderr(&name, units, |idx| mean_of(&early, idx));
            metrics.push(Metric {
                name,
                value,
                unit: "fraction of steps".into(),
                better: Better::Neither,
                stderr,
                n: early.iter().filter(|x| !x.is_nan()).count() as u64,
            });
        }
    }
    metrics.push(Metric {
        name: "trap.generations".into(),
        value: units as f64,
        unit: "generations".into(),
        better: Better::Neither,
        stderr: None,
        n: units as u64,
    });

    let mut curves = position_curves(&stats, settings, series)?;
    curves.extend(step_curve(gens, series));
    let per_prompt = per_generation(gens, &stats, index.is_some(), settings);
    let mut skipped = Vec::new();
    if units > 0 && stats.iter().all(|s| s.len == 0) {
        skipped.push(format!(
            "trap n-gram, repetition and entropy metrics: none of the {units} generations has an answer (each is empty before its first end token {:?}); they are not computed over padding",
            settings.eos_ids
        ));
    }
    Ok(Analysis {
        metrics,
        curves,
        per_prompt,
        skipped,
    })
}

/// The per-generation values behind the pooled rates and means: each generation's own rate
/// (its numerator over its denominator, skipped where that is zero) or value.
fn per_generation(
    gens: &[Generation],
    stats: &[GenStats],
    unseen: bool,
    settings: &TrapSettings,
) -> Vec<PromptMetric> {
    let mut out = Vec::new();
    for (g, s) in gens.iter().zip(stats) {
        let mut push = |metric: String, num: f64, den: usize| {
            if den > 0 && num.is_finite() {
                out.push(PromptMetric {
                    source: String::new(),
                    prompt_index: g.prompt_index,
                    metric,
                    value: num / den as f64,
                    n: den as u64,
                });
            }
        };
        if unseen {
            for (k, &n) in settings.unseen_ns.iter().enumerate() {
                push(
                    format!("trap.unseen_{n}gram_rate"),
                    s.unseen[k].0 as f64,
                    s.unseen[k].1,
                );
            }
            push(
                "trap.same_step_unseen_bigram_rate".into(),
                s.unseen_same as f64,
                s.pairs_same,
            );
            push(
                "trap.diff_step_unseen_bigram_rate".into(),
                s.unseen_diff as f64,
                s.pairs_diff,
            );
        }
        let pairs = s.pairs_same + s.pairs_diff;
        push(
            "trap.same_step_pair_fraction".into(),
            s.pairs_same as f64,
            pairs,
        );
        push(
            "trap.adjacent_duplicate_rate".into(),
            (s.dup_same + s.dup_diff) as f64,
            pairs,
        );
        for (k, &n) in settings.rep_ns.iter().enumerate() {
            push(format!("trap.seq_rep_{n}"), s.seq_rep[k], 1);
        }
        push("trap.sample_entropy".into(), s.entropy, 1);
        push("trap.tokens_per_step".into(), s.tokens_per_step, 1);
        push("trap.gen_length".into(), s.len as f64, 1);
        if let Some((remasked, positions)) = s.remasked {
            push("trap.remask_rate".into(), remasked as f64, positions);
        }
        if !settings.eos_ids.is_empty() {
            push("trap.empty_rate".into(), s.end.empty as u8 as f64, 1);
            push(
                "trap.eos_fraction".into(),
                s.end.end_tokens as f64,
                s.end.positions,
            );
            push("trap.early_eos_step".into(), s.end.early_eos, 1);
        }
    }
    out
}

/// Unseen n-gram indicators and adjacent duplicates by distance of the first token.
fn position_curves(
    stats: &[GenStats],
    settings: &TrapSettings,
    series: &str,
) -> Result<Vec<CurvePoint>> {
    let rows: usize = stats.iter().map(|s| s.len).sum();
    let mut distance = Vec::with_capacity(rows);
    let mut qs: Vec<Quantity> = Vec::new();
    let has_unseen = stats.iter().any(|s| !s.unseen_at.is_empty());
    if has_unseen {
        for &n in &settings.unseen_ns {
            let label = if series == "all" {
                format!("n={n}")
            } else {
                format!("{series}:n={n}")
            };
            qs.push(Quantity {
                curve: "unseen_rate",
                series: label,
                values: Vec::with_capacity(rows),
            });
        }
    }
    for s in stats {
        for i in 0..s.len {
            distance.push(i as u32 + 1);
            for (k, q) in qs.iter_mut().enumerate() {
                q.values
                    .push(s.unseen_at[k].get(i).copied().unwrap_or(f64::NAN));
            }
        }
    }
    if qs.is_empty() || distance.is_empty() {
        return Ok(Vec::new());
    }
    distance_curves(&distance, &qs)
}

/// Tokens committed at each step (x = 0-based step), over generations that ran that step.
fn step_curve(gens: &[Generation], series: &str) -> Vec<CurvePoint> {
    let max_steps = gens.iter().map(|g| g.steps as usize).max().unwrap_or(0);
    let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); max_steps];
    for g in gens {
        let mut c = vec![0.0; g.steps as usize];
        for &s in &g.commit_step {
            if s >= 0 && (s as usize) < c.len() {
                c[s as usize] += 1.0;
            }
        }
        for (s, v) in c.into_iter().enumerate() {
            per_step[s].push(v);
        }
    }
    per_step
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(s, mut v)| {
            v.sort_by(f64::total_cmp);
            use crate::stats::quantile_sorted as q;
            CurvePoint {
                curve: "commits_per_step".into(),
                series: series.into(),
                x: s as f64,
                mean: crate::stats::mean(&v),
                median: q(&v, 0.5),
                q25: q(&v, 0.25),
                q75: q(&v, 0.75),
                n: v.len() as u64,
            }
        })
        .collect()
}
