//! The composed schedules through the binary: bad schedule strings, PC-Sampler's background
//! from an index folder, and sweeps over the presets' own options.

use std::path::{Path, PathBuf};
use std::process::Command;

use cp_records::{read_table, Generation};

use crate::gate::write_toy_spec;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary quietly; returns (exit code, stderr).
fn run(args: &[&std::ffi::OsStr]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap();
    (
        o.status.code().unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn decode(model: &Path, prompts: &Path, schedule: &str, out: &Path) -> (i32, String) {
    run(&[
        "decode".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--prompts".as_ref(),
        prompts.as_os_str(),
        "--chat-template".as_ref(),
        "none".as_ref(),
        "--schedule".as_ref(),
        schedule.as_ref(),
        "--format".as_ref(),
        "jsonl".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ])
}

#[test]
fn bad_schedule_strings_exit_2_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/parity/llada-tiny");
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(&prompts, "{\"id\":\"a\",\"input_ids\":[1,2,3]}\n").unwrap();
    let short = dir.path().join("short.json");
    std::fs::write(&short, serde_json::to_string(&vec![0.01; 300]).unwrap()).unwrap();
    let short_spec = format!(
        "pc:gen_length=8,steps=8,block_length=8,background={}",
        short.display()
    );
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "nosuch:gen_length=8",
            vec!["unknown schedule `nosuch`", "fastdllm"],
        ),
        (
            "compose:score=wobble",
            vec!["option `score`", "unknown part `wobble`"],
        ),
        (
            "compose:count=nope",
            vec!["option `count`", "unknown part `nope`"],
        ),
        (
            "compose:eligible=some",
            vec!["option `eligible`", "unknown part `some`"],
        ),
        ("fastdllm:threshold=1.5", vec!["option `threshold`", "1.5"]),
        ("fastdllm:factor=0", vec!["option `factor`"]),
        ("eb:gamma=-1", vec!["option `gamma`"]),
        (
            "pc:lambda=-0.5,background=x.json",
            vec!["option `background`", "x.json"],
        ),
        ("klass:kl_threshold=0", vec!["option `kl_threshold`"]),
        ("llada2:threshold=2", vec!["option `threshold`"]),
        ("llada2:minimal_topk=500", vec!["option `minimal_topk`"]),
        (
            "eb:steps=4",
            vec!["unknown option `steps` for schedule `eb`", "gamma"],
        ),
        (
            "llada2:block_length=8",
            vec!["unknown option `block_length`", "block_size"],
        ),
        (
            "fastdllm:gen_length=8,block_length=3",
            vec!["option `block_length`"],
        ),
        (
            "compose:count=threshold",
            vec!["option `threshold` is required"],
        ),
        (
            "compose:count=threshold,threshold=0.5,gamma=2",
            vec!["option `gamma` is not read"],
        ),
        (
            "pc:gen_length=8,steps=8,block_length=8",
            vec!["option `background` is required"],
        ),
        (&short_spec, vec!["option `background`", "300", "320"]),
    ];
    for (i, (spec, needles)) in cases.iter().enumerate() {
        let out = dir.path().join(format!("out{i}"));
        let (code, err) = decode(&model, &prompts, spec, &out);
        assert_eq!(code, 2, "{spec}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{spec}: `{needle}` not in: {err}");
        }
        assert!(!err.contains("panicked"), "{spec}: {err}");
        assert!(!out.exists(), "{spec}: no output on failure");
    }
}

