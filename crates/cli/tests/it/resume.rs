//! A decode killed with SIGKILL mid-run and started again with the same command continues from
//! its last completed batch and writes the same bytes as an uninterrupted run; `--restart` and a
//! changed command are handled as documented.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A decode of the KJV fixture's 16 prompts, one per batch (16 batches), random positions.
fn decode(out: &Path, seed: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_collapse-probe"));
    c.args([
        "decode",
        "--model",
        root().join("fixtures/text-llada").to_str().unwrap(),
        "--prompts",
        root().join("probes/prompts/kjv.txt").to_str().unwrap(),
        "--chat-template",
        "none",
        "--schedule",
        "fixed:gen_length=48,k=1,order=random,temperature=1",
        "--batch-size",
        "1",
        "--seed",
        seed,
        "--threads",
        "1",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_killed_decode_resumes_from_its_last_batch_and_writes_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    let o = decode(&whole, "3").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));

    let out = tmp.path().join("killed");
    let kept = tmp.path().join(".killed.resume");
    let mut child = decode(&out, "3").spawn().unwrap();
    // Kill it once two batches are kept, long before its sixteenth.
    let start = Instant::now();
    while !kept.join("batch-000001").is_dir() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no batch was kept"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!out.exists(), "a killed run left output");
    let done = std::fs::read_dir(&kept)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("batch-")
        })
        .count();
    assert!((2..16).contains(&done), "{done} batches kept");

    // Another command is refused, naming the setting and --restart.
    let o = decode(&out, "4").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`seed` differs") && stderr(&o).contains("--restart"),
        "{}",
        stderr(&o)
    );

    // The same command continues and writes what the uninterrupted run wrote.
    let o = decode(&out, "3").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for table in ["steps.parquet", "generations.parquet"] {
        assert_eq!(
            std::fs::read(whole.join(table)).unwrap(),
            std::fs::read(out.join(table)).unwrap(),
            "{table}"
        );
    }
    assert!(!kept.exists(), "the kept batches outlived the finished run");
    // Nothing else is left beside the output.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // --restart with another seed throws kept batches away instead of refusing.
    std::fs::create_dir_all(kept.join("batch-000000")).unwrap();
    std::fs::write(kept.join("command.json"), "{}").unwrap();
    let o = decode(&out, "4").arg("--restart").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!kept.exists());
}
