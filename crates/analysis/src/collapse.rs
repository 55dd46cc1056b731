//! Frequency-collapse metrics from probe records (one row per prompt and mask position).
//!
//! Every quantity is first computed per row, then summarised two ways:
//! by distance from the prompt (curves: mean, median, quartiles over the rows at that
//! distance, aggregated as polars would) and per prompt over the near and far bands (headline
//! metrics: the mean over prompts of each prompt's band mean, bootstrapped over prompts).
//! METRICS.md gives every formula.

use std::collections::HashMap;

use cp_records::{Better, CurvePoint, Metric, ProbeRecord, PromptMetric};
use polars::prelude::*;
use rayon::prelude::*;

use crate::agg::{with_col, Col, CurveInput, Values};
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

    /// Appends the rows of `other` (the next shard's records).
    pub fn append(&mut self, other: ProbeColumns) {
        let base = self.top_ids.len();
        if self.top_offsets.is_empty() {
            self.top_offsets.push(0);
        }
        self.top_offsets
            .extend(other.top_offsets.iter().skip(1).map(|&o| base + o));
        self.prompt_index.extend(other.prompt_index);
        self.distance.extend(other.distance);
        self.top_ids.extend(other.top_ids);
        self.top_probs.extend(other.top_probs);
        self.entropy.extend(other.entropy);
        self.max_prob.extend(other.max_prob);
        self.margin.extend(other.margin);
        self.eot_mass.extend(other.eot_mass);
        self.kl_unigram.extend(other.kl_unigram);
        self.xent_unigram.extend(other.xent_unigram);
        self.js_prev.extend(other.js_prev);
    }

    /// Columns of in-memory records.
    pub fn from_records(rows: &[ProbeRecord]) -> Self {
        let mut c = ProbeColumns {
            top_offsets: vec![0],
            ..Default::default()
        };
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
        let err = |column: &str, e: PolarsError| AnalysisError::Polars {
            context: format!("{name}: column `{column}`"),
            source: e,
        };
        let prim = |column: &str, dtype: DataType| -> Result<Series> {
            let s = df
                .column(column)
                .map_err(|e| err(column, e))?
                .as_materialized_series()
                .strict_cast(&dtype)
                .map_err(|e| err(column, e))?;
            Ok(s.rechunk())
        };
        let u32s = |column: &str| -> Result<Vec<u32>> {
            Ok(prim(column, DataType::UInt32)?
                .u32()
                .expect("cast")
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect())
        };
        let f32s = |column: &str| -> Result<Vec<f32>> {
            if df.column(column).is_err() {
                return Ok(vec![f32::NAN; df.height()]);
            }
            Ok(prim(column, DataType::Float32)?
                .f32()
                .expect("cast")
                .iter()
                .map(|v| v.unwrap_or(f32::NAN))
                .collect())
        };
        let ids = prim("top_ids", DataType::List(Box::new(DataType::UInt32)))?;
        let probs = prim("top_probs", DataType::List(Box::new(DataType::Float32)))?;
        let (top_offsets, top_ids) =
            flatten(&ids, |s| s.u32().expect("cast").no_null_iter().collect());
        let (prob_offsets, mut top_probs) =
            flatten(&probs, |s| s.f32().expect("cast").no_null_iter().collect());
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
    /// The generic-token share from which collapse is declared.
    pub onset_threshold: f64,
    /// The model's end-of-text, end-of-turn and padding ids: top-k entries holding one are
    /// end tokens (`eot_share`) and count as generic (`generic_share`). Sorted or not.
    pub end_ids: Vec<u32>,
    pub bootstrap: Bootstrap,
}

impl Default for CollapseSettings {
    fn default() -> Self {
        CollapseSettings {
            top_frequent: 20,
            onset_threshold: 0.5,
            end_ids: Vec::new(),
            bootstrap: Bootstrap {
                replicates: 1000,
                seed: 0,
            },
        }
    }
}

/// Metrics and curves of one analysed folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    pub metrics: Vec<Metric>,
    pub curves: Vec<CurvePoint>,
    /// The per-prompt (per-generation) values behind the metrics; `source` is left empty for
    /// the caller to fill.
    pub per_prompt: Vec<PromptMetric>,
    /// Metric groups left out, and why (the caller warns and records them).
    pub skipped: Vec<String>,
}

