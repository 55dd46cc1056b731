//! Trajectories decoded elsewhere (docs/trajectories.md): `export` → `import` round trips of every
//! built-in schedule, the official LLaDA traces imported as histories, remasking, the errors, and
//! a spec that gates imported trajectories.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use cp_records::{read_table, Generation, MetricsFile};
use serde_json::{json, Value};

use crate::traces::trace_specs;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs the binary quietly; returns (exit code, stderr).
fn run<S: AsRef<OsStr>>(args: &[S]) -> (i32, String) {
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

fn ok<S: AsRef<OsStr>>(args: &[S]) {
    let (code, err) = run(args);
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert_eq!(code, 0, "collapse-probe {}: {err}", shown.join(" "));
}

fn analyze(records: &Path, out: &Path) -> Vec<u8> {
    ok(&[
        "analyze".as_ref(),
        "--records".as_ref(),
        records.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    std::fs::read(out.join("metrics.json")).unwrap()
}

fn generations(dir: &Path) -> Vec<Generation> {
    read_table(&cp_records::Format::find(dir, "generations").unwrap()).unwrap()
}

/// `decode` → `export` → `import` gives the same generations and a byte-identical
/// `metrics.json` (the imported folder is analysed at the decoded folder's path, so even the
/// `sources` agree), for every built-in schedule on the KJV fixture; a Parquet export too.
#[test]
fn decode_export_import_round_trips_every_builtin_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let prompts = root().join("probes/prompts/kjv.txt");
    let vocab = 2048;
    let uniform = dir.path().join("uniform.json");
    std::fs::write(&uniform, json!(vec![1.0 / vocab as f64; vocab]).to_string()).unwrap();
    let schedules = [
        (
            "llada",
            "llada:gen_length=32,steps=16,block_length=16".to_string(),
        ),
        ("dream", "dream:max_new_tokens=32,steps=8".into()),
        ("threshold", "threshold:gen_length=32,tau=0.5".into()),
        ("fixed", "fixed:gen_length=32,k=4,order=random".into()),
        (
            "fastdllm",
            "fastdllm:gen_length=32,steps=8,block_length=16,threshold=0.5".into(),
        ),
        ("eb", "eb:gen_length=32,gamma=1".into()),
        (
            "pc",
            format!(
                "pc:gen_length=32,steps=16,block_length=16,background={}",
                uniform.display()
            ),
        ),
        (
            "klass",
            "klass:gen_length=32,steps=8,block_length=16".into(),
        ),
        (
            "llada2",
            "llada2:max_new_tokens=32,block_size=16,steps_per_block=4".into(),
        ),
    ];
    for (name, schedule) in &schedules {
        let decoded = dir.path().join("decode").join(name);
        ok(&[
            "decode".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--prompts".as_ref(),
            prompts.as_os_str(),
            "--chat-template".as_ref(),
            "none".as_ref(),
            "--schedule".as_ref(),
            schedule.as_ref(),
            "--seed".as_ref(),
            "3".as_ref(),
            "--out".as_ref(),
            decoded.as_os_str(),
        ]);
        let before = analyze(&decoded, &dir.path().join(format!("{name}-a")));
        let original = generations(&decoded);
        for ext in ["jsonl", "parquet"] {
            let file = dir.path().join(format!("{name}.{ext}"));
            ok(&[
                "export".as_ref(),
                decoded.as_os_str(),
                "--out".as_ref(),
                file.as_os_str(),
            ]);
            let kept = dir.path().join(format!("{name}-{ext}-decoded"));
            std::fs::rename(&decoded, &kept).unwrap();
            ok(&[
                "import".as_ref(),
                file.as_os_str(),
                "--model".as_ref(),
                model.as_os_str(),
                "--out".as_ref(),
                decoded.as_os_str(),
            ]);
            assert_eq!(generations(&decoded), original, "{name} via {ext}");
            let after = analyze(&decoded, &dir.path().join(format!("{name}-{ext}-b")));
            assert!(
                before == after,
                "{name} via {ext}: metrics.json differs:\n{}\n---\n{}",
                String::from_utf8_lossy(&before),
                String::from_utf8_lossy(&after)
            );
            std::fs::remove_dir_all(&decoded).unwrap();
            std::fs::rename(&kept, &decoded).unwrap();
        }
    }
}

/// The official LLaDA `generate()` traces of `decode_traces.json` (the sequence after every
/// step, as the snippet in docs/trajectories.md records it), imported as histories: their
/// metrics equal those of `collapse-probe decode` with the same schedule.
#[test]
fn official_llada_histories_import_to_the_metrics_of_decode() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/parity/llada-tiny");
    let traces: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("decode_traces.json")).unwrap())
            .unwrap();
    let mut checked = 0;
    for trace in traces["traces"].as_array().unwrap() {
        let params = &trace["params"];
        let name = trace["name"].as_str().unwrap();
        let history: Vec<Value> = trace["history"].as_array().unwrap().clone();
        let prompt = trace["prompt_ids"].clone();
        // Row 0 is the all-mask start; the format holds the rows after each step.
        let line = json!({
            "prompt_id": name,
            "prompt_ids": prompt,
            "mask_id": params["mask_id"],
            "history": history[1..],
        });
        let file = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&file, line.to_string() + "\n").unwrap();
        let imported = dir.path().join(name).join("imported");
        ok(&[
            "import".as_ref(),
            file.as_os_str(),
            "--model".as_ref(),
            model.as_os_str(),
            "--out".as_ref(),
            imported.as_os_str(),
        ]);
        let prompts = dir.path().join(format!("{name}-prompt.jsonl"));
        std::fs::write(
            &prompts,
            json!({"id": name, "input_ids": prompt}).to_string() + "\n",
        )
        .unwrap();
        let decoded = dir.path().join(name).join("decoded");
        let seed = params["rng_seed"].as_u64().unwrap_or(0).to_string();
        ok(&[
            "decode".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--prompts".as_ref(),
            prompts.as_os_str(),
            "--schedule".as_ref(),
            trace_specs::spec_of("llada", params).as_ref(),
            "--seed".as_ref(),
            seed.as_ref(),
            "--out".as_ref(),
            decoded.as_os_str(),
        ]);
        assert_eq!(generations(&imported), generations(&decoded), "{name}");
        let metrics = |d: &Path, out: &str| -> MetricsFile {
            analyze(d, &dir.path().join(name).join(out));
            cp_records::read_json(&dir.path().join(name).join(out).join("metrics.json")).unwrap()
        };
        let (mi, md) = (metrics(&imported, "ai"), metrics(&decoded, "ad"));
        assert_eq!(mi.metrics, md.metrics, "{name}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} traces");
}

