//! The `compose:` schedule string: any combination of parts, option by option.
//!
//! ```text
//! compose:gen_length=64,block_length=32,score=margin,count=entropy_budget,gamma=0.5
//! compose:gen_length=64,steps=16,score=neg_entropy,count=cosine
//! compose:gen_length=64,block_length=16,steps=16,eligible=dilated,groups=4,count=top_k
//! ```
//!
//! Keys: `gen_length` (128); `blocks` = `whole` | `after_prompt` | `aligned` (default
//! `after_prompt` with `block_length`, else `whole`); `block_length`; `steps` (model calls in
//! all, split evenly over the blocks) or `steps_per_block`; `loop` = `fixed` | `at_most` |
//! `until_filled`; `eligible` = `block` | `all` | `dilated` (with `groups`); `score` =
//! `confidence` | `confidence64` | `margin` | `neg_entropy` | `sum_p_log_p` | `random` | `pc`
//! (with `lambda`, `alpha`, `background`) | `kl_stability` (with `history`); `count` = `top_k` |
//! `cosine` | `linear` | `threshold` (with `threshold`) | `factor` (with `factor`) |
//! `entropy_budget` (with `gamma`) | `threshold_else_top_k` (with `threshold`) |
//! `ready_else_top_k` (with `conf_threshold`, `kl_threshold`, `history`) | `fixed_k` (with `k`) |
//! `timesteps` (Dream's, with `eps`, `alg_temp`) | `bernoulli` (Dream's `origin`, with `eps`;
//! no score); `token` = `gumbel_max` | `dream` (Dream's `sample_tokens`) with `temperature`,
//! `top_k`, `top_p`, `forbid_mask`, `forbid_eot`; `cfg_scale` (0) for classifier-free guidance
//! as LLaDA's `generate()` applies it. An option the chosen parts do not read is an error.

use std::path::Path;

use super::background::Background;
use super::blocks::{BlockLoop, Blocks, BlocksLayout};
use super::composed::Composed;
use super::count::{Count, Curve};
use super::eligible::Eligible;
use super::presets::{non_negative, positive, unit_interval};
use super::score::Score;
use super::token::{TokenChoice, TokenRule};
use crate::decode::options::Options;

/// The name before the colon.
pub const COMPOSE: &str = "compose";

/// Options some part reads; any of them left over was given to parts that do not read it.
const PART_OPTIONS: &[&str] = &[
    "block_length",
    "steps",
    "steps_per_block",
    "groups",
    "lambda",
    "alpha",
    "background",
    "history",
    "threshold",
    "factor",
    "gamma",
    "conf_threshold",
    "kl_threshold",
    "k",
    "eps",
    "alg_temp",
];