/// The near and far bands of distances `1..=max_distance`: the first and the last
/// `max(1, ceil(max_distance / 4))` distances.
pub fn bands(max_distance: u32) -> (std::ops::RangeInclusive<u32>, std::ops::RangeInclusive<u32>) {
    let q = max_distance.div_ceil(4).max(1);
    (
        1..=q.min(max_distance.max(1)),
        (max_distance.saturating_sub(q) + 1).max(1)..=max_distance.max(1),
    )
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
    /// Share of top-k entries that are frequent or end tokens.
    generic: Vec<f64>,
    /// Ranks are whole numbers: as `f32` (exact, half the bytes) where every rank is at most
    /// 2^24, else as `f64`.
    rank: Ranks,
}

enum Ranks {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A token's class bits in [`frequency_pass`]' lookup table.
const FREQUENT: u8 = 1;
const END: u8 = 2;

fn frequency(cols: &ProbeColumns, unigram: &Unigram, f: usize, end_ids: &[u32]) -> Frequency {
    let frequent = unigram.most_frequent(f);
    let table_len = end_ids
        .iter()
        .map(|&t| t as usize + 1)
        .max()
        .unwrap_or(0)
        .max(unigram.len());
    let mut class = vec![0u8; table_len];
    frequent.iter().for_each(|&t| class[t as usize] |= FREQUENT);
    end_ids.iter().for_each(|&t| class[t as usize] |= END);
    let ranks = unigram.ranks();
    let n = cols.len();
    let (mut share, mut mass, mut generic) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    // One pass over the top-k lists gives all three quantities (the ranks used to take a pass
    // of their own, which read every row's offsets and ids a second time).
    let rank = if unigram.len() < 1 << 24 {
        let mut rank = vec![0.0f32; n];
        frequency_pass(
            cols,
            &class,
            &ranks,
            [&mut share, &mut mass, &mut generic],
            &mut rank,
            |r| r.map_or(f32::NAN, |r| r as f32),
        );
        Ranks::F32(rank)
    } else {
        let mut rank = vec![0.0f64; n];
        frequency_pass(
            cols,
            &class,
            &ranks,
            [&mut share, &mut mass, &mut generic],
            &mut rank,
            |r| r.map_or(f64::NAN, |r| r as f64),
        );
        Ranks::F64(rank)
    };
    Frequency {
        share,
        mass,
        generic,
        rank,
    }
}

/// Each row's frequent-token share and mass, its generic-token share (frequent or end
/// tokens, by `class` bits), and its top-1 prediction's rank (`None` for an empty top-k list)
/// as `to_rank` writes it.
fn frequency_pass<R: Send>(
    cols: &ProbeColumns,
    class: &[u8],
    ranks: &crate::unigram::FrequencyRanks,
    [share, mass, generic]: [&mut [f64]; 3],
    rank: &mut [R],
    to_rank: impl Fn(Option<u32>) -> R + Sync,
) {
    const CHUNK: usize = 1 << 14;
    share
        .par_chunks_mut(CHUNK)
        .zip(mass.par_chunks_mut(CHUNK))
        .zip(generic.par_chunks_mut(CHUNK))
        .zip(rank.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(c, (((share, mass), generic), rank))| {
            let base = c * CHUNK;
            for j in 0..share.len() {
                let i = base + j;
                let (a, b) = (cols.top_offsets[i], cols.top_offsets[i + 1]);
                let ids = &cols.top_ids[a..b];
                let probs = &cols.top_probs[a..b];
                rank[j] = to_rank(ids.first().map(|&t| ranks.rank(t)));
                let (mut hits, mut generic_hits) = (0usize, 0usize);
                let mut m = 0.0f64;
                for (&t, &p) in ids.iter().zip(probs) {
                    // Branch-free (whether a token is frequent is unpredictable): other tokens
                    // add +0.0, which leaves `m` bit-identical as `m` is never -0.0 (it starts
                    // at +0.0, and a sum is -0.0 only when both terms are).
                    let c = class.get(t as usize).copied().unwrap_or(0);
                    let f = c & FREQUENT != 0;
                    hits += f as usize;
                    generic_hits += (c != 0) as usize;
                    m += f64::from_bits((p as f64).to_bits() & (f as u64).wrapping_neg());
                }
                if ids.is_empty() {
                    (share[j], mass[j], generic[j]) = (f64::NAN, f64::NAN, f64::NAN);
                } else {
                    let k = ids.len() as f64;
                    (share[j], mass[j], generic[j]) = (hits as f64 / k, m, generic_hits as f64 / k);
                }
            }
        });
}

/// Each row's share of top-k entries that are end tokens (NaN for an empty top-k list).
fn end_share(cols: &ProbeColumns, end_ids: &[u32]) -> Vec<f64> {
    let mut sorted = end_ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    (0..cols.len())
        .into_par_iter()
        .map(|i| {
            let ids = &cols.top_ids[cols.top_offsets[i]..cols.top_offsets[i + 1]];
            if ids.is_empty() {
                return f64::NAN;
            }
            let hits = ids
                .iter()
                .filter(|t| sorted.binary_search(t).is_ok())
                .count();
            hits as f64 / ids.len() as f64
        })
        .collect()
}

/// A per-row quantity of decode output, aggregated by distance into a curve.
pub(crate) struct Quantity {
    pub(crate) curve: &'static str,
    pub(crate) series: String,
    pub(crate) values: Vec<f64>,
}

/// A per-row probe quantity with its metric metadata; values are borrowed (probe columns are
/// read as they are, `f32`).
struct ProbeQuantity<'a> {
    curve: &'static str,
    values: Values<'a>,
    unit: &'static str,
    better: Better,
    median: bool,
}

