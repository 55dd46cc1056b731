//! Frequency-collapse metrics from probe records (one row per prompt and mask position).
//!
//! Every quantity is first computed per row, then summarised two ways:
//! by distance from the prompt (curves: mean, median, quartiles over the rows at that
//! distance, aggregated with polars) and per prompt over the near and far bands (headline
//! metrics: the mean over prompts of each prompt's band mean, bootstrapped over prompts).
//! METRICS.md gives every formula.

use std::collections::HashMap;

use cp_records::{Better, CurvePoint, Metric, ProbeRecord};
use polars::prelude::*;
use rayon::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::stats::{mean_of, median_of, Bootstrap};
use crate::unigram::Unigram;

/// The columns of probe records the analysis reads, flattened (top-k lists share one buffer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeColumns {
    pub prompt_index: Vec<u32>,
    pub distance: Vec<u32>,
    /// Row `i`'s top-k entries are `top_ids[top_offsets[i]..top_offsets[i + 1]]`.
    pub top_offsets: Vec<usize>,
    pub top_ids: Vec<u32>,
    pub top_probs: Vec<f32>,
    pub entropy: Vec<f32>,
    pub max_prob: Vec<f32>,
    pub margin: Vec<f32>,
    pub eot_mass: Vec<f32>,
    /// NaN where the probe had no unigram table.
    pub kl_unigram: Vec<f32>,
    pub xent_unigram: Vec<f32>,
    /// NaN at distance 1.
    pub js_prev: Vec<f32>,
}

impl ProbeColumns {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.distance.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.distance.is_empty()
    }

    /// Columns of in-memory records.
    pub fn from_records(rows: &[ProbeRecord]) -> Self {
        let mut c = ProbeColumns { top_offsets: vec![0], ..Default::default() };
        for r in rows {
            c.prompt_index.push(r.prompt_index);
            c.distance.push(r.distance);
            c.top_ids.extend_from_slice(&r.top_ids);
            c.top_probs.extend_from_slice(&r.top_probs);
            c.top_probs.resize(c.top_ids.len(), 0.0);
            c.top_offsets.push(c.top_ids.len());
            c.entropy.push(r.entropy);
            c.max_prob.push(r.max_prob);
            c.margin.push(r.margin);
            c.eot_mass.push(r.eot_mass);
            c.kl_unigram.push(r.kl_unigram.unwrap_or(f32::NAN));
            c.xent_unigram.push(r.xent_unigram.unwrap_or(f32::NAN));
            c.js_prev.push(r.js_prev.unwrap_or(f32::NAN));
        }
        c
    }

    /// Columns of a probe-records data frame (as written by `cp_records::write_table`); the
    /// `top_tokens` column is never read.
    pub fn from_frame(df: &DataFrame, name: &str) -> Result<Self> {
        let err = |column: &str, e: PolarsError| AnalysisError::Polars { context: format!("{name}: column `{column}`"), source: e };
        let prim = |column: &str, dtype: DataType| -> Result<Series> {
            let s = df.column(column).map_err(|e| err(column, e))?.as_materialized_series().strict_cast(&dtype).map_err(|e| err(column, e))?;
            Ok(s.rechunk())
        };
        let u32s = |column: &str| -> Result<Vec<u32>> {
            Ok(prim(column, DataType::UInt32)?.u32().expect("cast").iter().map(|v| v.unwrap_or(0)).collect())
        };
        let f32s = |column: &str| -> Result<Vec<f32>> {
            if df.column(column).is_err() {
                return Ok(vec![f32::NAN; df.height()]);
            }
            Ok(prim(column, DataType::Float32)?.f32().expect("cast").iter().map(|v| v.unwrap_or(f32::NAN)).collect())
        };
        let ids = prim("top_ids", DataType::List(Box::new(DataType::UInt32)))?;
        let probs = prim("top_probs", DataType::List(Box::new(DataType::Float32)))?;
        let (top_offsets, top_ids) = flatten(&ids, |s| s.u32().expect("cast").no_null_iter().collect());
        let (prob_offsets, mut top_probs) = flatten(&probs, |s| s.f32().expect("cast").no_null_iter().collect());
        if prob_offsets != top_offsets {
            // Rows whose probability list is shorter or longer than their id list: pad with 0 or cut.
            let mut aligned = Vec::with_capacity(top_ids.len());
            for i in 0..top_offsets.len() - 1 {
                let p = &top_probs[prob_offsets[i]..prob_offsets[i + 1]];
                let k = top_offsets[i + 1] - top_offsets[i];
                aligned.extend(p.iter().copied().chain(std::iter::repeat(0.0)).take(k));
            }
            top_probs = aligned;
        }
        Ok(ProbeColumns {
            prompt_index: u32s("prompt_index")?,
            distance: u32s("distance")?,
            top_offsets,
            top_ids,
            top_probs,
            entropy: f32s("entropy")?,
            max_prob: f32s("max_prob")?,
            margin: f32s("margin")?,
            eot_mass: f32s("eot_mass")?,
            kl_unigram: f32s("kl_unigram")?,
            xent_unigram: f32s("xent_unigram")?,
            js_prev: f32s("js_prev")?,
        })
    }
}

