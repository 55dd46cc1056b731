//! Every parity trace, old and new, through `collapse-probe decode`: the official LLaDA and
//! Dream samplers (`decode_traces.json`) and the published 2025 samplers
//! (`schedule_traces.json`), on the tiny checkpoints, compared token for token and step for step.

use std::path::{Path, PathBuf};
use std::process::Command;

use cp_records::{read_table, Generation};
use serde_json::Value;

#[path = "../../../model/tests/it/trace_specs.rs"]
pub(crate) mod trace_specs;

use trace_specs::{ids, preset_spec_of, spec_of};

fn parity(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/parity")
        .join(dir)
}

/// Decodes the trace's prompt with `schedule` through the binary and compares the generated
/// ids, the number of steps and the step at which every position was committed with the
/// upstream history. Returns a description of the first difference.
fn check(model: &Path, trace: &Value, schedule: &str, seed: u64, tmp: &Path) -> Result<(), String> {
    let name = trace["name"].as_str().unwrap();
    let prompt = ids(&trace["prompt_ids"]);
    let history: Vec<Vec<i64>> = trace["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(ids)
        .collect();
    let mask = *history[0].last().unwrap();
    let prompts = tmp.join(format!("{name}.jsonl"));
    std::fs::write(
        &prompts,
        serde_json::json!({"id": name, "input_ids": prompt}).to_string() + "\n",
    )
    .unwrap();
    let out = tmp.join(name);
    let o = Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .args(["decode", "--quiet", "--format", "jsonl", "--model"])
        .arg(model)
        .arg("--prompts")
        .arg(&prompts)
        .args(["--schedule", schedule, "--seed", &seed.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    let g: Vec<Generation> = read_table(&out.join("generations.jsonl")).unwrap();
    let g = &g[0];
    let p = prompt.len();
    let upstream_gen: Vec<u32> = ids(&trace["output_ids"])[p..]
        .iter()
        .map(|&x| x as u32)
        .collect();
    if g.gen_ids != upstream_gen {
        return Err(format!(
            "gen_ids {:?}, upstream {upstream_gen:?}",
            g.gen_ids
        ));
    }
    if g.steps as usize + 1 != history.len() {
        return Err(format!("{} steps, upstream {}", g.steps, history.len() - 1));
    }
    // Upstream's commit step of each position: the step after which it first holds a token.
    let upstream_steps: Vec<i32> = (p..history[0].len())
        .map(|j| {
            history
                .iter()
                .position(|row| row[j] != mask)
                .map_or(-1, |k| k as i32 - 1)
        })
        .collect();
    if g.commit_step != upstream_steps {
        return Err(format!(
            "commit steps {:?}, upstream {upstream_steps:?}",
            g.commit_step
        ));
    }
    Ok(())
}

fn traces(dir: &str, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(parity(dir).join(file)).unwrap()).unwrap()
}

#[test]
fn official_sampler_traces_reproduce_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for dir in ["llada-tiny", "dream-tiny"] {
        let json = traces(dir, "decode_traces.json");
        let model = json["model"].as_str().unwrap();
        for t in json["traces"].as_array().unwrap() {
            let spec = spec_of(model, &t["params"]);
            let seed = t["params"]["rng_seed"].as_u64().unwrap_or(0);
            if let Err(e) = check(&parity(dir), t, &spec, seed, tmp.path()) {
                failures.push(format!("{dir}/{} ({spec}): {e}", t["name"]));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn published_sampler_traces_reproduce_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let json = traces("llada-tiny", "schedule_traces.json");
    let background = tmp.path().join("pc_background.json");
    std::fs::write(&background, json["pc_sampler_bg_freq"].to_string()).unwrap();
    let mut failures = Vec::new();
    let all = json["traces"].as_array().unwrap();
    assert_eq!(all.len(), 10);
    for t in all {
        let spec = preset_spec_of(&t["params"], &background);
        if let Err(e) = check(&parity("llada-tiny"), t, &spec, 0, tmp.path()) {
            failures.push(format!("{} ({spec}): {e}", t["name"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
