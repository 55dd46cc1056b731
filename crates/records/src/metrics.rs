//! What the analysis writes and the report and the CI gate read.

use serde::{Deserialize, Serialize};

/// Which direction of a metric is an improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    /// Larger values are better.
    Higher,
    /// Smaller values are better.
    Lower,
    /// Descriptive only; a gate compares it in both directions.
    Neither,
}

/// One named headline number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    /// Stable dotted name, e.g. `collapse.frequent_share.far` or `trap.unseen_2gram_rate`.
    pub name: String,
    pub value: f64,
    /// Unit of `value` (`nats`, `fraction`, `tokens`, `rank`, ...).
    pub unit: String,
    pub better: Better,
    /// Bootstrap standard error over prompts (seeded); absent where it is undefined.
    pub stderr: Option<f64>,
    /// Number of samples behind the value.
    pub n: u64,
}

/// `metrics.json` of an analysis folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsFile {
    pub schema_version: u32,
    /// The record folders analysed.
    pub sources: Vec<String>,
    pub metrics: Vec<Metric>,
}

impl MetricsFile {
    /// The metric with this name, if present.
    pub fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.name == name)
    }
}

/// One metric of one prompt (a probe prompt or a decoded generation), in long form: the
/// per-prompt values behind the headline metrics, for finding the prompts that collapse or trap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptMetric {
    /// The records folder's label (its folder name).
    pub source: String,
    /// Index of the prompt in the prompt file.
    pub prompt_index: u32,
    /// The headline metric's name without any `@label`, e.g. `collapse.entropy.far`.
    pub metric: String,
    pub value: f64,
    /// Rows (positions, n-grams, pairs) behind the value.
    pub n: u64,
}

/// One point of a curve, in long form: many curves share one table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Which curve, e.g. `entropy`, `frequent_share`, `kl_unigram`, `js_adjacent`, `unseen_rate`.
    pub curve: String,
    /// Which series within the curve (`all`, a run label, `n=2`, ...).
    pub series: String,
    /// The x coordinate (distance from the prompt, tokens per step, ...).
    pub x: f64,
    pub mean: f64,
    pub median: f64,
    pub q25: f64,
    pub q75: f64,
    pub n: u64,
}
