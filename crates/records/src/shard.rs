//! Shards: one process's deterministic part of a run's prompts, and how the parts are named on
//! disk so that `analyze` can merge them and Parquet readers scan them as one dataset.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{files, Error, Manifest};

/// Shard `index` of `count` (0-based), as `--shard index/count` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// What a sharded stage records in its manifest: which shard it is, and the part of the run's
/// batches and prompts it covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub count: usize,
    /// The prompts of the whole run.
    pub total_prompts: usize,
    /// The prompt indices this shard covered, ascending.
    pub prompts: Vec<usize>,
}

impl Shard {
    /// Reads `--shard`: `i/n`, or `auto` for the scheduler's array index and size
    /// (`SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`, or a Kubernetes Indexed Job's
    /// `JOB_COMPLETION_INDEX` and `JOB_COMPLETIONS`, which the job sets from its completions).
    pub fn parse_with_env(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Shard, String> {
        if text != "auto" {
            return text.parse();
        }
        let pairs = [
            ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
            ("JOB_COMPLETION_INDEX", "JOB_COMPLETIONS"),
        ];
        for (index_var, count_var) in pairs {
            let Some(index) = env(index_var) else {
                continue;
            };
            let count = env(count_var).ok_or_else(|| {
                format!("`auto`: {index_var} is set but {count_var} is not; set it to the number of shards")
            })?;
            return format!("{}/{}", index.trim(), count.trim())
                .parse()
                .map_err(|e| format!("`auto` from {index_var} and {count_var}: {e}"));
        }
        Err("`auto` needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm job array) or JOB_COMPLETION_INDEX and JOB_COMPLETIONS (a Kubernetes Indexed Job); give `--shard i/n` elsewhere".into())
    }

    /// The part of `0..total` items (batches) this shard takes: contiguous, sizes differing by
    /// at most one, every item in exactly one shard.
    pub fn range(&self, total: usize) -> Range<usize> {
        (self.index * total / self.count)..((self.index + 1) * total / self.count)
    }

    /// The shard's folder inside the run's output folder: `shard=i`, a Hive-style partition,
    /// so that `DIR/*/records.parquet` reads as one table with a `shard` column.
    pub fn folder_name(&self) -> String {
        format!("shard={}", self.index)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let (i, n) = text.split_once('/').ok_or_else(|| {
            format!("expected `i/n` (shard i of n, from 0) or `auto`, found `{text}`")
        })?;
        let parse = |s: &str, what: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{what} `{s}` in `{text}` is not a whole number"))
        };
        let (index, count) = (parse(i, "shard index")?, parse(n, "shard count")?);
        if count == 0 {
            return Err(format!("the shard count in `{text}` must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "shard index {index} is out of range for {count} shards (0 to {})",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The shard folders of `dir` in shard order, checked to form one whole run: every shard of
/// the same count present once, from the same kind of stage, model, prompts, seed and
/// settings. `None` when `dir` holds no `shard=*` folder.
pub fn shard_folders(dir: &Path) -> Result<Option<Vec<PathBuf>>, Error> {
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
    let bad = |message: String| Error::Invalid {
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
        let manifest: Manifest = crate::read_json(&manifest_path)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_every_item_once() {
        for total in [0, 1, 5, 16, 17] {
            for count in 1..=6 {
                let mut seen = Vec::new();
                for index in 0..count {
                    let r = Shard { index, count }.range(total);
                    assert!(r.len() <= total / count + 1);
                    seen.extend(r);
                }
                assert_eq!(seen, (0..total).collect::<Vec<_>>(), "{total} over {count}");
            }
        }
    }

    #[test]
    fn parses_explicit_and_scheduler_shards() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        for (bad, says) in [
            ("3/3", "out of range"),
            ("1/0", "at least 1"),
            ("x/2", "not a whole number"),
            ("2", "expected `i/n`"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let slurm = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("1".to_string()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
            _ => None,
        };
        assert_eq!(
            Shard::parse_with_env("auto", &slurm),
            Ok(Shard { index: 1, count: 4 })
        );
        let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "0".to_string());
        let e = Shard::parse_with_env("auto", &k8s).unwrap_err();
        assert!(e.contains("JOB_COMPLETIONS"), "{e}");
        let e = Shard::parse_with_env("auto", &|_| None).unwrap_err();
        assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
    }
}