/// Reads a `compose:` schedule from its options.
pub(crate) fn parse_composition(opts: &mut Options) -> Result<Composed, String> {
    let gen_length = positive(opts, "gen_length", 128)?;
    let given: Vec<(String, String)> = opts.remaining().to_vec();

    let score_given = opts.take("score");
    let score_name = score_given.clone().unwrap_or_else(|| "confidence".into());
    let score = match score_name.as_str() {
        "confidence" => Score::Confidence,
        "confidence64" => Score::Confidence64,
        "margin" => Score::Margin,
        "neg_entropy" => Score::NegEntropy,
        "sum_p_log_p" => Score::SumPLogP,
        "random" => Score::Random,
        "pc" => Score::Pc {
            lambda: opts.f64("lambda")?.unwrap_or(0.25),
            alpha: opts.f64("alpha")?.unwrap_or(10.0),
            background: match opts.take("background") {
                Some(p) => Background::open(Path::new(&p))?,
                None => Background::missing(),
            },
        },
        "kl_stability" => Score::KlStability {
            history: positive(opts, "history", 2)?,
        },
        other => {
            return Err(format!(
                "option `score`: unknown part `{other}`; expected one of confidence, confidence64, margin, neg_entropy, sum_p_log_p, random, pc, kl_stability"
            ))
        }
    };
    let count_name = opts.take("count").unwrap_or_else(|| "top_k".into());
    let count = match count_name.as_str() {
        "top_k" => Count::TopK { curve: Curve::Even },
        "fixed_k" => Count::TopK {
            curve: Curve::Fixed(positive(opts, "k", 1)?),
        },
        "cosine" => Count::TopK {
            curve: Curve::Cosine,
        },
        "linear" => Count::TopK {
            curve: Curve::Linear,
        },
        "threshold" => Count::Threshold {
            threshold: required_f64(opts, "threshold", &count_name)?,
        },
        "factor" => Count::Factor {
            factor: required_f64(opts, "factor", &count_name)?,
        },
        "entropy_budget" => Count::EntropyBudget {
            gamma: opts.f64("gamma")?.unwrap_or(0.1),
        },
        "threshold_else_top_k" => Count::ThresholdElseTopK {
            threshold: required_f64(opts, "threshold", &count_name)?,
        },
        "ready_else_top_k" => Count::ReadyElseTopK {
            conf_threshold: opts.f64("conf_threshold")?.unwrap_or(0.9),
            kl_threshold: opts.f64("kl_threshold")?.unwrap_or(0.01),
            history: match &score {
                Score::KlStability { history } => *history,
                _ => positive(opts, "history", 2)?,
            },
        },
        // Their `steps` is the block's, filled in below.
        "timesteps" => Count::Timesteps {
            eps: opts.f64("eps")?.unwrap_or(1e-3),
            steps: 0,
            alg_temp: opts.f64("alg_temp")?.unwrap_or(0.0),
        },
        "bernoulli" => {
            if score_given.is_some() {
                return Err("option `score`: count=bernoulli draws its positions and reads no score".into());
            }
            Count::Bernoulli {
                eps: opts.f64("eps")?.unwrap_or(1e-3),
                steps: 0,
            }
        }
        other => {
            return Err(format!(
                "option `count`: unknown part `{other}`; expected one of top_k, fixed_k, cosine, linear, threshold, factor, entropy_budget, threshold_else_top_k, ready_else_top_k, timesteps, bernoulli"
            ))
        }
    };
    let score = match count {
        Count::Bernoulli { .. } => Score::Unranked,
        _ => score,
    };
    check_count(&count)?;
    if let Score::Pc { lambda, alpha, .. } = &score {
        non_negative("lambda", *lambda)?;
        if !(alpha.is_finite() && *alpha > 0.0) {
            return Err(format!(
                "option `alpha` must be a finite number > 0, found {alpha}"
            ));
        }
    }

    let block_length = opts.usize("block_length")?;
    let layout = match opts.take("blocks").as_deref() {
        None if block_length.is_some() => "after_prompt".to_owned(),
        None => "whole".to_owned(),
        Some(v) => v.to_owned(),
    };
    let need_length = |what: &str| -> Result<usize, String> {
        match block_length {
            Some(0) => Err("option `block_length` must be at least 1".into()),
            Some(n) => Ok(n),
            None => Err(format!(
                "option `block_length` is required by blocks={what}"
            )),
        }
    };
    let layout = match layout.as_str() {
        "whole" => {
            if block_length.is_some() {
                return Err("option `block_length` does not belong to blocks=whole".into());
            }
            BlocksLayout::Whole
        }
        "after_prompt" => BlocksLayout::AfterPrompt {
            length: need_length("after_prompt")?,
        },
        "aligned" => BlocksLayout::Aligned {
            size: need_length("aligned")?,
        },
        other => {
            return Err(format!(
            "option `blocks`: unknown part `{other}`; expected one of whole, after_prompt, aligned"
        ))
        }
    };
    let blocks_in_gen = match layout {
        BlocksLayout::Whole => 1,
        BlocksLayout::AfterPrompt { length } => {
            if !gen_length.is_multiple_of(length) {
                return Err(format!(
                    "option `block_length` ({length}) must divide gen_length ({gen_length})"
                ));
            }
            gen_length / length
        }
        BlocksLayout::Aligned { .. } => 0,
    };
    let steps_per_block = match (opts.usize("steps")?, opts.usize("steps_per_block")?) {
        (Some(_), Some(_)) => {
            return Err("options `steps` and `steps_per_block` exclude each other".into())
        }
        (Some(0), None) | (None, Some(0)) => return Err("option `steps` must be at least 1".into()),
        (Some(steps), None) if blocks_in_gen == 0 => {
            return Err(format!(
                "option `steps` ({steps}): blocks=aligned takes steps_per_block"
            ))
        }
        (Some(steps), None) => {
            if !steps.is_multiple_of(blocks_in_gen) {
                return Err(format!(
                    "option `steps` ({steps}) must be divisible by the number of blocks ({blocks_in_gen})"
                ));
            }
            Some(steps / blocks_in_gen)
        }
        (None, Some(n)) => Some(n),
        (None, None) => None,
    };
    let run = match opts.take("loop").as_deref() {
        Some("fixed") => BlockLoop::Fixed,
        Some("at_most") => BlockLoop::AtMost,
        Some("until_filled") => BlockLoop::UntilFilled,
        Some(other) => {
            return Err(format!(
            "option `loop`: unknown part `{other}`; expected one of fixed, at_most, until_filled"
        ))
        }
        None if steps_per_block.is_none() => BlockLoop::UntilFilled,
        None if matches!(
            count,
            Count::TopK { .. } | Count::Timesteps { .. } | Count::Bernoulli { .. }
        ) =>
        {
            BlockLoop::Fixed
        }
        None => BlockLoop::AtMost,
    };
    if run != BlockLoop::UntilFilled && steps_per_block.is_none() {
        return Err(format!(
            "option `steps` is required by loop={}",
            if run == BlockLoop::Fixed {
                "fixed"
            } else {
                "at_most"
            }
        ));
    }

    let mut count = count;
    if let Count::Timesteps { steps, .. } | Count::Bernoulli { steps, .. } = &mut count {
        *steps = steps_per_block.ok_or_else(|| {
            format!("option `steps` is required by count={count_name} (its timesteps)")
        })?;
    }

    let eligible = match opts.take("eligible").as_deref() {
        None | Some("block") => Eligible::Block,
        Some("all") => Eligible::All,
        Some("dilated") => Eligible::Dilated {
            groups: positive(opts, "groups", 2)?,
        },
        Some(other) => {
            return Err(format!(
                "option `eligible`: unknown part `{other}`; expected one of block, all, dilated"
            ))
        }
    };

    let temperature = opts.f64("temperature")?.unwrap_or(0.0);
    non_negative("temperature", temperature)?;
    let top_p = opts.optional("top_p", Options::parse_f64)?;
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(format!("option `top_p` must be in (0, 1], found {p}"));
        }
    }
    let top_k = opts.optional("top_k", Options::parse_usize)?;
    if top_k == Some(0) {
        return Err("option `top_k` must be at least 1".into());
    }
    let forbid_mask = opts.bool("forbid_mask")?.unwrap_or(false);
    let cfg_scale = opts.f64("cfg_scale")?.unwrap_or(0.0);
    non_negative("cfg_scale", cfg_scale)?;
    let forbid_eot = opts.bool("forbid_eot")?.unwrap_or(false);
    let rule = match opts.take("token").as_deref() {
        None | Some("gumbel_max") => TokenRule::GumbelMax,
        Some("dream") => TokenRule::Dream,
        Some(other) => {
            return Err(format!(
                "option `token`: unknown part `{other}`; expected one of gumbel_max, dream"
            ))
        }
    };
    if rule == TokenRule::GumbelMax && score == Score::Unranked {
        return Err("count=bernoulli chooses tokens after its draw: it takes token=dream".into());
    }

    if let Some((key, _)) = opts
        .remaining()
        .iter()
        .find(|(k, _)| PART_OPTIONS.contains(&k.as_str()))
    {
        return Err(format!(
            "option `{key}` is not read by the parts chosen (score={score_name}, count={count_name})"
        ));
    }
    let mut spec = format!("{COMPOSE}:gen_length={gen_length}");
    for (k, v) in &given {
        if k != "gen_length" {
            spec += &format!(",{k}={v}");
        }
    }
    Ok(Composed {
        name: COMPOSE,
        spec,
        gen_length,
        blocks: Blocks {
            layout,
            steps_per_block,
            run,
        },
        eligible,
        token: TokenChoice {
            temperature,
            top_k,
            top_p,
            forbid_mask,
            forbid_eot,
            rule,
        },
        score,
        count,
        cfg_scale: (cfg_scale > 0.0).then_some(cfg_scale),
    })
}