/// Offsets and flattened values of a list column (null lists are empty).
fn flatten<T>(s: &Series, values: impl Fn(&Series) -> Vec<T>) -> (Vec<usize>, Vec<T>) {
    let mut offsets = vec![0usize];
    let mut flat = Vec::new();
    for v in s.list().expect("cast").amortized_iter() {
        if let Some(v) = v {
            flat.extend(values(v.as_ref()));
        }
        offsets.push(flat.len());
    }
    (offsets, flat)
}

/// Settings of the collapse metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct CollapseSettings {
    /// `F`: how many of the corpus's most frequent tokens count as "frequent".
    pub top_frequent: usize,
    /// The frequent-token share from which collapse is declared.
    pub onset_threshold: f64,
    pub bootstrap: Bootstrap,
}

impl Default for CollapseSettings {
    fn default() -> Self {
        CollapseSettings { top_frequent: 20, onset_threshold: 0.5, bootstrap: Bootstrap { replicates: 1000, seed: 0 } }
    }
}

/// Metrics and curves of one analysed folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    pub metrics: Vec<Metric>,
    pub curves: Vec<CurvePoint>,
}

/// The near and far bands of distances `1..=max_distance`: the first and the last
/// `max(1, ceil(max_distance / 4))` distances.
pub fn bands(max_distance: u32) -> (std::ops::RangeInclusive<u32>, std::ops::RangeInclusive<u32>) {
    let q = max_distance.div_ceil(4).max(1);
    (1..=q.min(max_distance.max(1)), (max_distance.saturating_sub(q) + 1).max(1)..=max_distance.max(1))
}

/// Collapse onset of a mean curve `share[d - 1]` (NaN where no prompt reached distance `d`):
/// one plus the last distance whose share is below `threshold`, so the share stays at or above
/// the threshold from the onset on. `1` when every distance is at or above it; `len + 1` when
/// the last distance is below it (no collapse within the probed window).
pub fn onset(share: &[f64], threshold: f64) -> u32 {
    let last_below = share.iter().rposition(|&s| !s.is_nan() && s < threshold);
    match last_below {
        Some(i) => i as u32 + 2,
        None => 1,
    }
}

/// Per-row derived quantities that need the corpus unigram table.
struct Frequency {
    share: Vec<f64>,
    mass: Vec<f64>,
    rank: Vec<f64>,
}

fn frequency(cols: &ProbeColumns, unigram: &Unigram, f: usize) -> Frequency {
    let frequent = unigram.most_frequent(f);
    let mut is_frequent = vec![false; unigram.len()];
    frequent.iter().for_each(|&t| is_frequent[t as usize] = true);
    let ranks = unigram.ranks();
    let per_row: Vec<(f64, f64, f64)> = (0..cols.len())
        .into_par_iter()
        .with_min_len(4096)
        .map(|i| {
            let (a, b) = (cols.top_offsets[i], cols.top_offsets[i + 1]);
            let ids = &cols.top_ids[a..b];
            let probs = &cols.top_probs[a..b];
            let mut hits = 0usize;
            let mut mass = 0.0f64;
            for (&t, &p) in ids.iter().zip(probs) {
                if is_frequent.get(t as usize).copied().unwrap_or(false) {
                    hits += 1;
                    mass += p as f64;
                }
            }
            if ids.is_empty() {
                (f64::NAN, f64::NAN, f64::NAN)
            } else {
                (hits as f64 / ids.len() as f64, mass, ranks.rank(ids[0]) as f64)
            }
        })
        .collect();
    let mut out = Frequency { share: Vec::with_capacity(per_row.len()), mass: Vec::with_capacity(per_row.len()), rank: Vec::with_capacity(per_row.len()) };
    for (s, m, r) in per_row {
        out.share.push(s);
        out.mass.push(m);
        out.rank.push(r);
    }
    out
}

