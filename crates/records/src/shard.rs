//! Shards: one process's deterministic part of a run's prompts, and how the parts are named on
//! disk so that `analyze` can merge them and Parquet readers scan them as one dataset.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

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
