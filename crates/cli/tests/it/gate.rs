//! `collapse-probe check` (the CI gate) and `collapse-probe run`, through the built binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_collapse-probe"));
    // CI sets these; the tests choose for themselves.
    cmd.env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY");
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the binary and returns (exit code, stdout, stderr).
fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the binary runs");
    (status.code().expect("exited"), text(&stdout), text(&stderr))
}

/// A metrics.json with these (name, value, better, stderr) metrics.
fn write_metrics(dir: &Path, metrics: &[(&str, f64, &str, Option<f64>)]) -> PathBuf {
    let metrics: Vec<serde_json::Value> = metrics
        .iter()
        .map(|(name, value, better, stderr)| {
            serde_json::json!({"name": name, "value": value, "unit": "fraction", "better": better, "stderr": stderr, "n": 64})
        })
        .collect();
    let path = dir.join("metrics.json");
    let file =
        serde_json::json!({"schema_version": 1, "sources": ["decode/x"], "metrics": metrics});
    std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    path
}

const BASELINE: &str = r#"schema_version = 1

[[metric]]
name = "trap.unseen_2gram_rate"
value = 0.05
better = "lower"
tolerance = { abs = 0.1 }

[[metric]]
name = "trap.distinct_2"
value = 0.5
better = "higher"
tolerance = { rel = 0.1 }
"#;

fn check_cmd(run_dir: &Path, baseline: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("check")
        .arg("--run")
        .arg(run_dir)
        .arg("--baseline")
        .arg(baseline);
    cmd
}

#[test]
fn check_passes_within_tolerance_and_fails_beyond_it() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.toml");
    std::fs::write(&baseline, BASELINE).unwrap();

    write_metrics(
        dir.path(),
        &[
            ("trap.unseen_2gram_rate", 0.15, "lower", None),
            ("trap.distinct_2", 0.45, "higher", None),
        ],
    );
    let (code, out, err) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("metric "), "{out}");
    assert!(out.contains("2 metrics within tolerance"), "{out}");

    write_metrics(
        dir.path(),
        &[
            ("trap.unseen_2gram_rate", 0.16, "lower", None),
            ("trap.distinct_2", 0.45, "higher", None),
        ],
    );
    let (code, out, err) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 1, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("trap.unseen_2gram_rate"))
        .unwrap();
    assert!(
        row.ends_with("REGRESSED") && row.contains("+0.1100"),
        "{out}"
    );
    assert!(out.contains("1 of 2 metrics regressed"), "{out}");
}

#[test]
fn check_writes_summary_annotations_and_junit() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.toml");
    std::fs::write(&baseline, BASELINE).unwrap();
    write_metrics(
        dir.path(),
        &[
            ("trap.unseen_2gram_rate", 0.75, "lower", None),
            ("trap.distinct_2", 0.5, "higher", None),
        ],
    );
    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "earlier step\n").unwrap();
    let junit = dir.path().join("reports/junit.xml");
    std::fs::create_dir_all(junit.parent().unwrap()).unwrap();

    let (code, out, err) = run(check_cmd(dir.path(), &baseline)
        .arg("--junit")
        .arg(&junit)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code, 1, "{out}{err}");
    let annotation = out
        .lines()
        .find(|l| l.starts_with("::error "))
        .expect("an annotation");
    assert!(
        annotation
            .contains(",line=3,title=collapse-probe check%3A trap.unseen_2gram_rate regressed::"),
        "{annotation}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("::error ")).count(), 1);

    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("earlier step\n### :x: collapse-probe check: 1 of 2 metrics regressed"),
        "appended: {md}"
    );

    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert_eq!(xml.matches("<failure ").count(), 1, "{xml}");
}

