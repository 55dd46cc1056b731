//! Information-loss metrics from corrupt output (one row per masked position of a clean text
//! masked at a ratio, after one forward pass).
//!
//! Masking removes every position alike, but a rare token carries more information than a
//! frequent one. These metrics say how much the model loses per masked token and per sequence at
//! each ratio, how much of that loss the rarest positions carry, and whether rare tokens lose
//! more than frequent ones as the context disappears. Pooled means are bootstrapped over texts.
//! METRICS.md ("Information loss") gives every formula.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use cp_records::{Better, CorruptRecord, CurvePoint, Metric, PromptMetric};

use crate::agg::kahan_sum;
use crate::collapse::Analysis;
use crate::error::Result;
use crate::stats::{pooled, quantile_sorted, Bootstrap};

/// Frequency deciles: decile 1 holds the most frequent tokens, [`DECILES`] the rarest.
pub const DECILES: usize = 10;

/// The shares of masked positions, in percent, whose share of the loss the concentration
/// metrics report (`concentration_10`, `concentration_20`).
const CONCENTRATION_PERCENTS: [usize; 2] = [10, 20];

/// The frequency-rank boundaries of the deciles: `upper[j]` is the largest rank in decile
/// `j + 1` (`j < 9`); decile 10 takes every rank above `upper[8]`.
///
/// The boundaries come from the folder's distinct masked text positions (each (text, position)
/// once, however many ratios and samples masked it), so they describe the texts rather than how
/// often a scheme masks a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecileBoundaries {
    pub upper: [u32; DECILES - 1],
}

impl DecileBoundaries {
    /// Boundaries of these frequency ranks (one per distinct text position, in any order):
    /// with the ranks sorted ascending as `r_1 ≤ … ≤ r_N`, `upper[j - 1] = r_⌈j·N/10⌉`.
    /// `None` without ranks.
    pub fn of_ranks(mut ranks: Vec<u32>) -> Option<Self> {
        if ranks.is_empty() {
            return None;
        }
        ranks.sort_unstable();
        let n = ranks.len();
        let mut upper = [0u32; DECILES - 1];
        for (j, b) in upper.iter_mut().enumerate() {
            // 1-based index ⌈(j + 1)·N / 10⌉, in integers so that 0.1·30 is exactly 3.
            let k = ((j + 1) * n).div_ceil(DECILES);
            *b = ranks[k - 1];
        }
        Some(DecileBoundaries { upper })
    }

    /// The 1-based decile of a frequency rank: the first decile whose upper boundary is at or
    /// above it (a rank equal to a boundary belongs to the lower, more frequent decile).
    pub fn decile(&self, rank: u32) -> usize {
        1 + self.upper.iter().filter(|&&b| rank > b).count()
    }
}

/// `base@ratio=R`, with `R` written as the records store it (`0.1`, not `0.10000000149`).
fn at_ratio(base: &str, ratio: f32) -> String {
    format!("{base}@ratio={ratio}")
}

/// A curve series of one folder: `name` alone, or `label:name` when the folder has a label.
fn series_name(series: &str, name: &str) -> String {
    if series == "all" {
        name.to_owned()
    } else {
        format!("{series}:{name}")
    }
}

/// Sums and counts of one quantity per (unit, ratio) cell, in a flat `unit * ratios + ratio`
/// layout, so that a pooled mean over resampled units is two lookups per unit.
struct Cells {
    ratios: usize,
    sum: Vec<f64>,
    count: Vec<f64>,
}

impl Cells {
    fn new(units: usize, ratios: usize) -> Self {
        Cells {
            ratios,
            sum: vec![0.0; units * ratios],
            count: vec![0.0; units * ratios],
        }
    }

    fn add(&mut self, unit: usize, ratio: usize, value: f64) {
        let i = unit * self.ratios + ratio;
        self.sum[i] += value;
        self.count[i] += 1.0;
    }

