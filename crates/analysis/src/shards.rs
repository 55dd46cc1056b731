//! A folder of shard folders (`--shard i/n` of `probe` or `decode`, each in `DIR/shard=i/`)
//! read as the one records folder the unsharded run would have written.

use std::path::{Path, PathBuf};

use cp_records::{files, Manifest, ShardInfo};

use crate::error::{AnalysisError, Result};

/// The shard folders of `dir` in shard order, checked to form one whole run: every shard of
/// the same count present once, from the same kind of stage, model, prompts, seed and
/// settings. `None` when `dir` holds no `shard=*` folder.
pub fn shard_folders(dir: &Path) -> Result<Option<Vec<PathBuf>>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("shard="))
        })
        .collect();
    if found.is_empty() {
        return Ok(None);
    }
    found.sort();
    let bad = |message: String| AnalysisError::BadRecords {
        path: dir.to_owned(),
        message,
    };
    let mut shards: Vec<(PathBuf, Manifest, ShardInfo)> = Vec::new();
    for path in found {
        let manifest_path = path.join(files::MANIFEST_JSON);
        if !manifest_path.is_file() {
            return Err(bad(format!(
                "shard folder {} has no manifest.json (an unfinished shard?)",
                path.display()
            )));
        }
        let manifest: Manifest = cp_records::read_json(&manifest_path)?;
        let Some(info) = manifest.shard.clone() else {
            return Err(bad(format!(
                "{} records no shard: it was not written with --shard",
                manifest_path.display()
            )));
        };
        shards.push((path, manifest, info));
    }
    let (first_path, first, first_info) = &shards[0];
    let count = first_info.count;
    let mut by_index: Vec<Option<&PathBuf>> = vec![None; count];
    for (path, manifest, info) in &shards {
        if info.count != count {
            return Err(bad(format!(
                "{} is shard {} of {}, but {} is of {count}: shards of different runs",
                path.display(),
                info.index,
                info.count,
                first_path.display()
            )));
        }
        if info.index >= count {
            return Err(bad(format!(
                "{} is shard {} of {count}, out of range",
                path.display(),
                info.index
            )));
        }
        if let Some(other) = by_index[info.index] {
            return Err(bad(format!(
                "shard {} of {count} is there twice: {} and {}",
                info.index,
                other.display(),
                path.display()
            )));
        }
        by_index[info.index] = Some(path);
        if let Some(field) = differing_field(first, manifest) {
            return Err(bad(format!(
                "{} and {} differ in `{field}`: shards of different runs",
                first_path.display(),
                path.display()
            )));
        }
        if info.total_prompts != first_info.total_prompts {
            return Err(bad(format!(
                "{} and {} split different prompt counts ({} and {})",
                first_path.display(),
                path.display(),
                first_info.total_prompts,
                info.total_prompts
            )));
        }
    }
    let missing: Vec<String> = (0..count)
        .filter(|&i| by_index[i].is_none())
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(bad(format!(
            "missing shard(s) {} of {count} (expected folders shard=0 to shard={})",
            missing.join(", "),
            count - 1
        )));
    }
    let mut ordered = Vec::with_capacity(count);
    for i in 0..count {
        let (path, _, _) = shards
            .iter()
            .find(|(_, _, info)| info.index == i)
            .expect("every index is present");
        ordered.push(path.clone());
    }
    Ok(Some(ordered))
}

/// The first manifest field in which two shards of one run may not differ, if any: the stage,
/// model, tokenizer, prompts, seed, end ids and settings (timings and thread counts aside).
fn differing_field(a: &Manifest, b: &Manifest) -> Option<&'static str> {
    if a.kind != b.kind {
        return Some("kind");
    }
    if a.seed != b.seed {
        return Some("seed");
    }
    if json(&a.model) != json(&b.model) {
        return Some("model");
    }
    if a.tokenizer != b.tokenizer {
        return Some("tokenizer");
    }
    if json(&a.prompts) != json(&b.prompts) {
        return Some("prompts");
    }
    if a.end_ids != b.end_ids {
        return Some("end_ids");
    }
    if settings(&a.params) != settings(&b.params) {
        return Some("params");
    }
    None
}

/// A value in its JSON form, for comparing fields whose types do not implement `PartialEq`.
fn json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// A stage's params without what may differ between shards of one run: timings, throughput
/// and thread counts.
fn settings(params: &serde_json::Value) -> serde_json::Value {
    let mut params = params.clone();
    if let Some(map) = params.as_object_mut() {
        map.retain(|k, _| !(k.ends_with("_seconds") || k == "tokens_per_second" || k == "threads"));
    }
    params
}
