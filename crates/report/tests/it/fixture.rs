//! Hand-made, demo-sized report inputs (shared by the integration tests and the bench).
//!
//! Token ids equal corpus-frequency ranks minus one for the frequent tokens, so the expected shading
//! is known: near the prompt the top predictions are content words, far from it `the`, `,`, `.`.
//! Some tokens carry markup (`<script>`, `&amp;`, quotes) to test escaping.

#![allow(dead_code)]

use cp_records::{
    Better, CurvePoint, Generation, Metric, MetricsFile, ProbeRecord, PromptMetric, StepRecord,
};
use cp_report::{DecodeData, ProbeData, RankSource, ReportInputs, RunData, SweepData, TokenRanks};

/// Frequent tokens: id i has corpus rank i + 1.
pub const FREQUENT: [&str; 8] = [" the", ",", ".", " of", " and", "<|endoftext|>", " a", "\n"];
/// Content words: ids 1000.. (ranks in the thousands).
pub const CONTENT: [&str; 12] = [
    " tennis",
    " quantum",
    " river",
    " <script>",
    " Paris",
    " &amp;",
    " \"quoted\"",
    " brain",
    " likes",
    " violin",
    " it's",
    " a<b",
];

/// A small deterministic generator (64-bit LCG), so fixtures need no rand dependency.
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Self {
        Lcg(seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407))
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_f64() * n as f64) as usize % n
    }
}

fn token(id: u32) -> String {
    if (id as usize) < FREQUENT.len() {
        FREQUENT[id as usize].to_owned()
    } else {
        CONTENT[(id as usize - 1000) % CONTENT.len()].to_owned()
    }
}