    /// Every unit's sum and count at one ratio.
    fn column(&self, ratio: usize) -> (Vec<f64>, Vec<f64>) {
        let pick = |v: &[f64]| v.iter().skip(ratio).step_by(self.ratios).copied().collect();
        (pick(&self.sum), pick(&self.count))
    }
}

/// One masked position, as the concentration metrics order them.
struct Ranked {
    /// Rarest first: frequency rank descending, then token id, text, sample and position.
    key: (Reverse<u32>, u32, u32, u32, u32),
    unit: usize,
    nll: f64,
}

/// A statistic of resampled units, as the bootstrap takes it.
type Statistic<'a> = &'a (dyn Fn(&[usize]) -> f64 + Sync);

/// The share of the total NLL that the rarest `percent` % of the masked positions carry, over
/// a resample given as unit multiplicities. `sorted` holds the positions rarest first;
/// `count` and `total` each unit's positions and summed NLL.
fn concentration(
    sorted: &[Ranked],
    count: &[f64],
    total: &[f64],
    multiplicity: &[usize],
    percent: usize,
) -> f64 {
    let n: usize = multiplicity
        .iter()
        .zip(count)
        .map(|(&m, &c)| m * c as usize)
        .sum();
    let all: f64 = multiplicity
        .iter()
        .zip(total)
        .map(|(&m, &t)| m as f64 * t)
        .sum();
    if n == 0 || all <= 0.0 {
        return f64::NAN;
    }
    // The rarest ⌈percent·n/100⌉ positions, a resampled unit's copies of one position being
    // as many positions side by side (they tie on every key).
    let k = (percent * n).div_ceil(100);
    let (mut taken, mut top) = (0usize, 0.0f64);
    for r in sorted {
        let m = multiplicity[r.unit];
        if m == 0 {
            continue;
        }
        let take = m.min(k - taken);
        top += take as f64 * r.nll;
        taken += take;
        if taken == k {
            break;
        }
    }
    top / all
}

/// How often each unit occurs in a resample.
fn multiplicity(idx: &[usize], units: usize) -> Vec<usize> {
    let mut m = vec![0usize; units];
    for &u in idx {
        m[u] += 1;
    }
    m
}

/// Mean, median, quartiles and count of some values (NaN-free, in row order), as a curve
/// point: the numbers polars' `group_by(x).agg(...)` gives, as for every other curve (the mean a
/// Kahan sum in row order, a lone value its own mean; see the `agg` module).
fn point(curve: &str, series: String, x: f64, mut values: Vec<f64>) -> Option<CurvePoint> {
    let mean = match values.len() {
        0 => return None,
        1 => values[0],
        n => kahan_sum(&values) / n as f64,
    };
    values.sort_by(f64::total_cmp);
    Some(CurvePoint {
        curve: curve.into(),
        series,
        x,
        mean,
        median: quantile_sorted(&values, 0.5),
        q25: quantile_sorted(&values, 0.25),
        q75: quantile_sorted(&values, 0.75),
        n: values.len() as u64,
    })
}

