//! Decoding schedules: what they are, how they are written down, how they are checked.
//!
//! One [`ScheduleSpec`] type covers the official LLaDA and Dream samplers and two schedules
//! used to study the marginal trap (confidence-threshold parallel decoding as in Fast-dLLM,
//! and a fixed number of tokens per step). A schedule is written either as a spec string,
//! `name:key=value,key=value`, or as a TOML file with a `schedule = "name"` key and the
//! same keys; both go through the same option parser, so both give the same errors.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::options::Options;
use super::parts::{
    build_preset, parse_composition, Background, Composed, Schedule, Score, COMPOSE, PRESETS,
};
use crate::error::ProbeError;

/// A decoding schedule and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "schedule", rename_all = "snake_case")]
pub enum ScheduleSpec {
    /// LLaDA's `generate()` (ML-GSAI/LLaDA `generate.py`): semi-autoregressive blocks,
    /// a fixed number of tokens per step, low-confidence or random remasking.
    Llada(LladaParams),
    /// Dream's `diffusion_generate()` (`DreamGenerationMixin._sample`): a timestep schedule
    /// deciding how many masks to fill per step, ranked by an `alg` confidence.
    Dream(DreamParams),
    /// Confidence-threshold parallel decoding (Fast-dLLM): per step, every masked position of
    /// the current block whose confidence is at least `tau`, and always the most confident one.
    Threshold(ThresholdParams),
    /// A fixed number of tokens per step: `k = 1` is one-at-a-time, `k = all` fully parallel.
    Fixed(FixedParams),
    /// A composition of parts: the 2025 presets (`fastdllm`, `eb`, `pc`, `klass`, `llada2`)
    /// and `compose:` strings (`parts/`).
    #[serde(rename = "composed")]
    Parts(Composed),
}

/// How LLaDA ranks masked positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Remasking {
    /// By the softmax probability of the chosen token.
    LowConfidence,
    /// By a uniform random number per position (`torch.rand`).
    Random,
}

/// Parameters of [`ScheduleSpec::Llada`]; names and defaults follow `generate()`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LladaParams {
    /// Number of model calls (without CFG); divided evenly over the blocks.
    pub steps: usize,
    /// Number of generated positions.
    pub gen_length: usize,
    /// Positions per semi-autoregressive block; divides `gen_length`.
    pub block_length: usize,
    /// Gumbel-max temperature (0: greedy argmax).
    pub temperature: f64,
    /// Classifier-free guidance scale (0: off).
    pub cfg_scale: f64,
    pub remasking: Remasking,
    /// Set the logits of the caller's end-of-text / end-of-turn ids to -inf before choosing tokens.
    pub forbid_eot: bool,
}

/// Dream's `alg`: the confidence that ranks masked positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DreamAlg {
    /// No ranking: every mask is filled with probability `1 - s/t` (all at the last step).
    Origin,
    /// The probability of the chosen token.
    MaskgitPlus,
    /// Top-1 minus top-2 probability.
    TopkMargin,
    /// Negative entropy of the position's distribution.
    Entropy,
}

/// Parameters of [`ScheduleSpec::Dream`]; names and defaults follow `DreamGenerationConfig`.
///
/// `top_k` defaults to none here, as `DreamGenerationConfig` documents. Beware that upstream's
/// *effective* default is 50: with transformers 4.46 `diffusion_generate` builds its config from
/// the model config, which carries `top_k = 50`, so a caller who does not pass `top_k` gets
/// top-50 filtering. Pass `top_k=50` to reproduce such runs (it changes the confidences, never
/// the argmax token).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DreamParams {
    /// Number of model calls.
    pub steps: usize,
    /// Number of generated positions.
    pub max_new_tokens: usize,
    /// Last timestep: timesteps are `linspace(1, eps, steps + 1)`.
    pub eps: f64,
    /// Sampling temperature (0: argmax).
    pub temperature: f64,
    /// Nucleus filtering of the logits (none, or 1: off).
    pub top_p: Option<f64>,
    /// Top-k filtering of the logits (none: off; upstream's effective default is 50).
    pub top_k: Option<usize>,
    pub alg: DreamAlg,
    /// When positive, positions are drawn from softmax(confidence / alg_temp) instead of taken by top-k.
    pub alg_temp: f64,
    /// Set the logits of the caller's end-of-text / end-of-turn ids to -inf before choosing tokens.
    pub forbid_eot: bool,
}

/// Parameters of [`ScheduleSpec::Threshold`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThresholdParams {
    /// Number of generated positions.
    pub gen_length: usize,
    /// Positions per block; a block is finished before the next one starts.
    pub block_length: usize,
    /// Confidence threshold in (0, 1]: positions whose chosen-token probability reaches it are committed.
    pub tau: f64,
    /// Gumbel-max temperature (0: greedy argmax).
    pub temperature: f64,
    /// Set the logits of the caller's end-of-text / end-of-turn ids to -inf before choosing tokens.
    pub forbid_eot: bool,
}