/// Probe records: `prompts` prompts × `masks` positions × top-`k`.
pub fn probe_records(prompts: u32, masks: u32, k: usize, seed: u64) -> Vec<ProbeRecord> {
    let mut rng = Lcg::new(seed);
    let mut rows = Vec::new();
    for p in 0..prompts {
        let prompt_len = 8 + p % 5;
        for d in 1..=masks {
            // The probability that a slot holds a frequent token rises with distance (collapse).
            // Capped below 1 so content words still fill the slots beyond the eight frequent tokens.
            let collapse = (f64::from(d) / f64::from(masks) * 2.5).min(0.85);
            let mut ids = Vec::new();
            while ids.len() < k {
                let id = if rng.next_f64() < collapse {
                    rng.below(FREQUENT.len().min(ids.len() + 3)) as u32
                } else {
                    1000 + rng.below(CONTENT.len()) as u32
                };
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            let mut probs: Vec<f32> = (0..k)
                .map(|i| 0.5f32 / (i as f32 + 1.0).powf(1.2))
                .collect();
            let z: f32 = probs.iter().sum::<f32>() * 1.3;
            probs.iter_mut().for_each(|p| *p /= z);
            let entropy = (1.0 + 4.0 * collapse + 0.4 * rng.next_f64()) as f32;
            rows.push(ProbeRecord {
                prompt_index: p,
                prompt_id: if p == 1 {
                    "p<1>&\"x\"".into()
                } else {
                    format!("p{p}")
                },
                prompt_len,
                position: prompt_len + d - 1,
                distance: d,
                top_tokens: ids.iter().map(|&i| token(i)).collect(),
                top_ids: ids,
                max_prob: probs[0],
                margin: probs[0] - probs[1],
                top_probs: probs,
                entropy,
                eot_mass: 0.01,
                kl_unigram: Some((3.0 * (1.0 - collapse) + 0.2 * rng.next_f64()) as f32),
                xent_unigram: None,
                js_prev: if d == 1 {
                    None
                } else {
                    Some((0.3 * (1.0 - collapse) + 0.02 * rng.next_f64()) as f32)
                },
            });
        }
    }
    rows
}

fn quartile_curve(
    curve: &str,
    series: &str,
    xs: impl Iterator<Item = f64>,
    f: impl Fn(f64) -> f64,
) -> Vec<CurvePoint> {
    xs.map(|x| {
        let m = f(x);
        CurvePoint {
            curve: curve.into(),
            series: series.into(),
            x,
            mean: m,
            median: m,
            q25: m * 0.85,
            q75: m * 1.12,
            n: 32,
        }
    })
    .collect()
}

/// One analysed run; `shift` moves its collapse earlier (a worse schedule or model).
pub fn run(label: &str, masks: u32, shift: f64) -> RunData {
    let ds = || (1..=masks).map(f64::from);
    let m = f64::from(masks);
    let mut curves = Vec::new();
    curves.extend(quartile_curve("entropy", "all", ds(), |d| {
        1.0 + 4.0 * (d / m * (2.5 + shift)).min(1.0)
    }));
    curves.extend(quartile_curve("frequent_share", "all", ds(), |d| {
        (d / m * (2.0 + shift)).min(0.97)
    }));
    curves.extend(quartile_curve("kl_unigram", "all", ds(), |d| {
        3.0 * (1.0 - (d / m * (2.0 + shift)).min(0.95))
    }));
    curves.extend(quartile_curve("js_adjacent", "all", ds().skip(1), |d| {
        0.3 * (1.0 - (d / m * 2.0).min(0.9))
    }));
    for n in 2..=4 {
        curves.extend(quartile_curve(
            "unseen_rate",
            &format!("n={n}"),
            [1.0, 2.0, 4.0, 8.0, 16.0].into_iter(),
            |k| (0.02 * f64::from(n) + 0.03 * k.log2() * f64::from(n - 1) + 0.01 * shift).min(1.0),
        ));
    }
    let metric = |name: &str, value: f64, unit: &str, better: Better, stderr: Option<f64>| Metric {
        name: name.into(),
        value,
        unit: unit.into(),
        better,
        stderr,
        n: 32,
    };
    RunData {
        label: label.into(),
        dir: None,
        manifest: None,
        metrics: Some(MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics: vec![
                metric(
                    "collapse.frequent_share.far",
                    0.8 + 0.05 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.02),
                ),
                metric(
                    "collapse.entropy.far",
                    4.6,
                    "nats",
                    Better::Neither,
                    Some(0.1),
                ),
                metric(
                    "collapse.onset",
                    m / (2.0 + shift) * 0.5,
                    "tokens",
                    Better::Higher,
                    None,
                ),
                metric(
                    "trap.same_step_unseen_bigram_rate",
                    0.21 + 0.02 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.015),
                ),
                metric(
                    "trap.diff_step_unseen_bigram_rate",
                    0.08,
                    "fraction",
                    Better::Lower,
                    Some(0.01),
                ),
                // Two decode folders in one analysis, one and eight tokens per step.
                metric(
                    "trap.tokens_per_step@k1",
                    1.0,
                    "tokens",
                    Better::Neither,
                    Some(0.0),
                ),
                metric(
                    "trap.unseen_2gram_rate@k1",
                    0.04 + 0.01 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.01),
                ),
                metric(
                    "trap.unseen_3gram_rate@k1",
                    0.09 + 0.01 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.01),
                ),
                metric(
                    "trap.tokens_per_step@k8",
                    8.0,
                    "tokens",
                    Better::Neither,
                    Some(0.0),
                ),
                metric(
                    "trap.unseen_2gram_rate@k8",
                    0.3 + 0.01 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.03),
                ),
                metric(
                    "trap.unseen_3gram_rate@k8",
                    0.6 + 0.01 * shift,
                    "fraction",
                    Better::Lower,
                    Some(0.03),
                ),
            ],
        }),
        curves,
        per_prompt: (0..32u32)
            .flat_map(|p| {
                let row = |metric: &str, value: f64| PromptMetric {
                    source: "probe".into(),
                    prompt_index: p,
                    metric: metric.into(),
                    value,
                    n: 16,
                };
                [
                    row("collapse.onset", f64::from(1 + p % 7)),
                    row("collapse.entropy.far", 4.0 + f64::from(p % 5) * 0.1),
                ]
            })
            .collect(),
    }
}