/// Dense unit numbers `0..P` for `keys`, in order of first appearance, and `P`.
fn dense_units(keys: &[u32]) -> (Vec<u32>, usize) {
    const NONE: u32 = u32::MAX;
    let max = keys.iter().copied().max().unwrap_or(0) as usize;
    let mut next = 0u32;
    let unit: Vec<u32> = if max <= 4 * keys.len() + 4096 {
        let mut map = vec![NONE; max + 1];
        keys.iter()
            .map(|&p| {
                let slot = &mut map[p as usize];
                if *slot == NONE {
                    *slot = next;
                    next += 1;
                }
                *slot
            })
            .collect()
    } else {
        let mut map: HashMap<u32, u32> = HashMap::new();
        keys.iter()
            .map(|&p| {
                *map.entry(p).or_insert_with(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    };
    (unit, next as usize)
}

/// Per-unit summaries of a quantity over the near and far bands: the mean (or median) of each
/// unit's non-missing values in the band, NaN for units without any. `band_rows` lists each
/// band's rows in ascending order, so values are accumulated in row order, as
/// `stats::mean` / `stats::quantile` of a per-unit list would see them.
fn band_summaries<C: Col + ?Sized>(
    c: &C,
    band_rows: [&[u32]; 2],
    unit: &[u32],
    prompts: usize,
    median: bool,
) -> [Vec<f64>; 2] {
    band_rows.map(|rows| {
        if median {
            // Gather each unit's values (row order) and take their median.
            let mut count = vec![0usize; prompts + 1];
            for &r in rows {
                if !c.at(r as usize).is_nan() {
                    count[unit[r as usize] as usize + 1] += 1;
                }
            }
            for u in 0..prompts {
                count[u + 1] += count[u];
            }
            let mut vals = vec![0.0f64; count[prompts]];
            let mut next = count.clone();
            for &r in rows {
                let v = c.at(r as usize);
                if !v.is_nan() {
                    let slot = &mut next[unit[r as usize] as usize];
                    vals[*slot] = v;
                    *slot += 1;
                }
            }
            (0..prompts)
                .map(|u| crate::stats::quantile(&vals[count[u]..count[u + 1]], 0.5))
                .collect()
        } else {
            // `Iterator::sum` of f64 starts from -0.0.
            let mut sum = vec![-0.0f64; prompts];
            let mut cnt = vec![0u32; prompts];
            // A unit's rows usually come in a run: its running sum stays in a register until
            // the unit changes (the same additions in the same order).
            let (mut cur, mut s, mut k) = (usize::MAX, -0.0f64, 0u32);
            for &r in rows {
                let v = c.at(r as usize);
                if !v.is_nan() {
                    let u = unit[r as usize] as usize;
                    if u != cur {
                        if cur != usize::MAX {
                            (sum[cur], cnt[cur]) = (s, k);
                        }
                        (cur, s, k) = (u, sum[u], cnt[u]);
                    }
                    s += v;
                    k += 1;
                }
            }
            if cur != usize::MAX {
                (sum[cur], cnt[cur]) = (s, k);
            }
            sum.iter()
                .zip(&cnt)
                .map(|(&s, &k)| if k == 0 { f64::NAN } else { s / k as f64 })
                .collect()
        }
    })
}

/// Computes the collapse metrics and curves of one probe folder. Without a unigram table
/// the frequency metrics (`frequent_share`, `frequent_mass`, `generic_share`, `top1_rank`,
/// the onsets but `eot_onset`) are skipped; without end ids, `eot_share` and `eot_onset`.
pub fn analyze_probe(
    cols: &ProbeColumns,
    unigram: Option<&Unigram>,
    settings: &CollapseSettings,
    series: &str,
) -> Result<Analysis> {
    let freq = unigram.map(|u| frequency(cols, u, settings.top_frequent, &settings.end_ids));
    let eot_share = (!settings.end_ids.is_empty()).then(|| end_share(cols, &settings.end_ids));
    let pq = |curve, values, unit, better, median| ProbeQuantity {
        curve,
        values,
        unit,
        better,
        median,
    };
    let mut qs = vec![
        pq(
            "entropy",
            Values::F32(&cols.entropy),
            "nats",
            Better::Neither,
            false,
        ),
        pq(
            "max_prob",
            Values::F32(&cols.max_prob),
            "probability",
            Better::Neither,
            false,
        ),
        pq(
            "margin",
            Values::F32(&cols.margin),
            "probability",
            Better::Neither,
            false,
        ),
        pq(
            "eot_mass",
            Values::F32(&cols.eot_mass),
            "probability",
            Better::Neither,
            false,
        ),
        pq(
            "kl_unigram",
            Values::F32(&cols.kl_unigram),
            "nats",
            Better::Neither,
            false,
        ),
        pq(
            "xent_unigram",
            Values::F32(&cols.xent_unigram),
            "nats",
            Better::Neither,
            false,
        ),
        pq(
            "js_adjacent",
            Values::F32(&cols.js_prev),
            "nats",
            Better::Neither,
            false,
        ),
    ];
    if let Some(share) = &eot_share {
        qs.push(pq(
            "eot_share",
            Values::F64(share),
            "fraction",
            Better::Neither,
            false,
        ));
    }
    if let Some(fr) = &freq {
        qs.push(pq(
            "frequent_share",
            Values::F64(&fr.share),
            "fraction",
            Better::Lower,
            false,
        ));
        qs.push(pq(
            "generic_share",
            Values::F64(&fr.generic),
            "fraction",
            Better::Lower,
            false,
        ));
        qs.push(pq(
            "frequent_mass",
            Values::F64(&fr.mass),
            "probability",
            Better::Lower,
            false,
        ));
        let rank = match &fr.rank {
            Ranks::F32(r) => Values::F32(r),
            Ranks::F64(r) => Values::F64(r),
        };
        qs.push(pq("top1_rank", rank, "rank", Better::Higher, true));
    }
    let inputs: Vec<CurveInput> = qs
        .iter()
        .map(|q| CurveInput {
            curve: q.curve,
            series,
            values: q.values,
        })
        .collect();
    // The curves and the per-prompt side are independent: run side by side, the serial parts
    // of the per-prompt side overlap the curves.
    let (curves, (metrics, per_prompt)) = rayon::join(
        || crate::agg::distance_curves(&cols.distance, &inputs),
        || prompt_metrics(cols, &qs, freq.as_ref(), eot_share.as_deref(), settings),
    );
    Ok(Analysis {
        metrics,
        curves,
        per_prompt,
        skipped: Vec::new(),
    })
}

/// The headline metrics (band summaries per prompt, their means over prompts, the onset) and
/// the per-prompt table.
fn prompt_metrics(
    cols: &ProbeColumns,
    qs: &[ProbeQuantity],
    freq: Option<&Frequency>,
    eot_share: Option<&[f64]>,
    settings: &CollapseSettings,
) -> (Vec<Metric>, Vec<PromptMetric>) {
    // Prompts become dense units 0..P, in order of first appearance.
    let (unit, prompts) = dense_units(&cols.prompt_index);
    let max_d = cols.distance.iter().copied().max().unwrap_or(0);
    let (near, far) = bands(max_d);

    let (mut near_rows, mut far_rows) = (Vec::new(), Vec::new());
    for (i, d) in cols.distance.iter().enumerate() {
        if near.contains(d) {
            near_rows.push(i as u32);
        }
        if far.contains(d) {
            far_rows.push(i as u32);
        }
    }
    let summaries: Vec<Option<[Vec<f64>; 2]>> = qs
        .par_iter()
        .map(|q| {
            if q.values.all_missing() {
                return None;
            }
            Some(with_col!(q.values, |c| band_summaries(
                c,
                [&near_rows, &far_rows],
                &unit,
                prompts,
                q.median
            )))
        })
        .collect();
    let mut prompt_of_unit = vec![0u32; prompts];
    for (&u, &p) in unit.iter().zip(&cols.prompt_index) {
        prompt_of_unit[u as usize] = p;
    }
    // The per-prompt rows of every quantity and band, built side by side (a string per row:
    // built one after the other, they were the per-prompt side's longest serial stretch).
    let bands_of: Vec<(&ProbeQuantity, &'static str, &Vec<f64>)> = qs
        .iter()
        .zip(&summaries)
        .filter_map(|(q, s)| s.as_ref().map(|s| (q, s)))
        .flat_map(|(q, s)| {
            ["near", "far"]
                .into_iter()
                .zip(s)
                .map(move |(band, summary)| (q, band, summary))
        })
        .collect();
    let tables: Vec<Vec<PromptMetric>> = bands_of
        .par_iter()
        .map(|&(q, band, summary)| {
            let band_len = if band == "near" {
                near_rows.len()
            } else {
                far_rows.len()
            };
            let metric = format!("collapse.{}.{band}", q.curve);
            summary
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.is_nan())
                .map(|(u, &v)| PromptMetric {
                    source: String::new(),
                    prompt_index: prompt_of_unit[u],
                    metric: metric.clone(),
                    value: v,
                    n: (band_len / prompts.max(1)) as u64,
                })
                .collect()
        })
        .collect();
    let mut metrics = Vec::new();
    // Sized up front: growing a table of some 300k rows copies it over and over.
    let rows = tables.iter().map(Vec::len).sum::<usize>();
    // One per-prompt row per onset and prompt.
    let onsets = 2 * freq.is_some() as usize + eot_share.is_some() as usize;
    let mut per_prompt = Vec::with_capacity(rows + onsets * prompts);
    let all: Vec<usize> = (0..prompts).collect();
    for (&(q, band, summary), table) in bands_of.iter().zip(tables) {
        per_prompt.extend(table);
        let stat = |idx: &[usize]| {
            if q.median {
                median_of(summary, idx)
            } else {
                mean_of(summary, idx)
            }
        };
        let value = stat(&all);
        if value.is_nan() {
            continue;
        }
        let name = format!("collapse.{}.{band}", q.curve);
        let n = summary.iter().filter(|v| !v.is_nan()).count() as u64;
        let stderr = settings.bootstrap.stderr(&name, prompts, stat);
        metrics.push(Metric {
            name,
            value,
            unit: q.unit.into(),
            better: q.better,
            stderr,
            n,
        });
    }

    // Onsets: from the mean-over-prompts share curve, recomputed on every bootstrap resample.
    // `collapse.onset` reads the generic share (collapse to frequent words or to end tokens);
    // the other two tell which of the two it was.
    let mut onset_shares: Vec<(&str, &[f64])> = Vec::new();
    if let Some(fr) = freq {
        onset_shares.push(("collapse.onset", &fr.generic));
        onset_shares.push(("collapse.frequent_onset", &fr.share));
    }
    if let Some(share) = eot_share {
        onset_shares.push(("collapse.eot_onset", share));
    }
    for (name, share) in onset_shares {
        let onset_of = onset_statistic(
            share,
            &cols.distance,
            &unit,
            prompts,
            max_d as usize,
            settings.onset_threshold,
        );
        let name = name.to_string();
        let stderr = settings.bootstrap.stderr(&name, prompts, &onset_of);
        for (u, &p) in prompt_of_unit.iter().enumerate() {
            per_prompt.push(PromptMetric {
                source: String::new(),
                prompt_index: p,
                metric: name.clone(),
                value: onset_of(&[u]),
                n: max_d as u64,
            });
        }
        metrics.push(Metric {
            name,
            value: onset_of(&all),
            unit: "distance".into(),
            better: Better::Higher,
            stderr,
            n: prompts as u64,
        });
    }
    metrics.push(Metric {
        name: "collapse.prompts".into(),
        value: prompts as f64,
        unit: "prompts".into(),
        better: Better::Neither,
        stderr: None,
        n: prompts as u64,
    });
    metrics.push(Metric {
        name: "collapse.max_distance".into(),
        value: max_d as f64,
        unit: "distance".into(),
        better: Better::Neither,
        stderr: None,
        n: cols.len() as u64,
    });
    (metrics, per_prompt)
}

/// The onset of the mean share curve over a set of (resampled) units.
///
/// `grid[u * d + j]` is unit `u`'s share at distance `j + 1` (the last row wins), 0 where it
/// has none; missing cells are counted apart. Adding those zeros instead of skipping them
/// leaves every sum bit-identical (the sums start at +0 and shares are never -0), and units
/// without missing cells add to every count at once.
fn onset_statistic<'a>(
    share: &[f64],
    distance: &[u32],
    unit: &[u32],
    prompts: usize,
    d: usize,
    threshold: f64,
) -> impl Fn(&[usize]) -> f64 + Sync + 'a {
    let mut grid = vec![0.0f64; prompts * d];
    let mut present = vec![false; prompts * d];
    for (i, &s) in share.iter().enumerate() {
        let di = distance[i] as usize;
        if di >= 1 && !s.is_nan() {
            grid[unit[i] as usize * d + di - 1] = s;
            present[unit[i] as usize * d + di - 1] = true;
        }
    }
    // Units with a gap, by unit: their presence rows.
    let gappy: Vec<bool> = (0..prompts)
        .map(|u| present[u * d..(u + 1) * d].iter().any(|&p| !p))
        .collect();
    move |idx: &[usize]| {
        if let [u] = *idx {
            // One unit (the per-prompt table): its curve is its own shares, NaN where it has
            // none; computed as below (`(0 + share) / 1`) without the buffers.
            let last_below = (0..d).rev().find(|&j| {
                let c = !gappy[u] || present[u * d + j];
                let s = if c {
                    (0.0 + grid[u * d + j]) / 1.0
                } else {
                    f64::NAN
                };
                !s.is_nan() && s < threshold
            });
            return match last_below {
                Some(i) => i as u32 + 2,
                None => 1,
            } as f64;
        }
        let mut sum = vec![0.0f64; d];
        let mut cnt = vec![0usize; d];
        let mut full = 0usize;
        for &u in idx {
            let row = &grid[u * d..(u + 1) * d];
            for (s, &g) in sum.iter_mut().zip(row) {
                *s += g;
            }
            if gappy[u] {
                for (c, &p) in cnt.iter_mut().zip(&present[u * d..(u + 1) * d]) {
                    *c += p as usize;
                }
            } else {
                full += 1;
            }
        }
        let curve: Vec<f64> = sum
            .iter()
            .zip(&cnt)
            .map(|(&s, &c)| {
                if c + full > 0 {
                    s / (c + full) as f64
                } else {
                    f64::NAN
                }
            })
            .collect();
        onset(&curve, threshold) as f64
    }
}

/// Mean, median, quartiles and count of every quantity by distance (as polars' `group_by`
/// would give them; see the `agg` module).
pub(crate) fn distance_curves(distance: &[u32], qs: &[Quantity]) -> Result<Vec<CurvePoint>> {
    let inputs: Vec<CurveInput> = qs
        .iter()
        .map(|q| CurveInput {
            curve: q.curve,
            series: &q.series,
            values: Values::F64(&q.values),
        })
        .collect();
    Ok(crate::agg::distance_curves(distance, &inputs))
}
