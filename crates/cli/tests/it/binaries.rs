//! The two binaries: `collapse-probe` runs the model-free subcommands without libtorch and hands
//! every other command line to `collapse-probe-model`.

use std::path::Path;
use std::process::Command;

const FRONT: &str = env!("CARGO_BIN_EXE_collapse-probe");
const MODEL: &str = env!("CARGO_BIN_EXE_collapse-probe-model");

/// Whether the binary names libtorch among the libraries it needs (the name sits in its
/// dynamic string table when it does).
fn names_libtorch(binary: &str) -> bool {
    let bytes = std::fs::read(binary).unwrap();
    bytes.windows(15).any(|w| w == b"libtorch_cpu.so")
}

#[test]
fn only_the_model_binary_links_libtorch() {
    assert!(!names_libtorch(FRONT), "{FRONT} links libtorch");
    assert!(names_libtorch(MODEL), "{MODEL} should link libtorch");
}

fn output(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(FRONT).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.code().unwrap(), text(&o.stdout), text(&o.stderr))
}

#[test]
fn every_subcommand_answers_through_collapse_probe() {
    // The top-level help is the model binary's and lists every subcommand, under the name
    // users type.
    let (code, help, _) = output(&["--help"]);
    assert_eq!(code, 0);
    assert!(
        help.contains("Usage: collapse-probe [OPTIONS] <COMMAND>"),
        "{help}"
    );
    for name in [
        "probe", "corrupt", "decode", "import", "run", "export", "index", "analyze", "report",
        "check",
    ] {
        assert!(
            help.contains(&format!("\n  {name} ")),
            "{name} missing from\n{help}"
        );
        let (code, sub, _) = output(&["--threads", "1", name, "--help"]);
        assert_eq!(code, 0, "{name} --help");
        assert!(
            sub.contains(&format!("Usage: collapse-probe {name}")),
            "{sub}"
        );
    }
    // Usage errors keep their exit code 2 on both sides of the hand-over.
    for args in [
        &["probe", "--bogus"][..],
        &["analyze", "--bogus"],
        &["nonsense"],
        &[],
    ] {
        let (code, _, err) = output(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("collapse-probe"), "{args:?}: {err}");
    }
    let (code, version, _) = output(&["--version"]);
    let expected = format!("collapse-probe {}", env!("CARGO_PKG_VERSION"));
    assert_eq!((code, version.trim()), (0, expected.as_str()));
}

#[test]
fn a_missing_model_binary_is_named() {
    // A copy of `collapse-probe` alone: the model-free subcommands still run, the others say
    // what is missing.
    let dir = tempfile::tempdir().unwrap();
    let alone = dir.path().join("collapse-probe");
    std::fs::copy(FRONT, &alone).unwrap();
    let o = Command::new(&alone)
        .args(["check", "--help"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let o = Command::new(&alone)
        .args(["probe", "--help"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    let expected = Path::new(dir.path()).join("collapse-probe-model");
    assert!(err.contains(&expected.display().to_string()), "{err}");
}