/// A remasking sampler's history: final commit steps, remask counts, one `steps` row per
/// commit, and `trap.remask_rate` as METRICS.md defines it.
#[test]
fn remasked_histories_give_final_commit_steps_and_the_remask_rate() {
    let dir = tempfile::tempdir().unwrap();
    let m = 9;
    // Prompt [1, 2]; generated positions a, b, c, d.
    // a: 5 at step 0, masked at 1, 6 at 2 (remasked once, final commit 2)
    // b: 7 at step 1 for good
    // c: 3 at step 0, replaced by 4 at step 2 (remasked once, final commit 2)
    // d: never committed
    let lines = [
        json!({"prompt_ids": [1, 2], "history": [
            [1, 2, 5, m, 3, m],
            [1, 2, m, 7, 3, m],
            [1, 2, 6, 7, 4, m],
        ]}),
        json!({"prompt_ids": [1], "history": [[1, 3, m], [1, 3, 4]]}),
    ];
    let file = dir.path().join("remask.jsonl");
    std::fs::write(
        &file,
        lines
            .iter()
            .map(|l| l.to_string() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let out = dir.path().join("d");
    let (code, err) = run(&[
        "import".as_ref(),
        file.as_os_str(),
        "--mask-id".as_ref(),
        "9".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("line 1") && err.contains("`history`") && err.contains("--allow-remasking"),
        "{err}"
    );
    assert!(!out.exists());
    ok(&[
        "import".as_ref(),
        file.as_os_str(),
        "--mask-id".as_ref(),
        "9".as_ref(),
        "--allow-remasking".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let g = generations(&out);
    assert_eq!(g[0].gen_ids, [6, 7, 4, m]);
    assert_eq!(g[0].commit_step, [2, 1, 2, -1]);
    assert_eq!(g[0].remask_count, Some(vec![1, 0, 1, 0]));
    assert_eq!(g[0].steps, 3);
    assert_eq!(g[1].commit_step, [0, 1]);
    let steps: Vec<cp_records::StepRecord> = read_table(&out.join("steps.parquet")).unwrap();
    let of0: Vec<(u32, u32, u32)> = steps
        .iter()
        .filter(|s| s.prompt_index == 0)
        .map(|s| (s.step, s.position, s.token_id))
        .collect();
    assert_eq!(of0, [(0, 2, 5), (0, 4, 3), (1, 3, 7), (2, 2, 6), (2, 4, 4)]);
    assert!(steps
        .iter()
        .all(|s| s.prob.is_none() && s.confidence.is_none()));
    let metrics = dir.path().join("a");
    analyze(&out, &metrics);
    let file: MetricsFile = cp_records::read_json(&metrics.join("metrics.json")).unwrap();
    // Two remasked positions out of 4 + 2 generated positions.
    assert_eq!(file.get("trap.remask_rate").unwrap().value, 2.0 / 6.0);
    // Pairs from final commit steps: (a,b) 2|1, (b,c) 1|2 in the first (d is cut), (0,1) in the second.
    assert_eq!(file.get("trap.same_step_pair_fraction").unwrap().value, 0.0);
}

/// Every bad input of issue-level interest exits 2 naming the line and the field, and leaves
/// no output folder.
#[test]
fn bad_trajectories_exit_2_naming_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = root().join("fixtures/text-llada/tokenizer.json");
    let good = json!({"prompt_ids": [1, 2], "gen_ids": [5, 6], "commit_step": [0, 1], "steps": 2})
        .to_string();
    let hist = |rows: Value| json!({"prompt_ids": [1, 2], "history": rows}).to_string();
    let m = 2047;
    let cases: Vec<(&str, String, Vec<&str>, Vec<&str>)> = vec![
        (
            "remasked history",
            hist(json!([[1, 2, 5, m], [1, 2, m, 6]])),
            vec![],
            vec!["line 1", "`history`", "step 1", "--allow-remasking"],
        ),
        (
            "history row of another length",
            hist(json!([[1, 2, 5, m], [1, 2, 5, 6, 7]])),
            vec![],
            vec!["line 1", "`history`", "step 1 has 5 ids"],
        ),
        (
            "a step that unmasks a prompt token",
            hist(json!([[1, 2, 5, m], [1, m, 5, 6]])),
            vec![],
            vec!["line 1", "`history`", "prompt position 1"],
        ),
        (
            "an id outside the vocabulary",
            format!("{good}\n{}", json!({"prompt_ids": [1], "gen_ids": [5, 4096], "commit_step": [0, 0], "steps": 1})),
            vec![],
            vec!["line 2", "`gen_ids`", "4096", "vocabulary"],
        ),
        (
            "a missing mask id",
            hist(json!([[1, 2, 5, 3], [1, 2, 5, 6]])),
            vec!["--no-tokenizer"],
            vec!["line 1", "`mask_id`", "missing"],
        ),
        (
            "mixed forms",
            format!("{good}\n{good}\n{}", hist(json!([[1, 2, 5, m]]))),
            vec![],
            vec!["line 3", "`history`", "line 1", "one form"],
        ),
        (
            "a truncated last line",
            format!("{good}\n{}", &good[..good.len() - 7]),
            vec![],
            vec!["line 2", "truncated"],
        ),
        (
            "commit_step of another length",
            json!({"prompt_ids": [1], "gen_ids": [5, 6], "commit_step": [0], "steps": 1}).to_string(),
            vec![],
            vec!["line 1", "`commit_step`", "1 entries", "2"],
        ),
        (
            "a commit step past the steps",
            json!({"prompt_ids": [1], "gen_ids": [5], "commit_step": [3], "steps": 2}).to_string(),
            vec![],
            vec!["line 1", "`commit_step`", "[-1, 2)"],
        ),
        (
            "a misspelt field",
            json!({"prompt_ids": [1], "gen_ids": [5], "commit_steps": [0], "steps": 1}).to_string(),
            vec![],
            vec!["line 1", "`commit_steps`", "unknown field"],
        ),
        (
            "a missing field",
            json!({"prompt_ids": [1], "gen_ids": [5], "commit_step": [0]}).to_string(),
            vec![],
            vec!["line 1", "`steps`", "missing"],
        ),
        (
            "an unsupported version",
            json!({"version": 2, "prompt_ids": [1], "gen_ids": [5], "commit_step": [0], "steps": 1}).to_string(),
            vec![],
            vec!["line 1", "`version`", "version 2"],
        ),
        (
            "a line that is not an object",
            format!("{good}\n[1, 2]"),
            vec![],
            vec!["line 2", "JSON object"],
        ),
    ];
    for (what, text, extra, needles) in cases {
        let file = dir.path().join("bad.jsonl");
        std::fs::write(&file, text + "\n").unwrap();
        let out = dir.path().join("out");
        let mut args: Vec<&OsStr> = vec!["import".as_ref(), file.as_os_str()];
        if !extra.contains(&"--no-tokenizer") {
            args.extend(["--tokenizer".as_ref(), tokenizer.as_os_str()]);
        }
        args.extend(["--out".as_ref(), out.as_os_str()]);
        let (code, err) = run(&args);
        assert_eq!(code, 2, "{what}: {err}");
        for n in needles {
            assert!(err.contains(n), "{what}: `{n}` not in: {err}");
        }
        assert!(err.contains("bad.jsonl"), "{what}: {err}");
        assert!(!out.exists(), "{what}: output left behind");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

/// A spec gates trajectories decoded elsewhere: `[[schedule]] trajectories = ...` is imported,
/// analysed and checked like a decoded schedule, and files that declare their tokens per step
/// form a sweep the trade-off figure draws.
#[test]
fn a_spec_gates_imported_trajectories() {
    let dir = tempfile::tempdir().unwrap();
    let model = root().join("fixtures/text-llada");
    let prompts = root().join("probes/prompts/kjv.txt");
    for (steps, name) in [(16, "k2"), (8, "k4")] {
        let d = dir.path().join(format!("{name}-decode"));
        ok(&[
            "decode".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--prompts".as_ref(),
            prompts.as_os_str(),
            "--chat-template".as_ref(),
            "none".as_ref(),
            "--schedule".as_ref(),
            format!("llada:gen_length=32,steps={steps},block_length=32").as_ref(),
            "--out".as_ref(),
            d.as_os_str(),
        ]);
        ok(&[
            "export".as_ref(),
            d.as_os_str(),
            "--out".as_ref(),
            dir.path().join(format!("{name}.jsonl")).as_os_str(),
        ]);
    }
    let spec = dir.path().join("mine.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "mine"
[model]
path = "{model}"
dtype = "f32"
device = "cpu"
[prompts]
path = "{prompts}"
format = "text"
chat_template = "none"
[probe]
masks = 8
[report]
enabled = false
[[schedule]]
name = "mine-k2"
series = "mine"
trajectories = "k2.jsonl"
tokens_per_step = 2
[[schedule]]
name = "mine-k4"
series = "mine"
trajectories = "k4.jsonl"
tokens_per_step = 4
"#,
            model = model.display(),
            prompts = prompts.display()
        ),
    )
    .unwrap();
    let run_dir = dir.path().join("run");
    ok(&[
        "run".as_ref(),
        spec.as_os_str(),
        "--out".as_ref(),
        run_dir.as_os_str(),
    ]);
    let k2 = dir.path().join("k2-decode");
    assert_eq!(
        generations(&run_dir.join("decode/mine-k2")),
        generations(&k2)
    );
    let sweep: MetricsFile = cp_records::read_json(&run_dir.join("sweep/metrics.json")).unwrap();
    for v in [2, 4] {
        let m = sweep
            .get(&format!("trap.tokens_per_step@mine@tokens_per_step={v}"))
            .unwrap_or_else(|| panic!("no tokens_per_step at {v}"));
        assert_eq!(m.value, v as f64);
    }
    // The gate: a baseline from this run passes, one that wants a lower duplicate rate fails.
    let analysis: MetricsFile =
        cp_records::read_json(&run_dir.join("analysis/metrics.json")).unwrap();
    let dup = analysis
        .get("trap.adjacent_duplicate_rate@mine-k4")
        .expect("the imported schedule's metrics")
        .value;
    let baseline = |path: &Path, value: f64| {
        std::fs::write(
            path,
            format!(
                "schema_version = 1\n[[metric]]\nname = \"trap.adjacent_duplicate_rate@mine-k4\"\n\
                 value = {value}\nbetter = \"lower\"\ntolerance = {{ abs = 0.001 }}\n"
            ),
        )
        .unwrap();
    };
    let pass = dir.path().join("pass.toml");
    baseline(&pass, dup);
    ok(&[
        "check".as_ref(),
        "--run".as_ref(),
        run_dir.as_os_str(),
        "--baseline".as_ref(),
        pass.as_os_str(),
    ]);
    let fail = dir.path().join("fail.toml");
    baseline(&fail, dup / 2.0);
    let (code, err) = run(&[
        "check".as_ref(),
        "--run".as_ref(),
        run_dir.as_os_str(),
        "--baseline".as_ref(),
        fail.as_os_str(),
    ]);
    assert_eq!(code, 1, "{err}");
}