/// A per-row quantity with its metric metadata.
pub(crate) struct Quantity {
    pub(crate) curve: &'static str,
    pub(crate) series: String,
    pub(crate) values: Vec<f64>,
    pub(crate) unit: &'static str,
    pub(crate) better: Better,
    /// Band summary: per-prompt median then median over prompts, instead of means.
    pub(crate) median: bool,
}

/// Computes the collapse metrics and curves of one probe folder. Without a unigram table
/// the frequency metrics (`frequent_share`, `frequent_mass`, `top1_rank`, onset) are skipped.
pub fn analyze_probe(cols: &ProbeColumns, unigram: Option<&Unigram>, settings: &CollapseSettings, series: &str) -> Result<Analysis> {
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut qs = vec![
        Quantity { curve: "entropy", series: series.to_owned(), values: f64s(&cols.entropy), unit: "nats", better: Better::Neither, median: false },
        Quantity { curve: "max_prob", series: series.to_owned(), values: f64s(&cols.max_prob), unit: "probability", better: Better::Neither, median: false },
        Quantity { curve: "margin", series: series.to_owned(), values: f64s(&cols.margin), unit: "probability", better: Better::Neither, median: false },
        Quantity { curve: "eot_mass", series: series.to_owned(), values: f64s(&cols.eot_mass), unit: "probability", better: Better::Neither, median: false },
        Quantity { curve: "kl_unigram", series: series.to_owned(), values: f64s(&cols.kl_unigram), unit: "nats", better: Better::Neither, median: false },
        Quantity { curve: "xent_unigram", series: series.to_owned(), values: f64s(&cols.xent_unigram), unit: "nats", better: Better::Neither, median: false },
        Quantity { curve: "js_adjacent", series: series.to_owned(), values: f64s(&cols.js_prev), unit: "nats", better: Better::Neither, median: false },
    ];
    let freq = unigram.map(|u| frequency(cols, u, settings.top_frequent));
    if let Some(fr) = &freq {
        qs.push(Quantity { curve: "frequent_share", series: series.to_owned(), values: fr.share.clone(), unit: "fraction", better: Better::Lower, median: false });
        qs.push(Quantity { curve: "frequent_mass", series: series.to_owned(), values: fr.mass.clone(), unit: "probability", better: Better::Lower, median: false });
        qs.push(Quantity { curve: "top1_rank", series: series.to_owned(), values: fr.rank.clone(), unit: "rank", better: Better::Higher, median: true });
    }
    let curves = distance_curves(&cols.distance, &qs)?;

    // Prompts become dense units 0..P, in order of first appearance.
    let mut unit_of: HashMap<u32, usize> = HashMap::new();
    let unit: Vec<usize> = cols.prompt_index.iter().map(|&p| { let n = unit_of.len(); *unit_of.entry(p).or_insert(n) }).collect();
    let prompts = unit_of.len();
    let max_d = cols.distance.iter().copied().max().unwrap_or(0);
    let (near, far) = bands(max_d);

    let mut metrics = Vec::new();
    for q in &qs {
        if q.values.iter().all(|v| v.is_nan()) {
            continue;
        }
        for (band, range) in [("near", &near), ("far", &far)] {
            let mut per: Vec<Vec<f64>> = vec![Vec::new(); prompts];
            for (i, &v) in q.values.iter().enumerate() {
                if !v.is_nan() && range.contains(&cols.distance[i]) {
                    per[unit[i]].push(v);
                }
            }
            let summary: Vec<f64> = per
                .iter()
                .map(|v| if q.median { crate::stats::quantile(v, 0.5) } else { crate::stats::mean(v) })
                .collect();
            let all: Vec<usize> = (0..prompts).collect();
            let stat = |idx: &[usize]| if q.median { median_of(&summary, idx) } else { mean_of(&summary, idx) };
            let value = stat(&all);
            if value.is_nan() {
                continue;
            }
            let name = format!("collapse.{}.{band}", q.curve);
            let n = summary.iter().filter(|v| !v.is_nan()).count() as u64;
            let stderr = settings.bootstrap.stderr(&name, prompts, stat);
            metrics.push(Metric { name, value, unit: q.unit.into(), better: q.better, stderr, n });
        }
    }

    if let Some(fr) = &freq {
        // Onset: from the mean-over-prompts share curve, recomputed on every bootstrap resample.
        let d = max_d as usize;
        let mut grid = vec![f64::NAN; prompts * d];
        for (i, &s) in fr.share.iter().enumerate() {
            let di = cols.distance[i] as usize;
            if di >= 1 && !s.is_nan() {
                grid[unit[i] * d + di - 1] = s;
            }
        }
        let onset_of = |idx: &[usize]| {
            let mut sum = vec![0.0; d];
            let mut cnt = vec![0usize; d];
            for &u in idx {
                for (j, &s) in grid[u * d..(u + 1) * d].iter().enumerate() {
                    if !s.is_nan() {
                        sum[j] += s;
                        cnt[j] += 1;
                    }
                }
            }
            let curve: Vec<f64> = sum.iter().zip(&cnt).map(|(&s, &c)| if c > 0 { s / c as f64 } else { f64::NAN }).collect();
            onset(&curve, settings.onset_threshold) as f64
        };
        let all: Vec<usize> = (0..prompts).collect();
        let name = "collapse.onset".to_string();
        let stderr = settings.bootstrap.stderr(&name, prompts, onset_of);
        metrics.push(Metric { name, value: onset_of(&all), unit: "distance".into(), better: Better::Higher, stderr, n: prompts as u64 });
    }
    metrics.push(Metric { name: "collapse.prompts".into(), value: prompts as f64, unit: "prompts".into(), better: Better::Neither, stderr: None, n: prompts as u64 });
    metrics.push(Metric { name: "collapse.max_distance".into(), value: max_d as f64, unit: "distance".into(), better: Better::Neither, stderr: None, n: cols.len() as u64 });
    Ok(Analysis { metrics, curves })
}

