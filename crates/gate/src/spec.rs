//! Probe specs: one TOML file naming everything `collapse-probe run` needs.
//!
//! Relative paths in a spec resolve against the folder of the spec file, so a spec and its prompt
//! files can be moved together. See `probes/toy-trap.toml` for a commented example.

use std::path::{Path, PathBuf};

use cp_records::{DTypeChoice, DocSplit, FigureFormat};
use serde::{Deserialize, Serialize};

use crate::error::{read_text, toml_error, GateError};
use crate::sweep::{SweepParam, SweepSpec};

/// A probe spec (`probes/*.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Name of the run; defaults to the spec file's stem.
    #[serde(default)]
    pub name: String,
    /// One line for people and for the report's title page.
    pub description: Option<String>,
    /// Seed of every random choice in every stage (sampling, bootstrap resampling).
    #[serde(default)]
    pub seed: u64,
    pub model: ModelSpec,
    pub prompts: PromptsSpec,
    #[serde(default)]
    pub probe: ProbeSpec,
    /// Decoding schedules to run, each in `DIR/decode/<name>`; none runs the probe only.
    #[serde(default, rename = "schedule")]
    pub schedules: Vec<ScheduleSection>,
    /// Reference corpus statistics (unigram frequencies, n-grams) for the metrics; optional.
    pub reference: Option<ReferenceSpec>,
    /// The corruption probe (information loss by token frequency and masking ratio); needs
    /// `[reference]`.
    pub corrupt: Option<CorruptSpec>,
    #[serde(default)]
    pub metrics: MetricsSpec,
    #[serde(default)]
    pub report: ReportSpec,
    /// At most one parameter swept over a list of values.
    pub sweep: Option<SweepSpec>,
    /// The file the spec was read from (set by [`Spec::load`]).
    #[serde(skip_deserializing)]
    pub path: PathBuf,
}

/// `[model]`: which checkpoint and how to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// A model folder (`config.json` + safetensors + tokenizer) or a TorchScript file.
    pub path: PathBuf,
    /// Weight and activation dtype; `auto` when absent.
    pub dtype: Option<DTypeChoice>,
    /// `cpu`, `cuda`, `cuda:N` or `auto`; the loader's default when absent.
    pub device: Option<String>,
    /// The mask id, where `config.json` names none (as `--mask-id`).
    pub mask_id: Option<u32>,
    /// LLaDA2.0's attention block length (as `--block-length`).
    pub block_length: Option<i64>,
    /// MDLM's diffusion time for time-conditioned checkpoints (as `--timestep`).
    pub timestep: Option<f64>,
}

/// `[prompts]`: the prompt file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsSpec {
    pub path: PathBuf,
    /// Force a format (`text`, `jsonl`, `alpaca`, `lima`, `chat`, `ids`) instead of detecting it.
    pub format: Option<String>,
    /// `auto` (the tokenizer's template), `none`, or a template file (resolved against the spec).
    pub chat_template: Option<String>,
    /// Whether plain-text prompts get the tokenizer's special tokens, as transformers'
    /// `tokenizer(text)` adds them (default `true`; `false` encodes them as written).
    pub special_tokens: Option<bool>,
    /// Use only the first N prompts.
    pub limit: Option<usize>,
}

/// `[probe]`: the single-forward-pass mask probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeSpec {
    /// Masks appended after each prompt.
    pub masks: u32,
    /// Predictions recorded per mask position.
    pub top_k: u32,
    /// Prompts per forward pass.
    pub batch_size: u32,
}

impl Default for ProbeSpec {
    /// The paper's setting: 128 masks, top-3.
    fn default() -> Self {
        ProbeSpec {
            masks: 128,
            top_k: 3,
            batch_size: 8,
        }
    }
}

