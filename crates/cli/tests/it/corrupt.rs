//! `collapse-probe corrupt` end to end: every recorded NLL equals an independent forward pass
//! of the same masked sequence, the schemes mask what they say, runs are deterministic, and bad
//! inputs exit 2 naming the flag or file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cp_model::{load_model, DeviceChoice, LoadOptions};
use cp_records::{read_table, CorruptRecord, CorruptText};
use tch::{Kind, Tensor};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An index of the KJV fixture's training text, built once per test.
pub(super) fn kjv_index(dir: &Path) -> PathBuf {
    let model = root().join("fixtures/text-llada");
    let index = dir.join("index");
    let o = run(&[
        "index",
        "build",
        "--tokenizer",
        model.join("tokenizer.json").to_str().unwrap(),
        "--corpus",
        model.join("corpus.txt").to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    index
}

fn corrupt(index: &Path, out: &Path, extra: &[&str]) -> Output {
    let model = root().join("fixtures/text-llada");
    let texts = root().join("probes/prompts/kjv.txt");
    let mut args = vec![
        "corrupt",
        "--model",
        model.to_str().unwrap(),
        "--texts",
        texts.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn recorded_nll_equals_an_independent_forward_pass() {
    let tmp = tempfile::tempdir().unwrap();
    let index = kjv_index(tmp.path());
    let out = tmp.path().join("c");
    let o = corrupt(
        &index,
        &out,
        &[
            "--ratios",
            "0.2,0.6",
            "--samples",
            "2",
            "--batch-size",
            "3",
            "--seed",
            "5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let records: Vec<CorruptRecord> = read_table(&out.join("corrupt.parquet")).unwrap();
    let texts: Vec<CorruptText> = read_table(&out.join("texts.parquet")).unwrap();
    assert_eq!(texts.len(), 16);
    let model = load_model(
        &root().join("fixtures/text-llada"),
        &LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let mask = model.mask_id();
    // Rebuild every masked sequence from texts.parquet and the records alone.
    let mut groups: BTreeMap<(u32, u32, u32), Vec<&CorruptRecord>> = BTreeMap::new();
    for r in &records {
        groups
            .entry((r.text_index, r.ratio.to_bits(), r.sample))
            .or_default()
            .push(r);
    }
    assert_eq!(groups.len(), 16 * 2 * 2);
    let mut worst: f64 = 0.0;
    for ((t, _, _), rows) in &groups {
        let clean: Vec<i64> = texts[*t as usize]
            .ids
            .iter()
            .map(|&i| i64::from(i))
            .collect();
        let mut ids = clean.clone();
        for r in rows {
            assert_eq!(clean[r.position as usize], i64::from(r.token_id));
            ids[r.position as usize] = mask;
        }
        // BOS (id 1 here) is never masked.
        assert!(rows.iter().all(|r| r.position > 0));
        let input = Tensor::from_slice(&ids).view([1, -1]);
        let logp = model
            .logits(&input, None, 0)
            .unwrap()
            .log_softmax(-1, Kind::Float);
        for r in rows {
            let row = logp.get(0).get(i64::from(r.position));
            let nll = -row.double_value(&[i64::from(r.token_id)]);
            worst = worst.max((nll - f64::from(r.nll)).abs());
            let better = row
                .gt(row.double_value(&[i64::from(r.token_id)]))
                .sum(Kind::Int64)
                .int64_value(&[]);
            assert_eq!(i64::from(r.true_rank), better + 1);
            assert_eq!(r.top_ids.len(), 5);
        }
    }
    println!("corrupt: max |nll - forward| = {worst:.3e}");
    assert!(worst <= 1e-4, "{worst:e}");
    // The masked share: round(ratio x eligible), here every position but BOS.
    for ((t, ratio, _), rows) in &groups {
        let eligible = texts[*t as usize].ids.len() - 1;
        let expected = cp_model::masked_count(f64::from(f32::from_bits(*ratio)), eligible);
        assert_eq!(rows.len(), expected);
    }
    // The same command gives the same records; another batch size too.
    let again = tmp.path().join("again");
    let o = corrupt(
        &index,
        &again,
        &[
            "--ratios",
            "0.2,0.6",
            "--samples",
            "2",
            "--batch-size",
            "3",
            "--seed",
            "5",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let second: Vec<CorruptRecord> = read_table(&again.join("corrupt.parquet")).unwrap();
    assert_eq!(records, second);
}

#[test]
fn rare_first_masks_the_rarest_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let index = kjv_index(tmp.path());
    let out = |name: &str| tmp.path().join(name);
    for scheme in ["rare-first", "frequent-first"] {
        let o = corrupt(
            &index,
            &out(scheme),
            &["--ratios", "0.3", "--samples", "1", "--scheme", scheme],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let rare: Vec<CorruptRecord> = read_table(&out("rare-first").join("corrupt.parquet")).unwrap();
    let frequent: Vec<CorruptRecord> =
        read_table(&out("frequent-first").join("corrupt.parquet")).unwrap();
    let mean_rank = |rows: &[CorruptRecord]| {
        rows.iter().map(|r| f64::from(r.freq_rank)).sum::<f64>() / rows.len() as f64
    };
    assert_eq!(rare.len(), frequent.len());
    assert!(mean_rank(&rare) > 10.0 * mean_rank(&frequent));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out("rare-first").join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["kind"], "corrupt");
    assert_eq!(manifest["params"]["scheme"], "rare-first");
}

#[test]
fn bad_corrupt_inputs_exit_2_naming_the_flag_or_file() {
    let tmp = tempfile::tempdir().unwrap();
    let index = kjv_index(tmp.path());
    // An index of the toy fixture's corpus, built with its own tokenizer.
    let toy = root().join("fixtures/toy-trap");
    let corpus = tmp.path().join("toy.txt");
    std::fs::write(&corpus, "he likes apple\ni play tennis\n").unwrap();
    let other = tmp.path().join("other-index");
    let o = run(&[
        "index",
        "build",
        "--tokenizer",
        toy.join("tokenizer.json").to_str().unwrap(),
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        other.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let specials = tmp.path().join("specials.txt");
    std::fs::write(&specials, "<|endoftext|>\n").unwrap();
    let model = root().join("fixtures/text-llada");
    let out = tmp.path().join("out");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (
            vec!["--ratios".into(), "0.5,1.0".into()],
            vec!["--ratios", "1"],
        ),
        (vec!["--ratios".into(), "0".into()], vec!["--ratios", "0"]),
        (vec!["--samples".into(), "0".into()], vec!["--samples"]),
        (
            vec!["--scheme".into(), "random".into()],
            vec!["--scheme", "rare-first"],
        ),
        (
            vec!["--index".into(), other.display().to_string()],
            vec!["--index", "another tokenizer"],
        ),
        (
            vec!["--index".into(), tmp.path().display().to_string()],
            vec!["--index", "not an index"],
        ),
        (
            vec![
                "--texts".into(),
                specials.display().to_string(),
                "--no-special-tokens".into(),
            ],
            vec!["specials.txt", "no token to mask"],
        ),
    ];
    for (extra, needles) in cases {
        let mut args: Vec<String> = vec![
            "corrupt".into(),
            "--model".into(),
            model.display().to_string(),
            "--texts".into(),
            root().join("probes/prompts/kjv.txt").display().to_string(),
            "--index".into(),
            index.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        // A repeated flag replaces the default one.
        for pair in extra.chunks(2) {
            if let Some(i) = args.iter().position(|a| *a == pair[0]) {
                if pair.len() == 2 {
                    args[i + 1] = pair[1].clone();
                    continue;
                }
            }
            args.extend(pair.iter().cloned());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&refs);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        for n in needles {
            assert!(
                stderr(&o).contains(n),
                "{extra:?}: `{n}` not in {}",
                stderr(&o)
            );
        }
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        assert!(!out.exists(), "{extra:?}: output left behind");
    }
}