/// How many tokens [`ScheduleSpec::Fixed`] commits per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokensPerStep {
    /// This many (the last step may commit fewer).
    Count(usize),
    /// Every generated position in one step.
    All,
}

/// Which positions [`ScheduleSpec::Fixed`] commits first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FixedOrder {
    /// Highest chosen-token probability first.
    Confidence,
    /// Uniformly random order (seeded).
    Random,
}

/// Parameters of [`ScheduleSpec::Fixed`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixedParams {
    /// Number of generated positions.
    pub gen_length: usize,
    /// Tokens committed per step.
    pub k: TokensPerStep,
    pub order: FixedOrder,
    /// Gumbel-max temperature (0: greedy argmax).
    pub temperature: f64,
    /// Set the logits of the caller's end-of-text / end-of-turn ids to -inf before choosing tokens.
    pub forbid_eot: bool,
}

impl Serialize for TokensPerStep {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TokensPerStep::Count(k) => s.serialize_u64(*k as u64),
            TokensPerStep::All => s.serialize_str("all"),
        }
    }
}

/// Names accepted before the colon, for error messages.
const SCHEDULES: &str = "llada, dream, threshold, fixed";

impl ScheduleSpec {
    /// Parses `name` or `name:key=value,key=value,...`, e.g.
    /// `llada:steps=8,gen_length=16,block_length=4,remasking=low_confidence`.
    pub fn parse(spec: &str) -> Result<ScheduleSpec, ProbeError> {
        let (name, rest) = match spec.split_once(':') {
            Some((n, r)) => (n.trim(), r),
            None => (spec.trim(), ""),
        };
        let mut pairs = Vec::new();
        for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=').ok_or_else(|| {
                ProbeError::Input(format!(
                    "schedule `{spec}`: expected key=value, found `{item}`"
                ))
            })?;
            pairs.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        ScheduleSpec::build(name, &pairs)
            .map_err(|m| ProbeError::Input(format!("schedule `{spec}`: {m}")))
    }

    /// Reads a TOML file holding `schedule = "name"` and the schedule's keys.
    pub fn from_toml_file(path: &Path) -> Result<ScheduleSpec, ProbeError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProbeError::Io {
            path: path.to_owned(),
            source,
        })?;
        ScheduleSpec::from_toml_str(&text).map_err(|message| ProbeError::Config {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a spec that is either a path to a `.toml` file or a spec string.
    pub fn from_spec_or_file(spec: &str) -> Result<ScheduleSpec, ProbeError> {
        if spec.ends_with(".toml") {
            ScheduleSpec::from_toml_file(Path::new(spec))
        } else {
            ScheduleSpec::parse(spec)
        }
    }

    fn from_toml_str(text: &str) -> Result<ScheduleSpec, String> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        let name = match table.get("schedule") {
            Some(toml::Value::String(s)) => s.clone(),
            Some(_) => return Err("key `schedule` must be a string".into()),
            None => return Err(format!("missing key `schedule` (one of {SCHEDULES})")),
        };
        let mut pairs = Vec::new();
        for (key, value) in &table {
            if key == "schedule" {
                continue;
            }
            let v = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => return Err(format!("key `{key}` must be a string, number or boolean")),
            };
            pairs.push((key.clone(), v));
        }
        ScheduleSpec::build(&name, &pairs)
    }

    fn build(name: &str, pairs: &[(String, String)]) -> Result<ScheduleSpec, String> {
        let mut opts = Options::new(name, pairs);
        let schedule = match name {
            "llada" => {
                let gen_length = opts.usize("gen_length")?.unwrap_or(128);
                ScheduleSpec::Llada(LladaParams {
                    steps: opts.usize("steps")?.unwrap_or(gen_length),
                    block_length: opts.usize("block_length")?.unwrap_or(gen_length),
                    gen_length,
                    temperature: opts.f64("temperature")?.unwrap_or(0.0),
                    cfg_scale: opts.f64("cfg_scale")?.unwrap_or(0.0),
                    remasking: opts
                        .choice(
                            "remasking",
                            &[
                                ("low_confidence", Remasking::LowConfidence),
                                ("random", Remasking::Random),
                            ],
                        )?
                        .unwrap_or(Remasking::LowConfidence),
                    forbid_eot: opts.bool("forbid_eot")?.unwrap_or(false),
                })
            }
            "dream" => {
                let max_new_tokens = opts.usize("max_new_tokens")?.unwrap_or(128);
                ScheduleSpec::Dream(DreamParams {
                    steps: opts.usize("steps")?.unwrap_or(max_new_tokens),
                    max_new_tokens,
                    eps: opts.f64("eps")?.unwrap_or(1e-3),
                    temperature: opts.f64("temperature")?.unwrap_or(0.0),
                    top_p: opts.optional("top_p", Options::parse_f64)?,
                    top_k: opts.optional("top_k", Options::parse_usize)?,
                    alg: opts
                        .choice(
                            "alg",
                            &[
                                ("origin", DreamAlg::Origin),
                                ("maskgit_plus", DreamAlg::MaskgitPlus),
                                ("topk_margin", DreamAlg::TopkMargin),
                                ("entropy", DreamAlg::Entropy),
                            ],
                        )?
                        .unwrap_or(DreamAlg::Origin),
                    alg_temp: opts.f64("alg_temp")?.unwrap_or(0.0),
                    forbid_eot: opts.bool("forbid_eot")?.unwrap_or(false),
                })
            }
            "threshold" => {
                let gen_length = opts.usize("gen_length")?.unwrap_or(128);
                ScheduleSpec::Threshold(ThresholdParams {
                    block_length: opts.usize("block_length")?.unwrap_or(gen_length),
                    gen_length,
                    tau: opts.f64("tau")?.unwrap_or(0.9),
                    temperature: opts.f64("temperature")?.unwrap_or(0.0),
                    forbid_eot: opts.bool("forbid_eot")?.unwrap_or(false),
                })
            }
            "fixed" => ScheduleSpec::Fixed(FixedParams {
                gen_length: opts.usize("gen_length")?.unwrap_or(128),
                k: match opts.take("k") {
                    None => TokensPerStep::Count(1),
                    Some(v) if v == "all" => TokensPerStep::All,
                    Some(v) => TokensPerStep::Count(
                        Options::parse_usize(&v)
                            .map_err(|m| format!("option `k`: {m} or `all`"))?,
                    ),
                },
                order: opts
                    .choice(
                        "order",
                        &[
                            ("confidence", FixedOrder::Confidence),
                            ("random", FixedOrder::Random),
                        ],
                    )?
                    .unwrap_or(FixedOrder::Confidence),
                temperature: opts.f64("temperature")?.unwrap_or(0.0),
                forbid_eot: opts.bool("forbid_eot")?.unwrap_or(false),
            }),
            COMPOSE => ScheduleSpec::Parts(parse_composition(&mut opts)?),
            other => match build_preset(other, &mut opts)? {
                Some(c) => ScheduleSpec::Parts(c),
                None => {
                    return Err(format!(
                    "unknown schedule `{other}`; expected one of {SCHEDULES}, {PRESETS}, {COMPOSE}"
                ))
                }
            },
        };
        opts.finish()?;
        schedule.validate()?;
        Ok(schedule)
    }

    /// Checks the constraints between options; the message names the option at fault.
    fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(format!("option `{name}` must be at least 1"))
            } else {
                Ok(())
            }
        };
        let non_negative = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "option `{name}` must be a finite number >= 0, found {v}"
                ))
            }
        };
        match self {
            ScheduleSpec::Llada(p) => {
                positive("gen_length", p.gen_length)?;
                positive("steps", p.steps)?;
                positive("block_length", p.block_length)?;
                if p.gen_length % p.block_length != 0 {
                    return Err(format!(
                        "option `block_length` ({}) must divide gen_length ({})",
                        p.block_length, p.gen_length
                    ));
                }
                let blocks = p.gen_length / p.block_length;
                if p.steps % blocks != 0 {
                    return Err(format!(
                        "option `steps` ({}) must be divisible by the number of blocks (gen_length / block_length = {blocks})",
                        p.steps
                    ));
                }
                non_negative("temperature", p.temperature)?;
                non_negative("cfg_scale", p.cfg_scale)?;
            }
            ScheduleSpec::Dream(p) => {
                positive("max_new_tokens", p.max_new_tokens)?;
                positive("steps", p.steps)?;
                if !(p.eps > 0.0 && p.eps < 1.0) {
                    return Err(format!("option `eps` must be in (0, 1), found {}", p.eps));
                }
                non_negative("temperature", p.temperature)?;
                non_negative("alg_temp", p.alg_temp)?;
                if let Some(top_p) = p.top_p {
                    if !(top_p > 0.0 && top_p <= 1.0) {
                        return Err(format!("option `top_p` must be in (0, 1], found {top_p}"));
                    }
                }
                if let Some(top_k) = p.top_k {
                    positive("top_k", top_k)?;
                }
            }
            ScheduleSpec::Threshold(p) => {
                positive("gen_length", p.gen_length)?;
                positive("block_length", p.block_length)?;
                if p.gen_length % p.block_length != 0 {
                    return Err(format!(
                        "option `block_length` ({}) must divide gen_length ({})",
                        p.block_length, p.gen_length
                    ));
                }
                if !(p.tau > 0.0 && p.tau <= 1.0) {
                    return Err(format!("option `tau` must be in (0, 1], found {}", p.tau));
                }
                non_negative("temperature", p.temperature)?;
            }
            ScheduleSpec::Fixed(p) => {
                positive("gen_length", p.gen_length)?;
                if let TokensPerStep::Count(k) = p.k {
                    positive("k", k)?;
                }
                non_negative("temperature", p.temperature)?;
            }
            // Checked option by option as they are read.
            ScheduleSpec::Parts(_) => {}
        }
        Ok(())
    }

    /// The schedule's name as written before the colon.
    pub fn name(&self) -> &'static str {
        match self {
            ScheduleSpec::Llada(_) => "llada",
            ScheduleSpec::Dream(_) => "dream",
            ScheduleSpec::Threshold(_) => "threshold",
            ScheduleSpec::Fixed(_) => "fixed",
            ScheduleSpec::Parts(c) => c.name,
        }
    }

    /// Number of generated positions appended to each prompt.
    pub fn gen_length(&self) -> usize {
        match self {
            ScheduleSpec::Llada(p) => p.gen_length,
            ScheduleSpec::Dream(p) => p.max_new_tokens,
            ScheduleSpec::Threshold(p) => p.gen_length,
            ScheduleSpec::Fixed(p) => p.gen_length,
            ScheduleSpec::Parts(c) => c.gen_length,
        }
    }

    /// Number of steps, when the schedule fixes it in advance (threshold decoding does not).
    pub fn steps(&self) -> Option<usize> {
        match self {
            ScheduleSpec::Llada(p) => Some(p.steps),
            ScheduleSpec::Dream(p) => Some(p.steps),
            ScheduleSpec::Threshold(_) => None,
            ScheduleSpec::Fixed(p) => Some(match p.k {
                TokensPerStep::Count(k) => p.gen_length.div_ceil(k),
                TokensPerStep::All => 1,
            }),
            ScheduleSpec::Parts(c) => c.steps(),
        }
    }

    /// A composed schedule (preset or `compose:`) with option `key` set to `value`, checked
    /// like a schedule string; `None` for the other schedules.
    pub fn with_option(&self, key: &str, value: &str) -> Option<Result<ScheduleSpec, ProbeError>> {
        let ScheduleSpec::Parts(c) = self else {
            return None;
        };
        let (name, rest) = c.spec.split_once(':').unwrap_or((c.spec.as_str(), ""));
        let mut items: Vec<String> = rest
            .split(',')
            .filter(|i| !i.is_empty() && i.split_once('=').map(|(k, _)| k) != Some(key))
            .map(str::to_owned)
            .collect();
        items.push(format!("{key}={value}"));
        Some(ScheduleSpec::parse(&format!("{name}:{}", items.join(","))))
    }

    /// Whether the schedule reads PC-Sampler's background and none was given.
    pub fn lacks_background(&self) -> bool {
        matches!(self, ScheduleSpec::Parts(Composed {
            score: Score::Pc { background, .. },
            ..
        }) if background.is_missing())
    }

    /// PC-Sampler's background when it is an index folder whose unigram counts are still to
    /// be read (the caller reads them and passes them to [`Background::set_counts`]).
    pub fn index_background(&mut self) -> Option<&mut Background> {
        match self {
            ScheduleSpec::Parts(Composed {
                score: Score::Pc { background, .. },
                ..
            }) if background.index_to_read().is_some() => Some(background),
            _ => None,
        }
    }

    /// Whether the schedule sets end-of-text logits to -inf (and so needs the caller's eot ids).
    pub fn forbids_eot(&self) -> bool {
        match self {
            ScheduleSpec::Llada(p) => p.forbid_eot,
            ScheduleSpec::Dream(p) => p.forbid_eot,
            ScheduleSpec::Threshold(p) => p.forbid_eot,
            ScheduleSpec::Fixed(p) => p.forbid_eot,
            ScheduleSpec::Parts(_) => false,
        }
    }
}

/// The canonical spec string, which [`ScheduleSpec::parse`] reads back to the same schedule.
impl fmt::Display for ScheduleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ScheduleSpec::Parts(c) = self {
            return write!(f, "{}", c.spec);
        }
        let value = serde_json::to_value(self).map_err(|_| fmt::Error)?;
        let serde_json::Value::Object(map) = value else {
            return Err(fmt::Error);
        };
        write!(f, "{}", self.name())?;
        let mut sep = ':';
        for (k, v) in map.iter().filter(|(k, v)| *k != "schedule" && !v.is_null()) {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            write!(f, "{sep}{k}={v}")?;
            sep = ',';
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