/// Computes the information-loss metrics and curves of one corrupt folder. `series` is `all`
/// for a lone corrupt folder, else the folder's label.
pub fn analyze_corrupt(
    records: &[CorruptRecord],
    bootstrap: &Bootstrap,
    series: &str,
) -> Result<Analysis> {
    if records.is_empty() {
        return Ok(Analysis {
            skipped: vec!["corrupt metrics: the folder holds no records".into()],
            ..Analysis::default()
        });
    }
    // Texts become dense units 0..U in ascending text order; ratios indices 0..R ascending.
    let mut texts: Vec<u32> = records.iter().map(|r| r.text_index).collect();
    texts.sort_unstable();
    texts.dedup();
    let unit_of: HashMap<u32, usize> = texts.iter().enumerate().map(|(u, &t)| (t, u)).collect();
    let mut ratios: Vec<f32> = records.iter().map(|r| r.ratio).collect();
    ratios.sort_by(f32::total_cmp);
    ratios.dedup_by(|a, b| a.to_bits() == b.to_bits());
    let ratio_of = |r: f32| {
        ratios
            .binary_search_by(|x| x.total_cmp(&r))
            .expect("every ratio was collected")
    };
    let (units, nr) = (texts.len(), ratios.len());

    let mut positions: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for r in records {
        positions
            .entry((r.text_index, r.position))
            .or_insert(r.freq_rank);
    }
    let deciles =
        DecileBoundaries::of_ranks(positions.into_values().collect()).expect("records exist");

    // Per (unit, ratio): NLL, context gain, and the (text, sample) pairs; per decile the NLL.
    let mut nll = Cells::new(units, nr);
    let mut gain = Cells::new(units, nr);
    let mut by_decile: Vec<Cells> = (0..DECILES).map(|_| Cells::new(units, nr)).collect();
    let mut samples: Vec<Vec<u32>> = vec![Vec::new(); units * nr];
    // Curve values, in row order: NLL by ratio and by (ratio, decile), context gain by (ratio,
    // distance).
    let mut ratio_values: Vec<Vec<f64>> = vec![Vec::new(); nr];
    let mut decile_values: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); DECILES]; nr];
    let mut gain_values: Vec<BTreeMap<u32, Vec<f64>>> = vec![BTreeMap::new(); nr];
    let mut ranked: Vec<Vec<Ranked>> = (0..nr).map(|_| Vec::new()).collect();
    for r in records {
        let (u, k) = (unit_of[&r.text_index], ratio_of(r.ratio));
        samples[u * nr + k].push(r.sample);
        let v = f64::from(r.nll);
        // A non-finite value is a broken row, not a loss: left out of every NLL quantity.
        if v.is_finite() {
            nll.add(u, k, v);
            let d = deciles.decile(r.freq_rank);
            by_decile[d - 1].add(u, k, v);
            ratio_values[k].push(v);
            decile_values[k][d - 1].push(v);
            ranked[k].push(Ranked {
                key: (
                    Reverse(r.freq_rank),
                    r.token_id,
                    r.text_index,
                    r.sample,
                    r.position,
                ),
                unit: u,
                nll: v,
            });
        }
        let g = f64::from(r.context_gain);
        if g.is_finite() {
            gain.add(u, k, g);
            if r.context_distance >= 1 {
                gain_values[k]
                    .entry(r.context_distance)
                    .or_default()
                    .push(g);
            }
        }
    }
    let pairs: Vec<f64> = samples
        .iter_mut()
        .map(|s| {
            s.sort_unstable();
            s.dedup();
            s.len() as f64
        })
        .collect();

    let all: Vec<usize> = (0..units).collect();
    let mut metrics = Vec::new();
    let push_pooled = |metrics: &mut Vec<Metric>,
                       name: String,
                       unit: &str,
                       better: Better,
                       num: Vec<f64>,
                       den: Vec<f64>| {
        let value = pooled(&num, &den, &all);
        if !value.is_finite() {
            return;
        }
        let stderr = bootstrap.stderr(&name, units, |idx| pooled(&num, &den, idx));
        metrics.push(Metric {
            name,
            value,
            unit: unit.into(),
            better,
            stderr,
            n: den.iter().sum::<f64>() as u64,
        });
    };
    let mut curves = Vec::new();
    for (k, &ratio) in ratios.iter().enumerate() {
        let (sum, count) = nll.column(k);
        let pair_count: Vec<f64> = pairs.iter().skip(k).step_by(nr).copied().collect();
        push_pooled(
            &mut metrics,
            at_ratio("corrupt.nll", ratio),
            "nats",
            Better::Lower,
            sum.clone(),
            count,
        );
        push_pooled(
            &mut metrics,
            at_ratio("corrupt.nll_per_sequence", ratio),
            "nats",
            Better::Lower,
            sum,
            pair_count,
        );
        let (gsum, gcount) = gain.column(k);
        push_pooled(
            &mut metrics,
            at_ratio("corrupt.context_gain", ratio),
            "nats",
            Better::Higher,
            gsum,
            gcount,
        );
        for (base, decile) in [("corrupt.nll_frequent", 1), ("corrupt.nll_rare", DECILES)] {
            let (s, c) = by_decile[decile - 1].column(k);
            push_pooled(
                &mut metrics,
                at_ratio(base, ratio),
                "nats",
                Better::Lower,
                s,
                c,
            );
        }

        // Concentration: the positions rarest first, ties by token id, text, sample, position.
        let mut sorted = std::mem::take(&mut ranked[k]);
        sorted.sort_unstable_by_key(|r| r.key);
        let (total, count) = nll.column(k);
        for percent in CONCENTRATION_PERCENTS {
            let name = at_ratio(&format!("corrupt.concentration_{percent}"), ratio);
            let share = |idx: &[usize]| {
                concentration(&sorted, &count, &total, &multiplicity(idx, units), percent)
            };
            let value = share(&all);
            if !value.is_finite() {
                continue;
            }
            let stderr = bootstrap.stderr(&name, units, share);
            let se = stderr.unwrap_or(0.0);
            // As the sweep curves: the value, and one standard error either side.
            curves.push(CurvePoint {
                curve: "corrupt_concentration".into(),
                series: series_name(series, &format!("top{percent}")),
                x: f64::from(ratio),
                mean: value,
                median: value,
                q25: value - se,
                q75: value + se,
                n: sorted.len() as u64,
            });
            metrics.push(Metric {
                name,
                value,
                unit: "fraction".into(),
                better: Better::Neither,
                stderr,
                n: sorted.len() as u64,
            });
        }
    }

    // Fragility: how much a decile's NLL rises from the lowest to the highest ratio, with the
    // decile boundaries held fixed in every resample.
    if nr >= 2 {
        let (lo, hi) = (0, nr - 1);
        let rise = |decile: usize| {
            let c = &by_decile[decile - 1];
            let (slo, clo) = c.column(lo);
            let (shi, chi) = c.column(hi);
            move |idx: &[usize]| pooled(&shi, &chi, idx) - pooled(&slo, &clo, idx)
        };
        let (rare, frequent) = (rise(DECILES), rise(1));
        let gap = |idx: &[usize]| rare(idx) - frequent(idx);
        let n_of = |d: usize| {
            let c = &by_decile[d - 1];
            (c.column(lo).1.iter().sum::<f64>() + c.column(hi).1.iter().sum::<f64>()) as u64
        };
        let fragility: [(&str, Statistic, Better, u64); 3] = [
            (
                "corrupt.fragility_rare",
                &rare,
                Better::Lower,
                n_of(DECILES),
            ),
            (
                "corrupt.fragility_frequent",
                &frequent,
                Better::Lower,
                n_of(1),
            ),
            (
                "corrupt.fragility_gap",
                &gap,
                Better::Neither,
                n_of(DECILES) + n_of(1),
            ),
        ];
        for (name, stat, better, n) in fragility {
            let value = stat(&all);
            // NaN when the decile is empty at either ratio: omitted, not zero.
            if !value.is_finite() {
                continue;
            }
            metrics.push(Metric {
                name: name.into(),
                value,
                unit: "nats".into(),
                better,
                stderr: bootstrap.stderr(name, units, stat),
                n,
            });
        }
    }
    metrics.push(Metric {
        name: "corrupt.texts".into(),
        value: units as f64,
        unit: "texts".into(),
        better: Better::Neither,
        stderr: None,
        n: units as u64,
    });

    for (k, &ratio) in ratios.iter().enumerate() {
        let ratio_series = series_name(series, &format!("ratio={ratio}"));
        curves.extend(point(
            "corrupt_nll_by_ratio",
            series.to_owned(),
            f64::from(ratio),
            std::mem::take(&mut ratio_values[k]),
        ));
        for (d, values) in decile_values[k].iter_mut().enumerate() {
            curves.extend(point(
                "corrupt_nll_by_decile",
                ratio_series.clone(),
                (d + 1) as f64,
                std::mem::take(values),
            ));
        }
        for (&distance, values) in &mut gain_values[k] {
            curves.extend(point(
                "corrupt_context_gain",
                ratio_series.clone(),
                f64::from(distance),
                std::mem::take(values),
            ));
        }
    }

    Ok(Analysis {
        metrics,
        curves,
        per_prompt: per_text(&texts, &ratios, &nll, &gain, &pairs),
        skipped: Vec::new(),
    })
}