/// One `[[schedule]]`: a named decoding schedule, given inline or as a file, or the
/// trajectories another program decoded (docs/trajectories.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// Folder name under `decode/`; letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// A schedule spec string as `collapse-probe decode --schedule` takes it.
    pub spec: Option<String>,
    /// A schedule file (`probes/schedules/*.toml`), resolved against the spec file.
    pub file: Option<PathBuf>,
    /// Trajectories decoded elsewhere (JSON Lines or Parquet), imported instead of decoded;
    /// resolved against the spec file.
    pub trajectories: Option<PathBuf>,
    /// The mask id of `trajectories`, where neither the file nor the model gives it.
    pub mask_id: Option<u32>,
    /// Whether `trajectories` may remask committed tokens (ReMDM-style samplers).
    pub allow_remasking: Option<bool>,
    /// The tokens per step the sampler of `trajectories` was run with: places it in a
    /// `tokens_per_step` sweep (and, without a `[sweep]`, in one made of the imported
    /// schedules), so that the trade-off figure draws it.
    pub tokens_per_step: Option<f64>,
    /// The line `trajectories` belong to in that sweep (default: `name`): the files of one
    /// sampler run at several tokens per step share it.
    pub series: Option<String>,
}

/// Where a schedule's definition comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleSource<'a> {
    Inline(&'a str),
    File(&'a Path),
    Trajectories(&'a Path),
}

impl ScheduleSection {
    /// The inline spec string, the schedule file or the trajectories (validated by
    /// [`Spec::load`] to be exactly one).
    pub fn source(&self) -> ScheduleSource<'_> {
        match (&self.spec, &self.file, &self.trajectories) {
            (Some(s), _, _) => ScheduleSource::Inline(s),
            (None, Some(f), _) => ScheduleSource::File(f),
            (None, None, Some(t)) => ScheduleSource::Trajectories(t),
            (None, None, None) => {
                unreachable!("Spec::load checks that a schedule has a spec, a file or trajectories")
            }
        }
    }

    /// The sweep line of imported trajectories that declare their tokens per step.
    pub fn series(&self) -> &str {
        self.series.as_deref().unwrap_or(&self.name)
    }
}

/// `[corrupt]`: `collapse-probe corrupt` over the spec's prompts as clean texts, once per
/// scheme, into `DIR/corrupt/<scheme>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorruptSpec {
    /// Clean texts in any prompt-file format (resolved against the spec file), encoded as the
    /// prompts are; the spec's prompts when absent.
    pub texts: Option<PathBuf>,
    /// Shares of each text's positions to mask, each in (0, 1).
    pub ratios: Vec<f64>,
    /// Masking draws per text and ratio.
    pub samples: u32,
    /// `uniform`, `rare-first`, `frequent-first`, `span`; one folder each.
    pub schemes: Vec<String>,
    /// Predictions recorded per masked position.
    pub top_k: u32,
}

impl Default for CorruptSpec {
    fn default() -> Self {
        CorruptSpec {
            texts: None,
            ratios: vec![0.1, 0.3, 0.5, 0.7, 0.9],
            samples: 4,
            schemes: vec!["uniform".into()],
            top_k: 5,
        }
    }
}

/// The schemes `[corrupt]` accepts (as `collapse-probe corrupt --scheme`).
pub const CORRUPT_SCHEMES: &[&str] = &["uniform", "rare-first", "frequent-first", "span"];

/// `[reference]`: the reference corpus statistics, as a prebuilt index or a corpus to index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSpec {
    /// A folder written by `collapse-probe index build`.
    pub index: Option<PathBuf>,
    /// A text corpus (one document per line, or JSON Lines) to build the index from.
    pub corpus: Option<PathBuf>,
    /// The tokenizer for `corpus`; the model folder's `tokenizer.json` when absent.
    pub tokenizer: Option<PathBuf>,
    /// How a plain-text `corpus` is cut into documents (n-grams never cross documents).
    #[serde(default)]
    pub split: DocSplit,
}

/// `[metrics]`: options of the analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSpec {
    /// F: how many of the corpus's most frequent tokens count as "frequent" in the collapse metrics.
    pub top_frequent: u32,
    /// Frequent-token share at which collapse counts as having set in (its onset distance).
    pub onset_threshold: f64,
    /// n-gram orders of the marginal-trap metrics (unseen n-gram rates).
    pub ngram_orders: Vec<u32>,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        MetricsSpec {
            top_frequent: 50,
            onset_threshold: 0.5,
            ngram_orders: vec![2, 3],
        }
    }
}

/// `[report]`: options of the HTML report and its figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSpec {
    /// Write the report at all.
    pub enabled: bool,
    /// Title of the report; the spec's description (else its name) when absent.
    pub title: Option<String>,
    /// Figure file formats.
    pub formats: Vec<FigureFormat>,
    /// Prompts embedded in the page's prediction browser.
    pub max_prompts: usize,
    /// Generations shown in the page's samples section.
    pub max_samples: usize,
}

