//! The information-loss metrics of corrupt folders on a hand-computed example.
//!
//! Two texts; ten distinct masked positions whose frequency ranks are 1..10, so each rank is
//! its own decile (text 0 holds ranks 1, 2, 3, 4, 10 at positions 0..4, text 1 ranks 5..9):
//!
//! | ratio | text | sample | position | rank | NLL | distance | gain |
//! | --- | --- | --- | --- | --- | --- | --- | --- |
//! | 0.1 | 0 | 0 | 0 | 1 | 1.0 | 1 | 0.5 |
//! | 0.1 | 0 | 0 | 4 | 10 | 3.0 | 1 | 1.5 |
//! | 0.1 | 1 | 0 | 0 | 5 | 2.0 | 1 | 1.0 |
//! | 0.5 | 0 | 0 | 0 | 1 | 1.5 | 1 | 2.0 |
//! | 0.5 | 0 | 0 | 1 | 2 | 2.5 | 2 | 1.0 |
//! | 0.5 | 0 | 0 | 4 | 10 | 7.0 | 1 | 0.0 |
//! | 0.5 | 0 | 1 | 2 | 3 | 3.0 | 1 | 0.0 |
//! | 0.5 | 0 | 1 | 3 | 4 | 1.0 | 2 | 0.0 |
//! | 0.5 | 0 | 1 | 4 | 10 | 5.0 | 1 | -1.0 |
//! | 0.5 | 1 | 0 | 0..4 | 5..9 | 2.0 each | 1, 2, 3, 2, 1 | 0.5 each |

use std::path::Path;

use cp_analysis::{
    analyze_corrupt, analyze_folders, detect, detect_all, Analysis, AnalyzeSettings, Bootstrap,
    CollapseSettings, RecordsKind,
};
use cp_records::{write_table, CorruptRecord, CurvePoint, Format, Generation};

#[allow(clippy::too_many_arguments)]
fn rec(
    ratio: f32,
    text: u32,
    sample: u32,
    position: u32,
    rank: u32,
    nll: f32,
    distance: u32,
    gain: f32,
) -> CorruptRecord {
    CorruptRecord {
        text_index: text,
        ratio,
        sample,
        position,
        // One token per rank, as the corpus ranking gives.
        token_id: 100 + rank,
        freq_rank: rank,
        nll,
        true_rank: 1,
        entropy: 1.0,
        top_ids: vec![100 + rank],
        top_probs: vec![(-nll).exp()],
        context_distance: distance,
        context_gain: gain,
    }
}

fn example() -> Vec<CorruptRecord> {
    let mut rows = vec![
        rec(0.1, 0, 0, 0, 1, 1.0, 1, 0.5),
        rec(0.1, 0, 0, 4, 10, 3.0, 1, 1.5),
        rec(0.1, 1, 0, 0, 5, 2.0, 1, 1.0),
        rec(0.5, 0, 0, 0, 1, 1.5, 1, 2.0),
        rec(0.5, 0, 0, 1, 2, 2.5, 2, 1.0),
        rec(0.5, 0, 0, 4, 10, 7.0, 1, 0.0),
        rec(0.5, 0, 1, 2, 3, 3.0, 1, 0.0),
        rec(0.5, 0, 1, 3, 4, 1.0, 2, 0.0),
        rec(0.5, 0, 1, 4, 10, 5.0, 1, -1.0),
    ];
    for (p, d) in [1, 2, 3, 2, 1].into_iter().enumerate() {
        rows.push(rec(0.5, 1, 0, p as u32, 5 + p as u32, 2.0, d, 0.5));
    }
    rows
}

fn no_bootstrap() -> Bootstrap {
    Bootstrap {
        replicates: 0,
        seed: 0,
    }
}

fn analyse(rows: &[CorruptRecord]) -> Analysis {
    analyze_corrupt(rows, &no_bootstrap(), "all").unwrap()
}

