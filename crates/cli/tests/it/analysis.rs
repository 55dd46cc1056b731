//! The analysis on the trained KJV fixture, end to end through the binary: the frequency collapse
//! the fixture was built to show must come out of `index build` + `probe` + `analyze`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn metric(file: &serde_json::Value, name: &str) -> f64 {
    file["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("metric {name} missing"))["value"]
        .as_f64()
        .unwrap()
}

/// Entropy rises with distance from the prompt and the far-field top-3 predictions are the corpus's
/// 20 most frequent tokens: `build-fixtures measure` recorded a share of 1.000 far from the prompt and
/// entropy rising from about 4 nats at distance 1 to about 5.8 (fixtures/text-llada/training.json).
#[test]
fn text_fixture_entropy_rises_and_far_predictions_are_frequent_tokens() {
    let root = workspace();
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("collapse.toml");
    std::fs::write(
        &spec,
        format!(
            r#"
[model]
path = "{root}/fixtures/text-llada"
dtype = "f32"
device = "cpu"

[prompts]
path = "{root}/probes/prompts/kjv.txt"
chat_template = "none"

[probe]
masks = 64
top_k = 3
batch_size = 16

[reference]
corpus = "{root}/fixtures/text-llada/corpus.txt"

[metrics]
top_frequent = 20

[report]
enabled = false
"#,
            root = root.display()
        ),
    )
    .unwrap();
    let out = dir.path().join("run");
    let o = Command::new(env!("CARGO_BIN_EXE_collapse-probe"))
        .arg("run")
        .arg(&spec)
        .arg("--out")
        .arg(&out)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis/metrics.json")).unwrap())
            .unwrap();

    let (near, far) = (
        metric(&metrics, "collapse.entropy.near"),
        metric(&metrics, "collapse.entropy.far"),
    );
    assert!(
        far > near + 0.1,
        "entropy must rise with distance: near {near}, far {far}"
    );
    let share_far = metric(&metrics, "collapse.frequent_share.far");
    assert!(
        share_far >= 0.95,
        "far top-3 frequent share {share_far}, recorded 1.000"
    );
    assert!(
        metric(&metrics, "collapse.kl_unigram.far") < metric(&metrics, "collapse.kl_unigram.near"),
        "far positions approach the unigram"
    );

    // The analysis writes its curves and the per-prompt table beside the metrics, and lists them.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("analysis/manifest.json")).unwrap())
            .unwrap();
    for file in ["curves.parquet", "per_prompt.parquet"] {
        assert!(out.join("analysis").join(file).is_file(), "{file} missing");
        assert!(
            manifest["files"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == file),
            "{file} not in the manifest"
        );
    }
}