fn required_f64(opts: &mut Options, key: &str, count: &str) -> Result<f64, String> {
    opts.f64(key)?
        .ok_or_else(|| format!("option `{key}` is required by count={count}"))
}

fn check_count(count: &Count) -> Result<(), String> {
    match *count {
        Count::Threshold { threshold } | Count::ThresholdElseTopK { threshold } => {
            if !threshold.is_finite() {
                return Err(format!(
                    "option `threshold` must be a finite number, found {threshold}"
                ));
            }
        }
        Count::Factor { factor } => {
            if !(factor.is_finite() && factor > 0.0) {
                return Err(format!(
                    "option `factor` must be a number > 0, found {factor}"
                ));
            }
        }
        Count::EntropyBudget { gamma } => non_negative("gamma", gamma)?,
        Count::ReadyElseTopK {
            conf_threshold,
            kl_threshold,
            ..
        } => {
            unit_interval("conf_threshold", conf_threshold)?;
            if !(kl_threshold.is_finite() && kl_threshold > 0.0) {
                return Err(format!(
                    "option `kl_threshold` must be a finite number > 0, found {kl_threshold}"
                ));
            }
        }
        Count::Timesteps { eps, alg_temp, .. } => {
            unit_interval("eps", eps)?;
            non_negative("alg_temp", alg_temp)?;
        }
        Count::Bernoulli { eps, .. } => unit_interval("eps", eps)?,
        Count::TopK { .. } => {}
    }
    Ok(())
}