#[test]
fn bad_input_exits_2_naming_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.toml");
    std::fs::write(&baseline, BASELINE).unwrap();

    // A baseline metric the run lacks.
    write_metrics(
        dir.path(),
        &[("trap.unseen_2gram_rate", 0.05, "lower", None)],
    );
    let (code, _, err) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("`trap.distinct_2`") && err.contains("missing from the run"),
        "{err}"
    );

    // A misspelt key, a wrong type.
    write_metrics(
        dir.path(),
        &[
            ("trap.unseen_2gram_rate", 0.05, "lower", None),
            ("trap.distinct_2", 0.5, "higher", None),
        ],
    );
    std::fs::write(
        &baseline,
        BASELINE.replace("tolerance = { rel", "tolerence = { rel"),
    )
    .unwrap();
    let (code, _, err) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("baseline.toml:13:1") && err.contains("unknown field `tolerence`"),
        "{err}"
    );
    std::fs::write(
        &baseline,
        BASELINE.replace("value = 0.5", "value = \"high\""),
    )
    .unwrap();
    let (code, _, err) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("baseline.toml:11:9") && err.contains("value = \"high\""),
        "{err}"
    );

    // No metrics at all.
    let empty = tempfile::tempdir().unwrap();
    let (code, _, err) = run(&mut check_cmd(empty.path(), &baseline));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("analysis/metrics.json"), "{err}");
}

