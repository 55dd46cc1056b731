//! Integration tests of cp-gate: the specs shipped under probes/ load and point at real files.

use std::path::{Path, PathBuf};

use cp_gate::{ScheduleSource, Spec};

fn probes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../probes")
}

fn load(name: &str) -> Spec {
    Spec::load(&probes().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn shipped_specs_load() {
    let mut names: Vec<String> = std::fs::read_dir(probes())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let spec = load(name);
        assert_eq!(
            format!("{}.toml", spec.name),
            *name,
            "a spec's name is its file name"
        );
    }
}

#[test]
fn paper_spec_is_the_papers_setting() {
    let s = load("llada-8b-instruct-lima.toml");
    assert_eq!((s.probe.masks, s.probe.top_k), (128, 3));
    assert_eq!(s.prompts.format.as_deref(), Some("lima"));
    assert_eq!(s.schedules.len(), 3);
    // Everything but the (downloaded) model ships with the repository.
    let missing: Vec<String> = s.missing_paths().into_iter().map(|(k, _)| k).collect();
    assert_eq!(missing, vec!["model.path"]);
    for sched in &s.schedules {
        assert!(
            matches!(sched.source(), ScheduleSource::File(f) if f.is_file()),
            "{}",
            sched.name
        );
    }
}

#[test]
fn lima_sample_is_in_limas_format() {
    let text = std::fs::read_to_string(probes().join("prompts/lima-sample.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let turns = row["conversations"].as_array().expect("conversations");
        assert_eq!(turns.len(), 2, "a prompt and its answer");
        assert!(turns
            .iter()
            .all(|t| t.as_str().is_some_and(|s| !s.is_empty())));
    }
}

#[test]
fn toy_spec_fits_the_toy_model() {
    let s = load("toy-trap.toml");
    // The toy's context is 4 tokens: the one-token prompt and three words.
    assert_eq!(s.probe.masks, 3);
    let prompts = std::fs::read_to_string(&s.prompts.path).unwrap();
    assert_eq!(prompts.lines().count(), 64);
    assert!(prompts.lines().all(|l| l.contains("\"input_ids\": [6]")));
    assert!(s
        .reference
        .as_ref()
        .and_then(|r| r.corpus.as_ref())
        .is_some_and(|c| c.is_file()));
}