/// Mean, median, quartiles and count of every quantity by distance, with polars.
pub(crate) fn distance_curves(distance: &[u32], qs: &[Quantity]) -> Result<Vec<CurvePoint>> {
    let perr = |e: PolarsError| AnalysisError::Polars { context: "aggregating curves by distance".into(), source: e };
    let mut columns: Vec<Column> = vec![Series::new("distance".into(), distance).into()];
    // Column names must be unique; curve and series together are.
    let key = |q: &Quantity| format!("{}/{}", q.curve, q.series);
    for q in qs {
        let vals: Vec<Option<f64>> = q.values.iter().map(|&v| if v.is_nan() { None } else { Some(v) }).collect();
        columns.push(Series::new(key(q).into(), vals).into());
    }
    let df = DataFrame::new_infer_height(columns).map_err(perr)?;
    let mut aggs = Vec::new();
    for q in qs {
        let c = key(q);
        let c = c.as_str();
        aggs.push(col(c).mean().alias(format!("{c}|mean")));
        aggs.push(col(c).median().alias(format!("{c}|median")));
        aggs.push(col(c).quantile(lit(0.25), QuantileMethod::Linear).alias(format!("{c}|q25")));
        aggs.push(col(c).quantile(lit(0.75), QuantileMethod::Linear).alias(format!("{c}|q75")));
        aggs.push(col(c).count().alias(format!("{c}|n")));
    }
    let out = df
        .lazy()
        .group_by([col("distance")])
        .agg(aggs)
        .sort(["distance"], Default::default())
        .collect()
        .map_err(perr)?;
    let get = |name: &str| -> Result<Vec<f64>> {
        let s = out.column(name).map_err(perr)?.as_materialized_series().cast(&DataType::Float64).map_err(perr)?;
        Ok(s.f64().expect("cast").iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    };
    let xs = get("distance")?;
    let mut points = Vec::new();
    for q in qs {
        let c = key(q);
        let (mean, median, q25, q75, n) = (get(&format!("{c}|mean"))?, get(&format!("{c}|median"))?, get(&format!("{c}|q25"))?, get(&format!("{c}|q75"))?, get(&format!("{c}|n"))?);
        for i in 0..xs.len() {
            if n[i] > 0.0 {
                points.push(CurvePoint { curve: q.curve.into(), series: q.series.clone(), x: xs[i], mean: mean[i], median: median[i], q25: q25[i], q75: q75[i], n: n[i] as u64 });
            }
        }
    }
    Ok(points)
}