/// Compares the named metrics (to 1e-12); `None` means "absent".
fn check(a: &Analysis, expected: &[(&str, Option<f64>)]) {
    for &(name, want) in expected {
        let got = a.metrics.iter().find(|m| m.name == name).map(|m| m.value);
        match (got, want) {
            (Some(v), Some(w)) => assert!((v - w).abs() < 1e-12, "{name}: got {v}, expected {w}"),
            (None, None) => {}
            _ => panic!(
                "{name}: got {got:?}, expected {want:?}; metrics: {:?}",
                a.metrics
                    .iter()
                    .map(|m| (&m.name, m.value))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

fn curve<'a>(a: &'a Analysis, curve: &str, series: &str, x: f64) -> Option<&'a CurvePoint> {
    a.curves
        .iter()
        .find(|p| p.curve == curve && p.series == series && p.x == x)
}

#[test]
fn pooled_nll_per_token_and_per_sequence() {
    let a = analyse(&example());
    check(
        &a,
        &[
            // 0.1: (1 + 3 + 2) / 3 tokens; pairs (0, 0) lose 4 and (1, 0) 2.
            ("corrupt.nll@ratio=0.1", Some(2.0)),
            ("corrupt.nll_per_sequence@ratio=0.1", Some(3.0)),
            // 0.5: 1.5 + 2.5 + 7 + 3 + 1 + 5 + 5 × 2 = 30 over 11 tokens and 3 pairs
            // (11, 9, 10).
            ("corrupt.nll@ratio=0.5", Some(30.0 / 11.0)),
            ("corrupt.nll_per_sequence@ratio=0.5", Some(10.0)),
            // Gains: (0.5 + 1.5 + 1) / 3 and (2 + 1 + 0 + 0 + 0 − 1 + 5 × 0.5) / 11.
            ("corrupt.context_gain@ratio=0.1", Some(1.0)),
            ("corrupt.context_gain@ratio=0.5", Some(4.5 / 11.0)),
            ("corrupt.texts", Some(2.0)),
            ("corrupt.nll@ratio=0.3", None),
        ],
    );
    let n = |name: &str| a.metrics.iter().find(|m| m.name == name).unwrap().n;
    assert_eq!(
        (
            n("corrupt.nll@ratio=0.5"),
            n("corrupt.nll_per_sequence@ratio=0.5")
        ),
        (11, 3)
    );
}

#[test]
fn concentration_is_the_rarest_positions_share_of_the_loss() {
    let a = analyse(&example());
    check(
        &a,
        &[
            // 0.1: 3 positions, the rarest ⌈0.3⌉ = ⌈0.6⌉ = 1 is rank 10 with 3 of 6 nats.
            ("corrupt.concentration_10@ratio=0.1", Some(0.5)),
            ("corrupt.concentration_20@ratio=0.1", Some(0.5)),
            // 0.5: 11 positions; ⌈1.1⌉ = 2: both rank-10 positions, 7 + 5 of 30 nats;
            // ⌈2.2⌉ = 3 adds the next rarest, rank 9 with 2.
            ("corrupt.concentration_10@ratio=0.5", Some(12.0 / 30.0)),
            ("corrupt.concentration_20@ratio=0.5", Some(14.0 / 30.0)),
        ],
    );
    // The curve holds the same share; without a bootstrap the band has no width.
    let p = curve(&a, "corrupt_concentration", "top20", f64::from(0.5f32)).unwrap();
    assert_eq!(
        (p.mean, p.q25, p.q75, p.n),
        (14.0 / 30.0, 14.0 / 30.0, 14.0 / 30.0, 11)
    );
    // The two rank-10 positions alone: the top 10 % is one position, and sample 0's (7 nats)
    // wins the tie with sample 1's (5 nats), as the order breaks ties by sample.
    let rows: Vec<CorruptRecord> = example()
        .into_iter()
        .filter(|r| r.ratio == 0.5 && r.text_index == 0 && r.freq_rank >= 10)
        .collect();
    check(
        &analyse(&rows),
        &[("corrupt.concentration_10@ratio=0.5", Some(7.0 / 12.0))],
    );
}

#[test]
fn deciles_and_fragility() {
    let a = analyse(&example());
    check(
        &a,
        &[
            ("corrupt.nll_frequent@ratio=0.1", Some(1.0)),
            ("corrupt.nll_rare@ratio=0.1", Some(3.0)),
            ("corrupt.nll_frequent@ratio=0.5", Some(1.5)),
            ("corrupt.nll_rare@ratio=0.5", Some(6.0)),
            // Rare: 6 − 3; frequent: 1.5 − 1; the gap 3 − 0.5.
            ("corrupt.fragility_rare", Some(3.0)),
            ("corrupt.fragility_frequent", Some(0.5)),
            ("corrupt.fragility_gap", Some(2.5)),
        ],
    );
    let x = |r: f32| f64::from(r);
    // Decile 10 at 0.5 holds 7 and 5: mean 6, quartiles 5.5 and 6.5.
    let p = curve(&a, "corrupt_nll_by_decile", "ratio=0.5", 10.0).unwrap();
    assert_eq!(
        (p.mean, p.median, p.q25, p.q75, p.n),
        (6.0, 6.0, 5.5, 6.5, 2)
    );
    // Ranks 2, 3 and 4 are not masked at 0.1: no point, not zero.
    assert!(curve(&a, "corrupt_nll_by_decile", "ratio=0.1", 2.0).is_none());
    assert!(curve(&a, "corrupt_nll_by_decile", "ratio=0.1", 3.0).is_none());
    assert_eq!(
        curve(&a, "corrupt_nll_by_decile", "ratio=0.5", 3.0).map(|p| p.mean),
        Some(3.0)
    );
    let p = curve(&a, "corrupt_nll_by_ratio", "all", x(0.1)).unwrap();
    assert_eq!((p.mean, p.n), (2.0, 3));

    // A decile empty at either ratio leaves its fragility out.
    let mut rows = example();
    rows.retain(|r| !(r.ratio == 0.1 && r.freq_rank == 10));
    check(
        &analyse(&rows),
        &[
            ("corrupt.fragility_rare", None),
            ("corrupt.fragility_gap", None),
            ("corrupt.fragility_frequent", Some(0.5)),
        ],
    );
    // One ratio: nothing to compare.
    let rows: Vec<CorruptRecord> = example().into_iter().filter(|r| r.ratio == 0.5).collect();
    check(
        &analyse(&rows),
        &[
            ("corrupt.fragility_gap", None),
            ("corrupt.nll_rare@ratio=0.5", Some(6.0)),
        ],
    );
}

#[test]
fn decile_boundaries_count_each_text_position_once() {
    // Rank 1 masked in 8 records at one position, ranks 2..10 once each: by records rank 1
    // would fill deciles 1–4; by distinct positions it is one tenth, decile 1.
    let mut rows: Vec<CorruptRecord> = (0..8).map(|s| rec(0.5, 0, s, 0, 1, 1.0, 1, 0.0)).collect();
    rows.extend((2..=10).map(|r| rec(0.5, 0, 0, r, r, 1.0 + r as f32, 1, 0.0)));
    let a = analyse(&rows);
    for d in 1..=10 {
        let p = curve(&a, "corrupt_nll_by_decile", "ratio=0.5", d as f64).unwrap();
        let expected = if d == 1 { 1.0 } else { 1.0 + d as f64 };
        assert_eq!(p.mean, expected, "decile {d}");
    }
}

#[test]
fn context_gain_by_distance_leaves_out_distance_zero() {
    let mut rows = example();
    // No clean token left: counted in the metric, not on the distance curve.
    rows.push(rec(0.5, 1, 1, 0, 5, 2.0, 0, 9.5));
    let a = analyse(&rows);
    let g = |d: f64| curve(&a, "corrupt_context_gain", "ratio=0.5", d).unwrap();
    // Distance 1 at 0.5: 2, 0, 0, −1, 0.5, 0.5; distance 2: 1, 0, 0.5, 0.5.
    assert_eq!((g(1.0).mean, g(1.0).median, g(1.0).n), (2.0 / 6.0, 0.25, 6));
    assert_eq!((g(2.0).mean, g(2.0).n), (0.5, 4));
    assert_eq!((g(3.0).mean, g(3.0).n), (0.5, 1));
    assert!(curve(&a, "corrupt_context_gain", "ratio=0.5", 0.0).is_none());
    check(&a, &[("corrupt.context_gain@ratio=0.5", Some(14.0 / 12.0))]);
}

#[test]
fn per_text_values_are_each_texts_own() {
    let a = analyse(&example());
    let get = |metric: &str, text: u32| {
        a.per_prompt
            .iter()
            .find(|p| p.metric == metric && p.prompt_index == text)
            .map(|p| (p.value, p.n))
    };
    // Text 0 at 0.5: 1.5 + 2.5 + 7 + 3 + 1 + 5 = 20 over 6 tokens and 2 samples.
    assert_eq!(get("corrupt.nll@ratio=0.5", 0), Some((20.0 / 6.0, 6)));
    assert_eq!(
        get("corrupt.nll_per_sequence@ratio=0.5", 0),
        Some((10.0, 2))
    );
    assert_eq!(get("corrupt.nll@ratio=0.5", 1), Some((2.0, 5)));
    assert_eq!(get("corrupt.context_gain@ratio=0.1", 1), Some((1.0, 1)));
}

#[test]
fn bootstrap_resamples_texts_deterministically() {
    let rows: Vec<CorruptRecord> = (0..12u32)
        .flat_map(|t| {
            [0.2f32, 0.6].into_iter().flat_map(move |ratio| {
                (0..4u32).map(move |p| {
                    let rank = 1 + (t * 7 + p * 3) % 40;
                    let nll = rank as f32 / 10.0 + ratio * (1 + t % 3) as f32;
                    rec(ratio, t, 0, p, rank, nll, 1 + p % 2, 0.1 * t as f32)
                })
            })
        })
        .collect();
    let with = |seed| {
        analyze_corrupt(
            &rows,
            &Bootstrap {
                replicates: 200,
                seed,
            },
            "all",
        )
        .unwrap()
        .metrics
    };
    let (a, b, c) = (with(3), with(3), with(4));
    assert_eq!(a, b, "same seed, same errors");
    let err = |m: &[cp_records::Metric], name: &str| {
        m.iter()
            .find(|x| x.name == name)
            .and_then(|x| x.stderr)
            .unwrap_or_else(|| panic!("{name} has no stderr"))
    };
    for name in [
        "corrupt.nll@ratio=0.2",
        "corrupt.nll_per_sequence@ratio=0.6",
        "corrupt.context_gain@ratio=0.6",
        "corrupt.concentration_10@ratio=0.6",
        "corrupt.fragility_gap",
    ] {
        assert!(err(&a, name) > 0.0, "{name}");
    }
    assert_ne!(
        err(&a, "corrupt.nll@ratio=0.2"),
        err(&c, "corrupt.nll@ratio=0.2")
    );
    assert!(a
        .iter()
        .find(|m| m.name == "corrupt.texts")
        .unwrap()
        .stderr
        .is_none());
}

fn write_manifest(dir: &Path, kind: &str) {
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::json!({"schema_version": 1, "kind": kind, "tool_version": "0", "command": [],
            "started_unix": 0, "wall_time_s": 0.0, "seed": 0, "model": null, "tokenizer": null,
            "prompts": null, "libtorch_version": null,
            "params": {"scheme": "uniform", "ratios": [0.1, 0.5], "samples": 2, "seed": 0, "top_k": 1},
            "files": []})
        .to_string(),
    )
    .unwrap();
}

fn corrupt_folder(dir: &Path, rows: &[CorruptRecord], format: Format) {
    std::fs::create_dir_all(dir).unwrap();
    write_table(dir, cp_records::files::CORRUPT_RECORDS, rows, format).unwrap();
    write_manifest(dir, "corrupt");
}

#[test]
fn corrupt_folders_are_detected_and_labelled() {
    let root = tempfile::tempdir().unwrap();
    let (uniform, span, decode) = (
        root.path().join("uniform"),
        root.path().join("span"),
        root.path().join("decode"),
    );
    corrupt_folder(&uniform, &example(), Format::Parquet);
    let mut shifted = example();
    shifted.iter_mut().for_each(|r| r.nll += 1.0);
    corrupt_folder(&span, &shifted, Format::Jsonl);
    std::fs::create_dir_all(&decode).unwrap();
    let gens = vec![Generation {
        prompt_index: 0,
        prompt_id: "0".into(),
        prompt_ids: vec![0],
        gen_ids: vec![1, 2, 3],
        commit_step: vec![0, 1, 2],
        text: String::new(),
        steps: 3,
        remask_count: None,
    }];
    write_table(&decode, "generations", &gens, Format::Parquet).unwrap();
    assert_eq!(detect(&uniform).unwrap(), vec![RecordsKind::Corrupt]);

    let settings = AnalyzeSettings {
        collapse: CollapseSettings {
            bootstrap: no_bootstrap(),
            ..Default::default()
        },
        ..Default::default()
    };
    // Alone: plain names and the series `all`.
    let folders = detect_all(std::slice::from_ref(&uniform)).unwrap();
    let out = analyze_folders(&folders, None, None, &settings).unwrap();
    assert!(out.metrics.get("corrupt.nll@ratio=0.1").is_some());
    assert!(out
        .curves
        .iter()
        .any(|p| p.curve == "corrupt_nll_by_decile" && p.series == "ratio=0.5"));
    assert!(out.end_ids.is_empty(), "a corrupt folder reads no end ids");
    assert!(out
        .per_prompt
        .iter()
        .all(|p| p.source == "uniform" && p.metric.starts_with("corrupt.")));

    // Two corrupt folders beside a decode folder: `@label` and `label:` prefixes for the
    // corrupt ones, the decode folder's names unchanged.
    let folders = detect_all(&[uniform.clone(), span.clone(), decode.clone()]).unwrap();
    let out = analyze_folders(&folders, None, None, &settings).unwrap();
    let value = |name: &str| out.metrics.get(name).map(|m| m.value);
    assert_eq!(value("corrupt.nll@ratio=0.1@uniform"), Some(2.0));
    assert_eq!(value("corrupt.nll@ratio=0.1@span"), Some(3.0));
    assert_eq!(value("corrupt.fragility_gap@span"), Some(2.5));
    assert!(value("corrupt.nll@ratio=0.1").is_none());
    assert!(value("trap.generations").is_some());
    let series: Vec<&str> = out
        .curves
        .iter()
        .filter(|p| p.curve.starts_with("corrupt_"))
        .map(|p| p.series.as_str())
        .collect();
    for s in [
        "uniform:ratio=0.1",
        "span:ratio=0.5",
        "uniform:top10",
        "span:top20",
        "uniform",
        "span",
    ] {
        assert!(series.contains(&s), "no series {s}: {series:?}");
    }

    // A manifest that says corrupt without the table is refused.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    write_manifest(&empty, "corrupt");
    let err = detect(&empty).unwrap_err().to_string();
    assert!(err.contains("says kind `corrupt`"), "{err}");
}