/// PC-Sampler's background read from an index folder is upstream's table built from token
/// counts (`count / total`, `1 / total` for unseen ids): a JSON file of that table decodes alike.
#[test]
fn pc_background_from_an_index_equals_the_same_table_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let index = dir.path().join("index");
    let (code, err) = run(&[
        "index".as_ref(),
        "build".as_ref(),
        "--tokenizer".as_ref(),
        model.join("tokenizer.json").as_os_str(),
        "--corpus".as_ref(),
        model.join("corpus.txt").as_os_str(),
        "--out".as_ref(),
        index.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let counts = cp_analysis::Unigram::load(&index).unwrap();
    let total = counts.total() as f64;
    let vocab: usize = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(model.join("config.json")).unwrap(),
    )
    .unwrap()["vocab_size"]
        .as_u64()
        .unwrap() as usize;
    let table: Vec<f64> = (0..vocab)
        .map(|i| {
            let c = if i < counts.len() {
                counts.count(i as u32)
            } else {
                0
            };
            (c.max(1) as f64 / total) as f32 as f64
        })
        .collect();
    let json = dir.path().join("bg.json");
    std::fs::write(&json, serde_json::json!({ "values": table }).to_string()).unwrap();

    let prompts = root().join("probes/prompts/kjv.txt");
    let spec = "pc:gen_length=16,steps=8,block_length=8,lambda=0.25,alpha=10";
    let gens = |background: &Path, name: &str| -> Vec<Generation> {
        let out = dir.path().join(name);
        let (code, err) = decode(
            &model,
            &prompts,
            &format!("{spec},background={}", background.display()),
            &out,
        );
        assert_eq!(code, 0, "{err}");
        read_table(&out.join("generations.jsonl")).unwrap()
    };
    let from_index = gens(&index, "index");
    let from_json = gens(&json, "json");
    assert_eq!(from_index.len(), 16);
    assert_eq!(from_index, from_json);
    // And the background matters: a uniform one ranks by confidence alone.
    let uniform = dir.path().join("uniform.json");
    std::fs::write(
        &uniform,
        serde_json::to_string(&vec![1.0 / vocab as f64; vocab]).unwrap(),
    )
    .unwrap();
    assert_ne!(gens(&uniform, "uniform"), from_index);
}

/// `[sweep]` varies a preset's own option (here the EB-sampler's `gamma` and Fast-dLLM's
/// `factor`), and PC-Sampler without a background takes the spec's reference index.
#[test]
fn run_sweeps_preset_options_and_gives_pc_the_reference_index() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("probes/toy-trap.toml")).unwrap();
    for (param, schedules, values) in [
        (
            "gamma",
            "[[schedule]]\nname = \"eb\"\nspec = \"eb:gen_length=3\"\n",
            "[0.0, 5.0]",
        ),
        (
            "factor",
            "[[schedule]]\nname = \"fast\"\nspec = \"fastdllm:gen_length=3,steps=3,block_length=3\"\n\n[[schedule]]\nname = \"pc\"\nspec = \"pc:gen_length=3,steps=3,block_length=3\"\n",
            "[1.0, 3.0]",
        ),
    ] {
        let spec_text = text
            .replace(
                "[[schedule]]\nname = \"one-per-step\"\nspec = \"fixed:gen_length=3,k=1,temperature=1\"\n",
                schedules,
            )
            .replace("param = \"tokens_per_step\"", &format!("param = \"{param}\""))
            .replace("values = [1, 2, 3]", &format!("values = {values}"));
        assert_ne!(spec_text, text);
        let spec = write_toy_spec(dir.path(), &format!("sweep-{param}.toml"), &spec_text);
        let out = dir.path().join(param);
        let (code, err) = run(&["run".as_ref(), spec.as_os_str(), "--out".as_ref(), out.as_os_str()]);
        if param == "factor" {
            // PC-Sampler has no factor: the spec is refused before any work, naming both.
            assert_eq!(code, 2, "{err}");
            assert!(err.contains("schedule `pc`") && err.contains("factor"), "{err}");
            continue;
        }
        assert_eq!(code, 0, "{err}");
        let sweep: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("sweep/metrics.json")).unwrap())
                .unwrap();
        let value = |name: &str| {
            sweep["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == name)
                .unwrap_or_else(|| panic!("no {name}"))["value"]
                .as_f64()
                .unwrap()
        };
        // No entropy budget: one token per step; a large one: more.
        assert_eq!(value("trap.tokens_per_step@gamma=0"), 1.0);
        assert!(value("trap.tokens_per_step@gamma=5") > 1.0);
        assert!(out.join("report/figures/tradeoff_double.svg").exists());
    }
    // The reference index stands in for PC-Sampler's background.
    let spec_text = text.replace(
        "spec = \"fixed:gen_length=3,k=1,temperature=1\"",
        "spec = \"pc:gen_length=3,steps=3,block_length=3\"",
    );
    let spec_text = spec_text
        .replace("param = \"tokens_per_step\"", "param = \"lambda\"")
        .replace("values = [1, 2, 3]", "values = [0.0, 1.0]");
    let spec = write_toy_spec(dir.path(), "pc-reference.toml", &spec_text);
    let out = dir.path().join("pc");
    let (code, err) = run(&[
        "run".as_ref(),
        spec.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 0, "{err}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("decode/one-per-step/manifest.json")).unwrap(),
    )
    .unwrap();
    let used = manifest["params"]["schedule_spec"].as_str().unwrap();
    assert!(
        used.contains("background=") && used.contains("index"),
        "{used}"
    );
    assert!(out
        .join("sweep/lambda=1/decode/one-per-step/generations.parquet")
        .exists());
}