/// Every text's own values at every ratio: its mean NLL per masked token, its mean summed NLL
/// per sample, and its mean context gain (each left out where the text has no value).
fn per_text(
    texts: &[u32],
    ratios: &[f32],
    nll: &Cells,
    gain: &Cells,
    pairs: &[f64],
) -> Vec<PromptMetric> {
    let nr = ratios.len();
    let mut out = Vec::new();
    for (u, &text) in texts.iter().enumerate() {
        for (k, &ratio) in ratios.iter().enumerate() {
            let i = u * nr + k;
            let has_nll = nll.count[i] > 0.0;
            for (base, num, den, present) in [
                ("corrupt.nll", nll.sum[i], nll.count[i], has_nll),
                ("corrupt.nll_per_sequence", nll.sum[i], pairs[i], has_nll),
                ("corrupt.context_gain", gain.sum[i], gain.count[i], true),
            ] {
                if present && den > 0.0 {
                    out.push(PromptMetric {
                        source: String::new(),
                        prompt_index: text,
                        metric: at_ratio(base, ratio),
                        value: num / den,
                        n: den as u64,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_of_ten_distinct_ranks_are_one_rank_each() {
        let b = DecileBoundaries::of_ranks((1..=10).rev().collect()).unwrap();
        assert_eq!(b.upper, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            (b.decile(1), b.decile(5), b.decile(10), b.decile(99)),
            (1, 5, 10, 10)
        );
    }

    #[test]
    fn a_rank_on_a_boundary_goes_to_the_lower_decile() {
        // Rank 1 fills the first 30 %: deciles 2 and 3 are empty, decile 1 takes all of it.
        let b = DecileBoundaries::of_ranks(vec![1, 1, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(b.upper, [1, 1, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!((b.decile(1), b.decile(2), b.decile(8)), (1, 4, 10));
        // N = 30: the 10 % boundary is the 3rd rank, computed without 0.1 · 30 > 3 rounding up.
        let b = DecileBoundaries::of_ranks((1..=30).collect()).unwrap();
        assert_eq!(b.upper[0], 3);
        assert_eq!(b.upper[8], 27);
    }

    #[test]
    fn concentration_counts_resampled_copies_as_positions() {
        // Unit 0: NLL 4 (rarest) and 1; unit 1: NLL 2 and 3. Sorted rarest first: 4, 2, 1, 3.
        let ranked = |unit, nll| Ranked {
            key: Default::default(),
            unit,
            nll,
        };
        let sorted = [
            ranked(0, 4.0),
            ranked(1, 2.0),
            ranked(0, 1.0),
            ranked(1, 3.0),
        ];
        let (count, total) = ([2.0, 2.0], [5.0, 5.0]);
        // Top 10 % of 4 positions is ⌈0.4⌉ = 1: the rarest, 4 of 10.
        assert_eq!(concentration(&sorted, &count, &total, &[1, 1], 10), 0.4);
        // Unit 0 twice: 4 positions of 4, 4, 1, 1; top ⌈0.8⌉ = 1 position, 4 of 10.
        assert_eq!(concentration(&sorted, &count, &total, &[2, 0], 20), 0.4);
        // Unit 0 three times, unit 1 twice: 10 positions, top 2 are both copies of the 4:
        // 8 of 15 + 10.
        assert_eq!(
            concentration(&sorted, &count, &total, &[3, 2], 20),
            8.0 / 25.0
        );
    }
}
