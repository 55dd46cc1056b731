//! `--shard i/n`: three shard processes side by side, merged by `analyze`, give the metrics of
//! the unsharded run; incomplete or mixed shard folders and bad `--shard` values exit 2 naming
//! what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn command(args: &[String]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_collapse-probe"));
    c.args(args).args(["--quiet", "--threads", "1"]);
    c
}

fn run(args: &[String]) -> Output {
    command(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `probe`, `decode` or `corrupt` on the KJV fixture's 16 prompts, in batches of 3 (six
/// batches); `corrupt` reads the index `index`.
fn stage(kind: &str, out: &Path, seed: &str) -> Vec<String> {
    stage_with_index(kind, out, seed, Path::new(""))
}

fn stage_with_index(kind: &str, out: &Path, seed: &str, index: &Path) -> Vec<String> {
    let model = root().join("fixtures/text-llada");
    let prompts = root().join("probes/prompts/kjv.txt");
    let texts_flag = if kind == "corrupt" {
        "--texts"
    } else {
        "--prompts"
    };
    let mut args = strings(&[
        kind,
        "--model",
        model.to_str().unwrap(),
        texts_flag,
        prompts.to_str().unwrap(),
        "--chat-template",
        "none",
        "--batch-size",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    match kind {
        "probe" => args.extend(strings(&["--masks", "24"])),
        "corrupt" => args.extend(strings(&[
            "--index",
            index.to_str().unwrap(),
            "--ratios",
            "0.2,0.6",
            "--samples",
            "2",
            "--seed",
            seed,
        ])),
        // Random positions: the shards must seed each batch as the whole run does.
        _ => args.extend(strings(&[
            "--schedule",
            "fixed:gen_length=12,k=4,order=random",
            "--seed",
            seed,
        ])),
    }
    args
}

fn analyze(records: &Path, index: &Path, out: &Path) -> Output {
    run(&strings(&[
        "analyze",
        "--records",
        records.to_str().unwrap(),
        "--index",
        index.to_str().unwrap(),
        "--bootstrap",
        "50",
        "--out",
        out.to_str().unwrap(),
    ]))
}

fn metrics(analysis: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(analysis.join("metrics.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["metrics"].clone()
}

#[test]
fn three_shards_side_by_side_merge_into_the_unsharded_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let index = super::corrupt::kjv_index(tmp.path());
    for kind in ["probe", "decode", "corrupt"] {
        let whole = tmp.path().join(format!("{kind}-whole"));
        let o = run(&stage_with_index(kind, &whole, "7", &index));
        assert!(o.status.success(), "{}", stderr(&o));
        let sharded = tmp.path().join(format!("{kind}-sharded"));
        let children: Vec<Child> = (0..3)
            .map(|i| {
                let mut args = stage_with_index(kind, &sharded, "7", &index);
                args.extend(strings(&["--shard", &format!("{i}/3")]));
                command(&args).spawn().unwrap()
            })
            .collect();
        for child in children {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
        for i in 0..3 {
            assert!(sharded.join(format!("shard={i}/manifest.json")).is_file());
        }
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        let o = analyze(&whole, &index, &a);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = analyze(&sharded, &index, &b);
        assert!(o.status.success(), "{}", stderr(&o));
        let (whole_metrics, merged) = (metrics(&a), metrics(&b));
        assert!(whole_metrics.as_array().unwrap().len() > 10);
        assert_eq!(
            whole_metrics, merged,
            "{kind}: merged shards differ from the whole run"
        );
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();

        if kind == "decode" {
            // A shard of another seed is another run.
            let mut args = stage(kind, &sharded, "8");
            args.extend(strings(&["--shard", "1/3"]));
            assert!(run(&args).status.success());
            let o = analyze(&sharded, &index, &a);
            assert_eq!(o.status.code(), Some(2));
            assert!(stderr(&o).contains("differ in `seed`"), "{}", stderr(&o));
            assert!(!a.exists());
            // A missing shard.
            std::fs::remove_dir_all(sharded.join("shard=1")).unwrap();
            let o = analyze(&sharded, &index, &a);
            assert_eq!(o.status.code(), Some(2));
            assert!(
                stderr(&o).contains("missing shard(s) 1 of 3"),
                "{}",
                stderr(&o)
            );
            // The same shard twice.
            copy_dir(&sharded.join("shard=2"), &sharded.join("shard=5"));
            let o = analyze(&sharded, &index, &a);
            assert_eq!(o.status.code(), Some(2));
            assert!(
                stderr(&o).contains("shard 2 of 3 is there twice"),
                "{}",
                stderr(&o)
            );
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_shard_values_exit_2_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    for (value, says) in [
        ("3/3", "out of range"),
        ("1/0", "at least 1"),
        ("one/2", "not a whole number"),
    ] {
        let mut args = stage("probe", &out, "0");
        args.extend(strings(&["--shard", value]));
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{value}");
        assert!(
            stderr(&o).contains("--shard") && stderr(&o).contains(says),
            "{value}: {}",
            stderr(&o)
        );
    }
    // `auto` outside a job array says which variables it reads.
    let mut args = stage("probe", &out, "0");
    args.extend(strings(&["--shard", "auto"]));
    let o = command(&args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", stderr(&o));
    // From a Slurm array's variables.
    let o = command(&args)
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.join("shard=1/records.parquet").is_file());
    assert!(!out.exists() || !out.join("shard=0").exists());
}

#[test]
fn run_shards_side_by_side_merge_into_the_unsharded_run() {
    // The KJV spec: index, probe, two schedules, the corruption probe and a sweep of tokens per
    // step. Two shards side by side, then the merge, against one whole run.
    let tmp = tempfile::tempdir().unwrap();
    let spec = root().join("probes/text-llada.toml");
    let run_spec = |out: &Path, extra: &[&str]| {
        let mut args = strings(&[
            "run",
            spec.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        args.extend(strings(extra));
        command(&args)
    };
    let whole = tmp.path().join("whole");
    let o = run_spec(&whole, &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let sharded = tmp.path().join("sharded");
    let children: Vec<Child> = (0..2)
        .map(|i| {
            run_spec(&sharded, &["--shard", &format!("{i}/2")])
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert!(sharded
        .join("decode/fixed-all/shard=1/manifest.json")
        .is_file());
    assert!(!sharded.join("analysis").exists(), "a shard analysed");
    let o = run_spec(&sharded, &["--merge"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["analysis/metrics.json", "sweep/metrics.json"] {
        let (a, b) = (whole.join(file), sharded.join(file));
        let read = |p: &Path| {
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()
                ["metrics"]
                .clone()
        };
        assert_eq!(read(&a), read(&b), "{file}");
    }
    assert!(sharded.join("report/report.html").is_file());
    // A merge without shards says what to run first and writes nothing.
    let empty = tmp.path().join("empty");
    let o = run_spec(&empty, &["--merge"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("holds no shard folders"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(&empty).map_or(0, |d| d.count()), 0);
    // A missing shard is named.
    std::fs::remove_dir_all(sharded.join("probe/shard=1")).unwrap();
    let o = run_spec(&sharded, &["--merge"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("missing shard(s) 1 of 2"),
        "{}",
        stderr(&o)
    );
    // --shard and --merge exclude each other.
    let o = run_spec(&sharded, &["--merge", "--shard", "0/2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}