/// A sweep over tokens per step: unseen rates and duplicates rising with it.
pub fn sweep(values: &[f64]) -> SweepData {
    let mut metrics = Vec::new();
    for &k in values {
        let mut push = |name: &str, value: f64, stderr: f64| {
            metrics.push(Metric {
                name: format!("{name}@tokens_per_step={k}"),
                value,
                unit: "fraction".into(),
                better: Better::Lower,
                stderr: Some(stderr),
                n: 32,
            })
        };
        push("trap.tokens_per_step", k, 0.0);
        push(
            "trap.unseen_2gram_rate",
            (0.03 * k.log2() + 0.02).min(1.0),
            0.01,
        );
        push(
            "trap.unseen_3gram_rate",
            (0.08 * k.log2() + 0.05).min(1.0),
            0.02,
        );
        push("trap.adjacent_duplicate_rate", 0.02 * k.log2(), 0.005);
    }
    SweepData {
        dir: None,
        param: "tokens_per_step".into(),
        metrics,
    }
}

/// Decode records: `prompts` generations of `len` tokens, `per_step` tokens committed per step.
pub fn decode(prompts: u32, len: u32, per_step: u32, seed: u64) -> DecodeData {
    let mut rng = Lcg::new(seed);
    let mut steps = Vec::new();
    let mut generations = Vec::new();
    for p in 0..prompts {
        let mut commit_step = vec![-1i32; len as usize];
        let mut gen_ids = vec![0u32; len as usize];
        // Left to right in blocks of `per_step`, the last position never committed.
        for i in 0..len.saturating_sub(1) {
            let step = i / per_step;
            let id = if rng.next_f64() < 0.5 {
                rng.below(FREQUENT.len()) as u32
            } else {
                1000 + rng.below(CONTENT.len()) as u32
            };
            commit_step[i as usize] = step as i32;
            gen_ids[i as usize] = id;
            steps.push(StepRecord {
                prompt_index: p,
                step,
                position: 10 + i,
                distance: i + 1,
                token_id: id,
                token: token(id),
                prob: Some(0.5),
                confidence: Some(0.5),
                masked_after: len - (step + 1) * per_step,
            });
        }
        generations.push(Generation {
            prompt_index: p,
            prompt_id: format!("p{p}"),
            prompt_ids: (0..10).collect(),
            text: gen_ids.iter().map(|&i| token(i)).collect(),
            gen_ids,
            commit_step,
            steps: len.div_ceil(per_step),
            remask_count: None,
        });
    }
    DecodeData {
        dir: None,
        manifest: None,
        steps,
        generations,
    }
}

/// Corpus ranks of the fixture vocabulary: frequent ids rank 1..8, content words 2000+.
pub fn corpus_ranks() -> TokenRanks {
    let mut ids: Vec<u32> = (0..FREQUENT.len() as u32).collect();
    ids.extend(2000..4000);
    ids.extend(1000..1000 + CONTENT.len() as u32);
    TokenRanks::from_ids(RankSource::Corpus("fixture".into()), &ids)
}

/// A demo-sized report: two runs, 32 prompts × 64 masks × top-10, 32 generations of 64 tokens.
pub fn demo_inputs() -> ReportInputs {
    ReportInputs {
        runs: vec![
            run("llada-low-confidence", 64, 0.0),
            run("llada-random", 64, 1.0),
        ],
        probe: Some(ProbeData {
            dir: None,
            manifest: None,
            records: probe_records(32, 64, 10, 7),
        }),
        decode: Some(decode(32, 64, 4, 11)),
        token_ranks: Some(corpus_ranks()),
        sweep: Some(sweep(&[1.0, 2.0, 4.0, 8.0, 16.0])),
    }
}

