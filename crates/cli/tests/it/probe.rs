//! `collapse-probe probe` end to end: records, batching, and every bad input the issue names.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cp_records::{read_table, ProbeRecord};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn llada_tiny() -> PathBuf {
    repo().join("fixtures/parity/llada-tiny")
}

/// Pre-tokenized prompts of different lengths (the parity folder has no tokenizer).
fn ids_prompts(dir: &Path) -> PathBuf {
    let path = dir.join("prompts.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"a\",\"input_ids\":[7,179,147,248,151,74,16,257,297,104,45,5]}\n\
         {\"id\":\"b\",\"input_ids\":[3,9,27]}\n\
         {\"id\":\"c\",\"input_ids\":[100,101,102,103,104,105,106]}\n",
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    bin().args(args).arg("--quiet").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn probe(model: &Path, prompts: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "probe",
        "--model",
        model.to_str().unwrap(),
        "--prompts",
        prompts.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn probe_writes_records_and_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = ids_prompts(tmp.path());
    let out = tmp.path().join("out");
    let o = probe(
        &llada_tiny(),
        &prompts,
        &out,
        &["--masks", "20", "--top-k", "3"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<ProbeRecord> = read_table(&out.join("records.parquet")).unwrap();
    assert_eq!(rows.len(), 3 * 20);
    let first = &rows[0];
    assert_eq!(
        (
            first.prompt_id.as_str(),
            first.prompt_len,
            first.position,
            first.distance
        ),
        ("a", 12, 12, 1)
    );
    assert_eq!(first.top_ids.len(), 3);
    assert!(first.top_probs.windows(2).all(|w| w[0] >= w[1]));
    assert!(first.entropy > 0.0 && first.entropy <= (320f32).ln() + 1e-4);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "probe");
    assert_eq!(manifest["model"]["model_type"], "llada");
    assert_eq!(manifest["params"]["masks"], 20);
    assert_eq!(manifest["prompts"]["format"], "ids");
}

/// The probe's top-1 at the first mask of case_a must be the argmax of the reference logits.
#[test]
fn probe_matches_reference_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = ids_prompts(tmp.path());
    let out = tmp.path().join("out");
    let o = probe(
        &llada_tiny(),
        &prompts,
        &out,
        &["--masks", "20", "--top-k", "5", "--format", "jsonl"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<ProbeRecord> = read_table(&out.join("records.jsonl")).unwrap();
    let reference =
        tch::Tensor::read_safetensors(llada_tiny().join("reference.safetensors")).unwrap();
    let logits = &reference
        .iter()
        .find(|(n, _)| n == "case_a_logits")
        .unwrap()
        .1;
    for (j, row) in rows.iter().filter(|r| r.prompt_id == "a").enumerate() {
        let p = logits
            .get(0)
            .get(12 + j as i64)
            .softmax(-1, tch::Kind::Float);
        let (top_p, top_i) = p.topk(5, -1, true, true);
        let top_i: Vec<i64> = Vec::try_from(top_i).unwrap();
        let top_p: Vec<f32> = Vec::try_from(top_p).unwrap();
        assert_eq!(
            row.top_ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            top_i,
            "distance {}",
            j + 1
        );
        for (a, b) in row.top_probs.iter().zip(&top_p) {
            assert!((a - b).abs() < 1e-5, "distance {}: {a} vs {b}", j + 1);
        }
        let entropy = -(&p * p.log()).sum(tch::Kind::Float).double_value(&[]) as f32;
        assert!(
            (row.entropy - entropy).abs() < 1e-4,
            "{} vs {entropy}",
            row.entropy
        );
    }
}

#[test]
fn batched_probe_equals_unbatched() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = ids_prompts(tmp.path());
    let (one, three) = (tmp.path().join("b1"), tmp.path().join("b3"));
    for (out, b) in [(&one, "1"), (&three, "3")] {
        let o = probe(
            &llada_tiny(),
            &prompts,
            out,
            &["--masks", "16", "--top-k", "4", "--batch-size", b],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let a: Vec<ProbeRecord> = read_table(&one.join("records.parquet")).unwrap();
    let b: Vec<ProbeRecord> = read_table(&three.join("records.parquet")).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.prompt_id.as_str(), x.position),
            (y.prompt_id.as_str(), y.position)
        );
        assert_eq!(
            x.top_ids, y.top_ids,
            "prompt {} distance {}",
            x.prompt_id, x.distance
        );
        assert!((x.entropy - y.entropy).abs() < 1e-4);
        for (p, q) in x.top_probs.iter().zip(&y.top_probs) {
            assert!((p - q).abs() < 1e-5);
        }
    }
}

/// Runs a probe that must fail: exit code 2, a message containing every `needles`, no output folder.
fn check_bad(model: &Path, prompts: &Path, extra: &[&str], needles: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = probe(model, prompts, &out, extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
    assert!(!out.exists(), "partial output left behind");
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A copy of the tiny LLaDA checkpoint, in `dir/model`, whose config.json a test may break.
fn model_copy(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(llada_tiny().join(f), m.join(f)).unwrap();
    }
    m
}

fn edit_config(model: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = model.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

#[test]
fn bad_inputs_exit_2_with_a_named_culprit() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = ids_prompts(tmp.path());

    check_bad(&tmp.path().join("nope"), &prompts, &[], &["nope"]);

    let m = model_copy(&tmp.path().join("a"));
    std::fs::write(
        m.join("config.json"),
        "{\"model_type\": \"llada\", \"d_model\": ",
    )
    .unwrap();
    check_bad(&m, &prompts, &[], &["config.json"]);

    let m = model_copy(&tmp.path().join("b"));
    edit_config(&m, |v| v["model_type"] = "gpt2".into());
    check_bad(&m, &prompts, &[], &["gpt2", "llada", "Dream"]);

    let m = model_copy(&tmp.path().join("c"));
    edit_config(&m, |v| v["n_layers"] = 3.into());
    check_bad(&m, &prompts, &[], &["model.transformer.blocks.2."]);

    let m = model_copy(&tmp.path().join("d"));
    edit_config(&m, |v| v["mlp_hidden_size"] = 200.into());
    check_bad(&m, &prompts, &[], &["ff_proj", "200", "192"]);

    check_bad(
        &llada_tiny(),
        &prompts,
        &["--masks", "250"],
        &["context", "256"],
    );
    check_bad(
        &llada_tiny(),
        &prompts,
        &["--top-k", "321"],
        &["--top-k", "320"],
    );
    check_bad(
        &llada_tiny(),
        &tmp.path().join("missing.jsonl"),
        &[],
        &["missing.jsonl"],
    );

    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"input_ids\":[1,2]}\n{\"input_ids\":[1,\n").unwrap();
    check_bad(&llada_tiny(), &bad, &[], &["bad.jsonl", "2"]);
    // Integer weights (same byte width as f32, so the file is otherwise valid): named, no panic.
    for (dir, dtype) in [("e", "I32"), ("f", "U32")] {
        let m = model_copy(&tmp.path().join(dir));
        retype_tensor(
            &m,
            "model.transformer.blocks.0.up_proj.weight",
            "F32",
            dtype,
        );
        check_bad(
            &m,
            &prompts,
            &[],
            &[
                "model.safetensors",
                "model.transformer.blocks.0.up_proj.weight",
                dtype,
            ],
        );
    }
}

/// Rewrites the dtype of tensor `name` in `model/model.safetensors`'s header from `from` to
/// `to` (both the same length, so every offset stays valid).
fn retype_tensor(model: &Path, name: &str, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    let path = model.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    let entry = header
        .find(&format!("\"{name}\""))
        .expect("tensor in header");
    let at = 8 + entry + header[entry..].find(&format!("\"{from}\"")).unwrap() + 1;
    bytes[at..at + from.len()].copy_from_slice(to.as_bytes());
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn tokenizer_without_mask_token_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model_copy(tmp.path());
    edit_config(&m, |v| {
        v.as_object_mut().unwrap().remove("mask_token_id");
    });
    // A word-level tokenizer with no mask token among its tokens.
    std::fs::write(
        m.join("tokenizer.json"),
        r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,
            "pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
            "model":{"type":"WordLevel","vocab":{"a":0,"b":1,"<unk>":2},"unk_token":"<unk>"}}"#,
    )
    .unwrap();
    let prompts = tmp.path().join("p.txt");
    std::fs::write(&prompts, "a b a\n").unwrap();
    check_bad(&m, &prompts, &["--chat-template", "none"], &["mask"]);
}

#[test]
fn a_model_that_cannot_fit_is_refused_before_loading() {
    let tmp = tempfile::tempdir().unwrap();
    let prompts = ids_prompts(tmp.path());
    let out = tmp.path().join("out");
    let o = bin()
        .args(["probe", "--model"])
        .arg(llada_tiny())
        .arg("--prompts")
        .arg(&prompts)
        .arg("--out")
        .arg(&out)
        .args(["--dtype", "f32", "--quiet"])
        .env("COLLAPSE_PROBE_AVAILABLE_MEMORY", "1000")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("loading as f32 needs about"), "{err}");
    assert!(err.contains("COLLAPSE_PROBE_AVAILABLE_MEMORY"), "{err}");
    assert!(!out.exists());
}