#[test]
fn update_baseline_rewrites_values_keeps_tolerances_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.toml");
    std::fs::write(&baseline, BASELINE).unwrap();
    write_metrics(
        dir.path(),
        &[
            ("trap.unseen_2gram_rate", 0.75, "lower", Some(0.05)),
            ("trap.distinct_2", 0.25, "higher", None),
            ("extra", 1.0, "neither", None),
        ],
    );
    let (code, out, err) = run(check_cmd(dir.path(), &baseline).arg("--update-baseline"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("updated baseline") && out.contains("rewrote the values of 2 metrics"),
        "{out}"
    );
    assert!(
        out.contains("1 run metrics not in the baseline were not added"),
        "{out}"
    );
    let text = std::fs::read_to_string(&baseline).unwrap();
    assert!(
        text.contains("value = 0.75\nbetter = \"lower\"\ntolerance = { abs = 0.1 }\nstderr = 0.05"),
        "{text}"
    );
    assert!(
        text.contains("value = 0.25\nbetter = \"higher\"\ntolerance = { rel = 0.1 }"),
        "{text}"
    );
    // The rewritten baseline passes its own run.
    let (code, out, _) = run(&mut check_cmd(dir.path(), &baseline));
    assert_eq!(code, 0, "{out}");

    // A baseline that does not exist yet is created from every metric of the run.
    let fresh = dir.path().join("new/baseline.toml");
    let (code, out, err) = run(check_cmd(dir.path(), &fresh).arg("--update-baseline"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("created baseline") && out.contains("all 3 metrics"),
        "{out}"
    );
    let (code, out, _) = run(&mut check_cmd(dir.path(), &fresh));
    assert_eq!(code, 0, "{out}");
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Writes a variant of probes/toy-trap.toml into `dir`, its relative paths made absolute so that
/// they still name the workspace's fixture, prompts and corpus.
pub fn write_toy_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let root = workspace();
    let probes = root.join("probes");
    let text = text
        .replace("\"../fixtures/", &format!("\"{}/fixtures/", root.display()))
        .replace("\"prompts/", &format!("\"{}/prompts/", probes.display()))
        .replace("\"corpora/", &format!("\"{}/corpora/", probes.display()));
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `collapse-probe run SPEC --out DIR --quiet`, asserting success.
fn run_spec(spec: &Path, out: &Path) {
    let (code, stdout, stderr) = run(bin()
        .arg("run")
        .arg(spec)
        .arg("--out")
        .arg(out)
        .arg("--quiet"));
    assert_eq!(code, 0, "run {}:\n{stdout}\n{stderr}", spec.display());
}

/// The regression the gate exists for: on the toy fixture, committing all three words in one step
/// (the marginal trap) must fail against the baseline of one word per step, which must pass.
#[test]
fn gate_catches_the_marginal_trap_on_the_toy_fixture() {
    let root = workspace();
    assert!(
        root.join("fixtures/toy-trap/model.safetensors").is_file(),
        "fixtures/toy-trap is missing; build it with `cargo run -p cp-fixtures --bin build-fixtures -- toy-trap --out fixtures/toy-trap`"
    );
    let spec = root.join("probes/toy-trap.toml");
    let baseline = root.join("probes/baselines/toy-trap.toml");
    let dir = tempfile::tempdir().unwrap();

    let good = dir.path().join("one-per-step");
    run_spec(&spec, &good);
    let (code, out, err) = run(&mut check_cmd(&good, &baseline));
    assert_eq!(
        code, 0,
        "one word per step must pass its own baseline:\n{out}{err}"
    );

    // The same spec with the schedule committing every word at once. The schedule keeps its name,
    // so the metric names match the baseline's; paths are made absolute for the copy's new folder.
    let one_per_step = "spec = \"fixed:gen_length=3,k=1,temperature=1\"";
    let text = std::fs::read_to_string(&spec).unwrap();
    assert!(
        text.contains(one_per_step),
        "probes/toy-trap.toml changed its schedule; update this test"
    );
    let trap = text.replace(
        one_per_step,
        "spec = \"fixed:gen_length=3,k=all,temperature=1\"",
    );
    let trap_spec = write_toy_spec(dir.path(), "toy-trap.toml", &trap);
    let bad = dir.path().join("all-at-once");
    run_spec(&trap_spec, &bad);
    let (code, out, err) = run(&mut check_cmd(&bad, &baseline));
    assert_eq!(
        code, 1,
        "committing every word at once must regress:\n{out}{err}"
    );
    let regressed: Vec<&str> = out.lines().filter(|l| l.ends_with("REGRESSED")).collect();
    assert!(
        regressed
            .iter()
            .any(|l| l.starts_with("trap.unseen_2gram_rate ")),
        "the unseen bigram rate must be among the regressions:\n{out}"
    );
}

/// `run` writes every stage of the toy spec under one folder, with a manifest naming them,
/// the sweep's metrics against the swept value, and a report with the trade-off figures.
#[test]
fn run_writes_every_stage_and_the_sweep_under_one_folder() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("toy");
    let (code, stdout, stderr) = run(bin()
        .arg("run")
        .arg(root.join("probes/toy-trap.toml"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        out.display().to_string(),
        "stdout names the run folder"
    );
    for stage in [
        "[1/6] index",
        "[2/6] probe",
        "[3/6] decode `one-per-step`",
        "[4/6] analyze",
        "[5/6] sweep `tokens_per_step`",
        "[6/6] report",
    ] {
        assert!(stderr.contains(stage), "`{stage}` not announced:\n{stderr}");
    }
    for file in [
        "manifest.json",
        "index/index.json",
        "probe/records.parquet",
        "decode/one-per-step/steps.parquet",
        "decode/one-per-step/generations.parquet",
        "analysis/metrics.json",
        "sweep/tokens_per_step=1/decode/one-per-step/steps.parquet",
        "sweep/tokens_per_step=3/analysis/metrics.json",
        "sweep/metrics.json",
        "sweep/curves.parquet",
        "report/report.html",
        "report/figures/tradeoff_double.svg",
        "report/figures/sweep_double.svg",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "run");
    assert_eq!(manifest["seed"], 0);
    let stages = &manifest["params"]["stages"];
    assert_eq!(stages["decode"]["one-per-step"], "decode/one-per-step");
    assert_eq!(
        stages["sweep"]["values"],
        serde_json::json!([1.0, 2.0, 3.0])
    );
    assert_eq!(
        manifest["params"]["spec_sha256"].as_str().unwrap().len(),
        64
    );

    // The sweep: one word per step stays in the training set, all three at once leaves it about
    // as often as the marginals predict (0.739 for trigrams; the toy's README and fixture test).
    let sweep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep/metrics.json")).unwrap())
            .unwrap();
    let value = |name: &str| {
        sweep["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("{name}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(value("trap.unseen_3gram_rate@tokens_per_step=1") < 0.05);
    let all_at_once = value("trap.unseen_3gram_rate@tokens_per_step=3");
    assert!((0.55..0.9).contains(&all_at_once), "{all_at_once}");
    assert_eq!(value("trap.tokens_per_step@tokens_per_step=3"), 3.0);

    // `check` gates sweep metrics of a run folder as well as its analysis.
    let baseline = dir.path().join("sweep-baseline.toml");
    std::fs::write(
        &baseline,
        "schema_version = 1\n[[metric]]\nname = \"trap.unseen_3gram_rate@tokens_per_step=1\"\nvalue = 0.0\nbetter = \"lower\"\ntolerance = { abs = 0.05 }\n",
    )
    .unwrap();
    let (code, o, err) = run(&mut check_cmd(&out, &baseline));
    assert_eq!(code, 0, "{o}{err}");

    // Rerunning into the same folder with other sweep values leaves nothing of the first sweep.
    let text = std::fs::read_to_string(root.join("probes/toy-trap.toml"))
        .unwrap()
        .replace("values = [1, 2, 3]", "values = [1, 3]");
    let spec = write_toy_spec(dir.path(), "rerun.toml", &text);
    let (code, o, err) = run(bin()
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--quiet"));
    assert_eq!(code, 0, "{o}{err}");
    assert!(
        out.join("sweep/tokens_per_step=3").is_dir()
            && !out.join("sweep/tokens_per_step=2").exists()
    );
}

/// A malformed spec fails before any work, exit 2, naming the file, line and key; nothing is written.
#[test]
fn run_rejects_a_bad_spec_naming_the_key() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root.join("probes/toy-trap.toml")).unwrap();
    let cases = [
        (
            text.replace("masks = 3", "maks = 3"),
            vec!["bad-0.toml:", "unknown field `maks`"],
        ),
        (
            text.replace("masks = 3", "masks = \"3\""),
            vec!["bad-1.toml:", "masks = \"3\""],
        ),
        (
            text.replace("values = [1, 2, 3]", "values = [1, 2.5]"),
            vec!["`sweep.values[1]`"],
        ),
        (
            text.replace("k=1,temperature=1", "k=1,temprature=1"),
            vec!["schedule `one-per-step`", "temprature"],
        ),
        (
            text.replace("\"../fixtures/toy-trap\"", "\"../fixtures/nope\""),
            vec!["`model.path`", "nope"],
        ),
    ];
    for (i, (spec, needles)) in cases.iter().enumerate() {
        let path = write_toy_spec(dir.path(), &format!("bad-{i}.toml"), spec);
        let out = dir.path().join(format!("run{i}"));
        let (code, _, err) = run(bin().arg("run").arg(&path).arg("--out").arg(&out));
        assert_eq!(code, 2, "case {i}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "case {i}: `{needle}` not in: {err}");
        }
        assert!(
            !out.exists(),
            "case {i}: a failed spec must not create the run folder"
        );
    }
}

/// The shipped spec for LLaDA-8B-Instruct: its schedules and settings are valid, and without the
/// user's download the run stops before any work, naming `model.path` and nothing else.
#[test]
fn the_llada_8b_spec_is_valid_and_names_the_missing_model() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let (code, _, err) = run(bin()
        .arg("run")
        .arg(root.join("probes/llada-8b-instruct-lima.toml"))
        .arg("--out")
        .arg(&out));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("these paths do not exist: `model.path` = ")
            && err.contains("LLaDA-8B-Instruct"),
        "{err}"
    );
    assert_eq!(
        err.matches("` = ").count(),
        1,
        "only the model is missing: {err}"
    );
    assert!(!out.exists());
}