/// An analysis of corrupt folders, one per scheme, named as `collapse-probe analyze` names them
/// (`corrupt.<metric>@ratio=R[@scheme]`, series `[scheme:]ratio=R`). Rare deciles lose more, and
/// more so at high ratios; each scheme after the first loses a little more.
pub fn corrupt_run(label: &str, schemes: &[&str]) -> RunData {
    let ratios = [0.1f32, 0.3, 0.5, 0.7];
    let several = schemes.len() > 1;
    let mut metrics = Vec::new();
    let mut curves = Vec::new();
    let metric =
        |name: String, value: f64, unit: &str, better: Better, stderr: Option<f64>| Metric {
            name,
            value,
            unit: unit.into(),
            better,
            stderr,
            n: 400,
        };
    let point = |curve: &str, series: String, x: f64, mean: f64, spread: f64| CurvePoint {
        curve: curve.into(),
        series,
        x,
        mean,
        median: mean,
        q25: mean - spread,
        q75: mean + spread,
        n: 40,
    };
    for (k, scheme) in schemes.iter().enumerate() {
        let suffix = if several {
            format!("@{scheme}")
        } else {
            String::new()
        };
        let series = |name: &str| {
            if several {
                format!("{scheme}:{name}")
            } else {
                name.to_owned()
            }
        };
        let nll = |d: f64, r: f64| 1.0 + 0.4 * d + r * (1.0 + 0.3 * d * (1.0 + 0.2 * k as f64));
        for &ratio in &ratios {
            let r = f64::from(ratio);
            let at = |base: &str| format!("{base}@ratio={ratio}{suffix}");
            let mean_nll = (1..=10).map(|d| nll(f64::from(d), r)).sum::<f64>() / 10.0;
            metrics.push(metric(
                at("corrupt.nll"),
                mean_nll,
                "nats",
                Better::Lower,
                Some(0.05),
            ));
            metrics.push(metric(
                at("corrupt.nll_per_sequence"),
                mean_nll * 64.0 * r,
                "nats",
                Better::Lower,
                Some(2.0),
            ));
            metrics.push(metric(
                at("corrupt.context_gain"),
                4.0 - 3.0 * r,
                "nats",
                Better::Higher,
                Some(0.1),
            ));
            metrics.push(metric(
                at("corrupt.nll_frequent"),
                nll(1.0, r),
                "nats",
                Better::Lower,
                Some(0.05),
            ));
            metrics.push(metric(
                at("corrupt.nll_rare"),
                nll(10.0, r),
                "nats",
                Better::Lower,
                Some(0.2),
            ));
            let more = 0.04 * k as f64;
            for (top, share) in [(10, 0.18 + 0.1 * r + more), (20, 0.32 + 0.1 * r + more)] {
                metrics.push(metric(
                    at(&format!("corrupt.concentration_{top}")),
                    share,
                    "fraction",
                    Better::Neither,
                    Some(0.01),
                ));
                curves.push(CurvePoint {
                    q25: share - 0.01,
                    q75: share + 0.01,
                    ..point(
                        "corrupt_concentration",
                        series(&format!("top{top}")),
                        r,
                        share,
                        0.0,
                    )
                });
            }
            for d in 1..=10 {
                curves.push(point(
                    "corrupt_nll_by_decile",
                    series(&format!("ratio={ratio}")),
                    f64::from(d),
                    nll(f64::from(d), r),
                    0.5,
                ));
            }
            curves.push(point(
                "corrupt_nll_by_ratio",
                if several {
                    scheme.to_string()
                } else {
                    "all".into()
                },
                r,
                mean_nll,
                0.8,
            ));
            for distance in 1..=8 {
                curves.push(point(
                    "corrupt_context_gain",
                    series(&format!("ratio={ratio}")),
                    f64::from(distance),
                    (4.0 - 3.0 * r) / f64::from(distance).sqrt(),
                    0.6,
                ));
            }
        }
        let rise = |d: f64| nll(d, 0.7) - nll(d, 0.1);
        for (base, value, better) in [
            ("corrupt.fragility_rare", rise(10.0), Better::Lower),
            ("corrupt.fragility_frequent", rise(1.0), Better::Lower),
            (
                "corrupt.fragility_gap",
                rise(10.0) - rise(1.0),
                Better::Neither,
            ),
        ] {
            metrics.push(metric(
                format!("{base}{suffix}"),
                value,
                "nats",
                better,
                Some(0.1),
            ));
        }
        metrics.push(metric(
            format!("corrupt.texts{suffix}"),
            40.0,
            "texts",
            Better::Neither,
            None,
        ));
    }
    RunData {
        label: label.into(),
        dir: None,
        manifest: None,
        metrics: Some(MetricsFile {
            schema_version: 1,
            sources: vec![],
            metrics,
        }),
        curves,
        per_prompt: Vec::new(),
    }
}