impl Default for ReportSpec {
    fn default() -> Self {
        ReportSpec {
            enabled: true,
            title: None,
            formats: vec![FigureFormat::Svg],
            max_prompts: 200,
            max_samples: 50,
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl Spec {
    /// Reads a spec, validates it and resolves its relative paths against the spec file's folder.
    /// Does not check that the files exist: see [`Spec::missing_paths`].
    pub fn load(path: &Path) -> Result<Self, GateError> {
        let text = read_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses spec text as if read from `path` (which names the file in errors and anchors relative paths).
    pub fn parse(text: &str, path: &Path) -> Result<Self, GateError> {
        let mut spec: Spec = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        spec.path = path.to_owned();
        spec.validate()?;
        let base = path.parent().unwrap_or(Path::new("")).to_owned();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut spec.model.path);
        resolve(&mut spec.prompts.path);
        if let Some(t) = &mut spec.prompts.chat_template {
            if t != "auto" && t != "none" && Path::new(t.as_str()).is_relative() {
                *t = base.join(t.as_str()).to_string_lossy().into_owned();
            }
        }
        for s in &mut spec.schedules {
            for f in [&mut s.file, &mut s.trajectories].into_iter().flatten() {
                resolve(f);
            }
        }
        if let Some(t) = spec.corrupt.as_mut().and_then(|c| c.texts.as_mut()) {
            resolve(t);
        }
        if let Some(r) = &mut spec.reference {
            for p in [&mut r.index, &mut r.corpus, &mut r.tokenizer]
                .into_iter()
                .flatten()
            {
                resolve(p);
            }
        }
        if spec.name.is_empty() {
            spec.name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
        }
        Ok(spec)
    }

    fn validate(&self) -> Result<(), GateError> {
        let invalid = |key: String, message: String| {
            Err(GateError::Invalid {
                path: self.path.clone(),
                key,
                message,
            })
        };
        if !self.name.is_empty() && !valid_name(&self.name) {
            return invalid(
                "name".into(),
                format!(
                    "`{}`: use letters, digits, `.`, `_` and `-` only",
                    self.name
                ),
            );
        }
        if let Some(device) = &self.model.device {
            let ok = matches!(device.as_str(), "cpu" | "cuda" | "auto")
                || device
                    .strip_prefix("cuda:")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return invalid(
                    "model.device".into(),
                    format!("`{device}`: expected `cpu`, `cuda`, `cuda:N` or `auto`"),
                );
            }
        }
        if self.model.block_length.is_some_and(|b| b < 1) {
            return invalid("model.block_length".into(), "must be at least 1".into());
        }
        if let Some(t) = self.model.timestep {
            if !(0.0..=1.0).contains(&t) {
                return invalid(
                    "model.timestep".into(),
                    format!("the diffusion time must lie in [0, 1], found {t}"),
                );
            }
        }
        if let Some(t) = &self.prompts.chat_template {
            if t.is_empty() {
                return invalid(
                    "prompts.chat_template".into(),
                    "empty; use `auto`, `none` or a file".into(),
                );
            }
        }
        if self.prompts.limit == Some(0) {
            return invalid("prompts.limit".into(), "must be at least 1".into());
        }
        for (key, v) in [
            ("probe.masks", self.probe.masks),
            ("probe.top_k", self.probe.top_k),
            ("probe.batch_size", self.probe.batch_size),
        ] {
            if v == 0 {
                return invalid(key.into(), "must be at least 1".into());
            }
        }
        for (i, s) in self.schedules.iter().enumerate() {
            if !valid_name(&s.name) {
                return invalid(
                    format!("schedule[{i}].name"),
                    format!("`{}`: use letters, digits, `.`, `_` and `-` only", s.name),
                );
            }
            if let Some(j) = self.schedules[..i].iter().position(|p| p.name == s.name) {
                return invalid(
                    format!("schedule[{i}].name"),
                    format!("`{}` is also the name of schedule[{j}]", s.name),
                );
            }
            let sources = [s.spec.is_some(), s.file.is_some(), s.trajectories.is_some()];
            if sources.iter().filter(|&&x| x).count() != 1 {
                return invalid(
                    format!("schedule[{i}]"),
                    format!(
                        "`{}`: give exactly one of `spec`, `file` or `trajectories`",
                        s.name
                    ),
                );
            }
            if s.trajectories.is_none() {
                for (key, given) in [
                    ("mask_id", s.mask_id.is_some()),
                    ("allow_remasking", s.allow_remasking.is_some()),
                    ("tokens_per_step", s.tokens_per_step.is_some()),
                    ("series", s.series.is_some()),
                ] {
                    if given {
                        return invalid(
                            format!("schedule[{i}].{key}"),
                            "only used with `trajectories`".into(),
                        );
                    }
                }
            }
            if let Some(t) = s.tokens_per_step {
                if !(t.is_finite() && t > 0.0) {
                    return invalid(
                        format!("schedule[{i}].tokens_per_step"),
                        format!("must be a number > 0, found {t}"),
                    );
                }
                let clash = self.schedules[..i]
                    .iter()
                    .position(|p| p.tokens_per_step == Some(t) && p.series() == s.series());
                if let Some(j) = clash {
                    return invalid(
                        format!("schedule[{i}].tokens_per_step"),
                        format!(
                            "schedule[{j}] already places series `{}` at {t} tokens per step",
                            s.series()
                        ),
                    );
                }
                if let Some(sweep) = &self.sweep {
                    if sweep.param != SweepParam::TokensPerStep {
                        return invalid(
                            format!("schedule[{i}].tokens_per_step"),
                            format!(
                                "places imported trajectories in a `tokens_per_step` sweep, but the [sweep] varies `{}`",
                                sweep.param.name()
                            ),
                        );
                    }
                    if !sweep.values.contains(&t) {
                        return invalid(
                            format!("schedule[{i}].tokens_per_step"),
                            format!("{t} is not among sweep.values {:?}", sweep.values),
                        );
                    }
                }
            }
            if let Some(series) = &s.series {
                if !valid_name(series) {
                    return invalid(
                        format!("schedule[{i}].series"),
                        format!("`{series}`: use letters, digits, `.`, `_` and `-` only"),
                    );
                }
                if s.tokens_per_step.is_none() {
                    return invalid(
                        format!("schedule[{i}].series"),
                        "names a sweep line; give `tokens_per_step` too".into(),
                    );
                }
            }
        }
        if let Some(c) = &self.corrupt {
            if self.reference.is_none() {
                return invalid(
                    "corrupt".into(),
                    "needs a [reference] section (frequency ranks and the unigram come from its index)"
                        .into(),
                );
            }
            if c.ratios.is_empty() {
                return invalid("corrupt.ratios".into(), "give at least one ratio".into());
            }
            for (i, &r) in c.ratios.iter().enumerate() {
                if !(r > 0.0 && r < 1.0) {
                    return invalid(
                        format!("corrupt.ratios[{i}]"),
                        format!("{r} is outside (0, 1)"),
                    );
                }
                if c.ratios[..i].contains(&r) {
                    return invalid(
                        format!("corrupt.ratios[{i}]"),
                        format!("{r} is listed twice"),
                    );
                }
            }
            for (key, v) in [("corrupt.samples", c.samples), ("corrupt.top_k", c.top_k)] {
                if v == 0 {
                    return invalid(key.into(), "must be at least 1".into());
                }
            }
            if c.schemes.is_empty() {
                return invalid("corrupt.schemes".into(), "give at least one scheme".into());
            }
            for (i, s) in c.schemes.iter().enumerate() {
                if !CORRUPT_SCHEMES.contains(&s.as_str()) {
                    return invalid(
                        format!("corrupt.schemes[{i}]"),
                        format!("`{s}`: expected one of {}", CORRUPT_SCHEMES.join(", ")),
                    );
                }
                if c.schemes[..i].contains(s) {
                    return invalid(
                        format!("corrupt.schemes[{i}]"),
                        format!("`{s}` is listed twice"),
                    );
                }
            }
        }
        if let Some(r) = &self.reference {
            if r.index.is_some() == r.corpus.is_some() {
                return invalid(
                    "reference".into(),
                    "give exactly one of `index` or `corpus`".into(),
                );
            }
            if r.index.is_some() && r.tokenizer.is_some() {
                return invalid(
                    "reference.tokenizer".into(),
                    "only used with `corpus`; an index records its tokenizer".into(),
                );
            }
            if r.index.is_some() && r.split != DocSplit::Paragraph {
                return invalid("reference.split".into(), "only used with `corpus`".into());
            }
        }
        let m = &self.metrics;
        if self.report.formats.is_empty() {
            return invalid(
                "report.formats".into(),
                "give at least one of \"svg\", \"png\", \"pdf\"".into(),
            );
        }
        if m.top_frequent == 0 {
            return invalid("metrics.top_frequent".into(), "must be at least 1".into());
        }
        if !(m.onset_threshold > 0.0 && m.onset_threshold <= 1.0) {
            return invalid(
                "metrics.onset_threshold".into(),
                format!("must be in (0, 1], found {}", m.onset_threshold),
            );
        }
        if m.ngram_orders.is_empty() {
            return invalid(
                "metrics.ngram_orders".into(),
                "give at least one order, e.g. [2, 3]".into(),
            );
        }
        if let Some(i) = m.ngram_orders.iter().position(|&n| !(1..=8).contains(&n)) {
            return invalid(
                format!("metrics.ngram_orders[{i}]"),
                format!("orders 1 to 8 are supported, found {}", m.ngram_orders[i]),
            );
        }
        if let Some(sweep) = &self.sweep {
            if sweep.values.is_empty() {
                return invalid("sweep.values".into(), "give at least one value".into());
            }
            for (i, &v) in sweep.values.iter().enumerate() {
                let key = format!("sweep.values[{i}]");
                if sweep.param.is_integer() {
                    if !(v.fract() == 0.0 && v >= 1.0 && v <= u32::MAX as f64) {
                        return invalid(
                            key,
                            format!("{} takes whole numbers >= 1, found {v}", sweep.param.name()),
                        );
                    }
                } else if sweep.param == SweepParam::Threshold && !(v > 0.0 && v <= 1.0) {
                    return invalid(key, format!("threshold must be in (0, 1], found {v}"));
                } else if !(v.is_finite() && v >= 0.0) {
                    // The schedule checks its own range (factor > 0, ...) when the value is applied.
                    return invalid(
                        key,
                        format!(
                            "{} must be a finite number >= 0, found {v}",
                            sweep.param.name()
                        ),
                    );
                }
                if sweep.values[..i].contains(&v) {
                    return invalid(key, format!("{v} is listed twice"));
                }
            }
            if sweep.param != SweepParam::Masks && self.schedules.is_empty() {
                return invalid(
                    "sweep.param".into(),
                    format!(
                        "sweeping `{}` needs at least one [[schedule]]",
                        sweep.param.name()
                    ),
                );
            }
        }
        Ok(())
    }

    /// Input files the spec names that do not exist (the model, prompts, schedule files, reference),
    /// each with the key that names it, so a run can fail before any work starts.
    pub fn missing_paths(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut check = |key: String, p: &Path| {
            if !p.exists() {
                out.push((key, p.to_owned()));
            }
        };
        check("model.path".into(), &self.model.path);
        check("prompts.path".into(), &self.prompts.path);
        if let Some(t) = &self.prompts.chat_template {
            if t != "auto" && t != "none" {
                check("prompts.chat_template".into(), Path::new(t));
            }
        }
        for (i, s) in self.schedules.iter().enumerate() {
            if let Some(f) = &s.file {
                check(format!("schedule[{i}].file"), f);
            }
            if let Some(t) = &s.trajectories {
                check(format!("schedule[{i}].trajectories"), t);
            }
        }
        if let Some(t) = self.corrupt.as_ref().and_then(|c| c.texts.as_ref()) {
            check("corrupt.texts".into(), t);
        }
        if let Some(r) = &self.reference {
            for (key, p) in [
                ("reference.index", &r.index),
                ("reference.corpus", &r.corpus),
                ("reference.tokenizer", &r.tokenizer),
            ] {
                if let Some(p) = p {
                    check(key.into(), p);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "toy"
seed = 7

[model]
path = "../fixtures/toy-trap"
dtype = "bf16"
device = "cuda:1"

[prompts]
path = "prompts/toy.jsonl"
chat_template = "templates/t.jinja"

[probe]
masks = 64

[[schedule]]
name = "one-per-step"
spec = "steps=64"

[[schedule]]
name = "all-at-once"
file = "schedules/all.toml"

[reference]
corpus = "corpus.txt"
split = "line"

[metrics]
ngram_orders = [2]

[sweep]
param = "tokens_per_step"
values = [1, 2, 4]
"#;

    fn parse(text: &str) -> Result<Spec, GateError> {
        Spec::parse(text, Path::new("probes/x.toml"))
    }

    /// Parses `text`, expects an error, and checks its message contains every one of `needles`.
    fn check_err(text: &str, needles: &[&str]) {
        let err = parse(text).expect_err("expected an error").to_string();
        for needle in needles {
            assert!(err.contains(needle), "`{needle}` not in: {err}");
        }
    }

    #[test]
    fn parses_and_resolves_paths_against_the_spec_folder() {
        let s = parse(FULL).unwrap();
        assert_eq!(s.name, "toy");
        assert_eq!(s.seed, 7);
        assert_eq!(s.model.path, Path::new("probes/../fixtures/toy-trap"));
        assert_eq!(s.model.dtype, Some(DTypeChoice::Bf16));
        assert_eq!(s.prompts.path, Path::new("probes/prompts/toy.jsonl"));
        assert_eq!(
            s.prompts.chat_template.as_deref(),
            Some("probes/templates/t.jinja")
        );
        assert_eq!(
            s.probe,
            ProbeSpec {
                masks: 64,
                top_k: 3,
                batch_size: 8
            },
            "unset probe keys take defaults"
        );
        assert_eq!(s.schedules[0].source(), ScheduleSource::Inline("steps=64"));
        assert_eq!(
            s.schedules[1].source(),
            ScheduleSource::File(Path::new("probes/schedules/all.toml"))
        );
        assert_eq!(
            s.reference.as_ref().unwrap().corpus.as_deref(),
            Some(Path::new("probes/corpus.txt"))
        );
        assert_eq!(s.reference.as_ref().unwrap().split, DocSplit::Line);
        assert_eq!(s.metrics.ngram_orders, vec![2]);
        assert_eq!(s.metrics.top_frequent, 50);
        assert_eq!(
            s.sweep.as_ref().unwrap().labels(),
            vec![
                "tokens_per_step=1",
                "tokens_per_step=2",
                "tokens_per_step=4"
            ]
        );
    }

    #[test]
    fn minimal_spec_takes_defaults_and_the_file_stem_as_name() {
        let s = parse("[model]\npath = \"/m\"\n[prompts]\npath = \"p.txt\"\n").unwrap();
        assert_eq!(s.name, "x");
        assert_eq!(
            s.model.path,
            Path::new("/m"),
            "absolute paths stay as they are"
        );
        assert_eq!(s.probe, ProbeSpec::default());
        assert!(s.schedules.is_empty() && s.sweep.is_none() && s.reference.is_none());
        assert!(s.report.enabled);
        assert_eq!(s.report.formats, vec![FigureFormat::Svg]);
    }

    #[test]
    fn unknown_keys_are_named_with_file_and_line() {
        check_err(
            &FULL.replace("masks = 64", "mask = 64"),
            &["probes/x.toml:15:1", "unknown field `mask`", "masks"],
        );
        check_err(
            &FULL.replace("[metrics]", "[metric]"),
            &["probes/x.toml:", "unknown field `metric`"],
        );
        check_err(
            &format!("{FULL}\n[report]\nexamples = 4\n"),
            &["unknown field `examples`"],
        );
        check_err(
            &format!("{FULL}\n[report]\nformats = [\"gif\"]\n"),
            &["unknown variant `gif`"],
        );
        check_err(
            &FULL.replace("spec = \"steps=64\"", "spec = \"steps=64\"\nsteps = 3"),
            &["unknown field `steps`"],
        );
    }

    #[test]
    fn wrong_types_are_named() {
        check_err(
            &FULL.replace("masks = 64", "masks = \"64\""),
            &["probes/x.toml:15:9", "(in `masks = \"64\"`)"],
        );
        check_err(
            &FULL.replace("masks = 64", "masks = -1"),
            &["probes/x.toml:15:", "masks = -1"],
        );
        check_err(
            &FULL.replace("dtype = \"bf16\"", "dtype = \"fp8\""),
            &["unknown variant `fp8`"],
        );
        check_err(
            &FULL.replace("param = \"tokens_per_step\"", "param = \"temperature\""),
            &["unknown variant `temperature`"],
        );
        check_err(
            &FULL.replace(
                "[prompts]\npath = \"prompts/toy.jsonl\"\nchat_template = \"templates/t.jinja\"\n",
                "",
            ),
            &["missing field `prompts`"],
        );
    }

    #[test]
    fn imported_trajectories_are_a_schedule_source() {
        let imported = FULL.replace(
            "file = \"schedules/all.toml\"",
            "trajectories = \"t/mine.jsonl\"\ntokens_per_step = 2\nseries = \"mine\"",
        );
        let s = parse(&imported).unwrap();
        assert_eq!(
            s.schedules[1].source(),
            ScheduleSource::Trajectories(Path::new("probes/t/mine.jsonl"))
        );
        assert_eq!(s.schedules[1].series(), "mine");
        check_err(
            &imported.replace("tokens_per_step = 2", "tokens_per_step = 3"),
            &["`schedule[1].tokens_per_step`", "not among sweep.values"],
        );
        check_err(
            &imported.replace("param = \"tokens_per_step\"", "param = \"steps\""),
            &["`schedule[1].tokens_per_step`", "varies `steps`"],
        );
        check_err(
            &imported.replace("tokens_per_step = 2\n", ""),
            &["`schedule[1].series`", "tokens_per_step"],
        );
        check_err(
            &FULL.replace("spec = \"steps=64\"", "spec = \"steps=64\"\nmask_id = 3"),
            &["`schedule[0].mask_id`", "only used with `trajectories`"],
        );
        check_err(
            &imported.replace("trajectories =", "spec = \"x\"\ntrajectories ="),
            &[
                "`schedule[1]`",
                "exactly one of `spec`, `file` or `trajectories`",
            ],
        );
    }

    #[test]
    fn invalid_values_are_named() {
        check_err(
            &FULL.replace("device = \"cuda:1\"", "device = \"gpu\""),
            &["probes/x.toml", "`model.device`"],
        );
        check_err(
            &FULL.replace(
                "file = \"schedules/all.toml\"",
                "spec = \"x\"\nfile = \"y\"",
            ),
            &["`schedule[1]`", "exactly one"],
        );
        check_err(
            &FULL.replace("name = \"all-at-once\"", "name = \"one-per-step\""),
            &["`schedule[1].name`", "schedule[0]"],
        );
        check_err(
            &FULL.replace("name = \"all-at-once\"", "name = \"a/b\""),
            &["`schedule[1].name`"],
        );
        check_err(
            &FULL.replace("values = [1, 2, 4]", "values = [1, 2.5]"),
            &["`sweep.values[1]`", "whole numbers"],
        );
        check_err(
            &FULL.replace("values = [1, 2, 4]", "values = [1, 1]"),
            &["`sweep.values[1]`", "twice"],
        );
        check_err(
            &FULL.replace("values = [1, 2, 4]", "values = []"),
            &["`sweep.values`"],
        );
        check_err(
            &FULL.replace("ngram_orders = [2]", "onset_threshold = 1.5"),
            &["`metrics.onset_threshold`"],
        );
        check_err(
            &FULL.replace("corpus = \"corpus.txt\"", "corpus = \"c\"\nindex = \"i\""),
            &["`reference`"],
        );
        check_err(&FULL.replace("masks = 64", "masks = 0"), &["`probe.masks`"]);
        let no_schedules = FULL.split("[[schedule]]").next().unwrap().to_string()
            + "[sweep]\nparam = \"steps\"\nvalues = [4]\n";
        check_err(&no_schedules, &["`sweep.param`", "schedule"]);
        let threshold = FULL
            .replace("param = \"tokens_per_step\"", "param = \"threshold\"")
            .replace("values = [1, 2, 4]", "values = [0.9, 1.5]");
        check_err(&threshold, &["`sweep.values[1]`", "(0, 1]"]);
    }

    #[test]
    fn missing_paths_are_listed_with_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.txt"), "hi\n").unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "[model]\npath = \"model\"\n[prompts]\npath = \"p.txt\"\n[reference]\nindex = \"idx\"\n").unwrap();
        let s = Spec::load(&path).unwrap();
        let missing: Vec<String> = s.missing_paths().into_iter().map(|(k, _)| k).collect();
        assert_eq!(missing, vec!["model.path", "reference.index"]);
    }
}
