//! The published 2025 samplers as compositions of parts, with their upstream option names
//! and defaults (`fixtures/parity/SCHEDULES.md` has the rules, dtypes and quirks).

use std::path::Path;

use super::background::Background;
use super::blocks::{BlockLoop, Blocks, BlocksLayout};
use super::composed::Composed;
use super::count::{Count, Curve};
use super::eligible::Eligible;
use super::score::Score;
use super::token::{TokenChoice, TokenRule};
use crate::decode::options::Options;
use crate::decode::spec::{
    DreamAlg, DreamParams, FixedOrder, FixedParams, LladaParams, Remasking, ThresholdParams,
    TokensPerStep,
};

/// The preset names, for error messages.
pub const PRESETS: &str = "fastdllm, eb, pc, klass, llada2";

/// Builds preset `name` from its options, or `None` when `name` is not a preset.
pub(crate) fn build_preset(name: &str, opts: &mut Options) -> Result<Option<Composed>, String> {
    Ok(Some(match name {
        "fastdllm" => fastdllm(opts)?,
        "eb" => eb(opts)?,
        "pc" => pc(opts)?,
        "klass" => klass(opts)?,
        "llada2" => llada2(opts)?,
        _ => return Ok(None),
    }))
}

/// Fast-dLLM's `generate` (NVlabs/Fast-dLLM `llada/generate.py`): blocks after the prompt,
/// each decoded until filled, float64 confidence; threshold or factor parallel decoding,
/// or LLaDA's scheduled top-k when neither is set.
fn fastdllm(opts: &mut Options) -> Result<Composed, String> {
    let gen_length = positive(opts, "gen_length", 128)?;
    let steps = positive(opts, "steps", 128)?;
    let block_length = positive(opts, "block_length", 128)?;
    let threshold = opts.optional("threshold", Options::parse_f64)?;
    let factor = opts.optional("factor", Options::parse_f64)?;
    upstream_only(opts, &["remasking"])?;
    let token = temperature(opts)?;
    let steps_per_block = llada_blocks(gen_length, block_length, steps)?;
    if let Some(t) = threshold {
        unit_interval("threshold", t)?;
    }
    if let Some(f) = factor {
        if !(f.is_finite() && f > 0.0) {
            return Err(format!("option `factor` must be a number > 0, found {f}"));
        }
    }
    // Upstream: the factor rule takes priority over the threshold.
    let count = match (factor, threshold) {
        (Some(factor), _) => Count::Factor { factor },
        (None, Some(threshold)) => Count::Threshold { threshold },
        (None, None) => Count::TopK { curve: Curve::Even },
    };
    let spec =
        format!("fastdllm:gen_length={gen_length},steps={steps},block_length={block_length}")
            + &given("threshold", threshold)
            + &given("factor", factor)
            + &token_suffix(&token);
    Ok(Composed {
        name: "fastdllm",
        spec,
        gen_length,
        blocks: Blocks::after_prompt(block_length, steps_per_block, BlockLoop::UntilFilled),
        eligible: Eligible::Block,
        token,
        score: Score::Confidence64,
        count,
        cfg_scale: None,
    })
}

/// The EB-sampler (entropy-bounded unmasking, as in NEUIR/PC-Sampler's
/// `generate_with_eb_sampler`): no blocks, lowest entropy first, within an entropy budget.
fn eb(opts: &mut Options) -> Result<Composed, String> {
    let gen_length = positive(opts, "gen_length", 128)?;
    let gamma = opts.f64("gamma")?.unwrap_or(0.1);
    if !(gamma.is_finite() && gamma >= 0.0) {
        return Err(format!(
            "option `gamma` must be a finite number >= 0, found {gamma}"
        ));
    }
    upstream_only(opts, &["cfg_scale"])?;
    let token = temperature(opts)?;
    Ok(Composed {
        name: "eb",
        spec: format!("eb:gen_length={gen_length},gamma={gamma}") + &token_suffix(&token),
        gen_length,
        blocks: Blocks {
            layout: BlocksLayout::Whole,
            steps_per_block: None,
            run: BlockLoop::UntilFilled,
        },
        eligible: Eligible::Block,
        token,
        score: Score::NegEntropy,
        count: Count::EntropyBudget { gamma },
        cfg_scale: None,
    })
}

/// PC-Sampler (NEUIR/PC-Sampler `generate_with_pc_sampler`): LLaDA's blocks and schedule,
/// positions ranked by a position-weighted, frequency-calibrated confidence.
fn pc(opts: &mut Options) -> Result<Composed, String> {
    let gen_length = positive(opts, "gen_length", 128)?;
    let steps = positive(opts, "steps", 128)?;
    let block_length = positive(opts, "block_length", 128)?;
    let lambda = opts.f64("lambda")?.unwrap_or(0.25);
    let alpha = opts.f64("alpha")?.unwrap_or(10.0);
    let background = match opts.take("background") {
        Some(path) => Background::open(Path::new(&path))?,
        None => Background::missing(),
    };
    upstream_only(opts, &["remasking", "cfg_scale"])?;
    let token = temperature(opts)?;
    let steps_per_block = llada_blocks(gen_length, block_length, steps)?;
    if !(lambda.is_finite() && lambda >= 0.0) {
        return Err(format!(
            "option `lambda` must be a finite number >= 0, found {lambda}"
        ));
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(format!(
            "option `alpha` must be a finite number > 0, found {alpha}"
        ));
    }
    Ok(Composed {
        name: "pc",
        spec: format!(
            "pc:gen_length={gen_length},steps={steps},block_length={block_length},lambda={lambda},alpha={alpha}{}",
            match background.is_missing() {
                true => String::new(),
                false => format!(",background={}", background.path().display()),
            }
        ) + &token_suffix(&token),
        gen_length,
        blocks: Blocks::after_prompt(block_length, steps_per_block, BlockLoop::Fixed),
        eligible: Eligible::Block,
        token,
        score: Score::Pc {
            lambda,
            alpha,
            background,
        },
        count: Count::TopK { curve: Curve::Even },
        cfg_scale: None,
    })
}

/// KLASS (shkim0116/KLASS `stable_confident_decode`, `alg="klass"`): blocks after the prompt
/// with at most `steps / blocks` calls each; positions whose distribution stayed KL-stable
/// and whose float64 confidence is above the threshold commit together, otherwise LLaDA's
/// scheduled top-k.
fn klass(opts: &mut Options) -> Result<Composed, String> {
    let gen_length = positive(opts, "gen_length", 128)?;
    let steps = positive(opts, "steps", 128)?;
    let block_length = positive(opts, "block_length", 128)?;
    let conf_threshold = opts.f64("conf_threshold")?.unwrap_or(0.9);
    let kl_threshold = opts.f64("kl_threshold")?.unwrap_or(0.01);
    let history = positive(opts, "history", 2)?;
    let token = temperature(opts)?;
    let steps_per_block = llada_blocks(gen_length, block_length, steps)?;
    unit_interval("conf_threshold", conf_threshold)?;
    if !(kl_threshold.is_finite() && kl_threshold > 0.0) {
        return Err(format!(
            "option `kl_threshold` must be a finite number > 0, found {kl_threshold}"
        ));
    }
    Ok(Composed {
        name: "klass",
        spec: format!(
            "klass:gen_length={gen_length},steps={steps},block_length={block_length},conf_threshold={conf_threshold},kl_threshold={kl_threshold},history={history}"
        ) + &token_suffix(&token),
        gen_length,
        blocks: Blocks::after_prompt(block_length, steps_per_block, BlockLoop::AtMost),
        eligible: Eligible::Block,
        token,
        score: Score::Confidence64,
        count: Count::ReadyElseTopK {
            conf_threshold,
            kl_threshold,
            history,
        },
        cfg_scale: None,
    })
}

/// The LLaDA2.0 block sampler (`LLaDA2Sampler.sample` in ZHZisZZ/dllm): blocks aligned to
/// position 0, the model sees the sequence up to the current block's end, every
/// above-threshold position commits when there are enough of them, otherwise the top-k.
fn llada2(opts: &mut Options) -> Result<Composed, String> {
    let max_new_tokens = positive(opts, "max_new_tokens", 128)?;
    let block_size = positive(opts, "block_size", 32)?;
    let steps_per_block = positive(opts, "steps_per_block", 32)?;
    let threshold = opts.f64("threshold")?.unwrap_or(0.95);
    let minimal_topk = positive(opts, "minimal_topk", 1)?;
    let temperature = opts.f64("temperature")?.unwrap_or(0.0);
    let top_p = opts.optional("top_p", Options::parse_f64)?;
    let top_k = opts.optional("top_k", Options::parse_usize)?;
    unit_interval("threshold", threshold)?;
    non_negative("temperature", temperature)?;
    if let Some(p) = top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(format!("option `top_p` must be in (0, 1], found {p}"));
        }
    }
    if top_k == Some(0) {
        return Err("option `top_k` must be at least 1".into());
    }
    if minimal_topk > max_new_tokens {
        return Err(format!(
            "option `minimal_topk` ({minimal_topk}) must not exceed max_new_tokens ({max_new_tokens})"
        ));
    }
    let used_steps = steps_per_block.min(max_new_tokens / minimal_topk);
    let token = TokenChoice {
        temperature,
        top_k,
        top_p,
        forbid_mask: false,
        forbid_eot: false,
        rule: TokenRule::GumbelMax,
    };
    let spec = format!(
        "llada2:max_new_tokens={max_new_tokens},block_size={block_size},steps_per_block={steps_per_block},threshold={threshold},minimal_topk={minimal_topk}"
    ) + &token_suffix(&token)
        + &given("top_p", top_p)
        + &given("top_k", top_k);
    Ok(Composed {
        name: "llada2",
        spec,
        gen_length: max_new_tokens,
        blocks: Blocks {
            layout: BlocksLayout::Aligned { size: block_size },
            steps_per_block: Some(used_steps),
            run: BlockLoop::AtMost,
        },
        eligible: Eligible::Block,
        token,
        score: Score::Confidence,
        count: Count::ThresholdElseTopK { threshold },
        cfg_scale: None,
    })
}

/// LLaDA's `generate()` as parts: semi-autoregressive blocks after the prompt with
/// `steps / blocks` calls each, the even split of each block's masks, float32 confidence or
/// LLaDA's random draws, Gumbel-max tokens, classifier-free guidance. Reproduces every
/// official trace (`fixtures/parity/llada-tiny/decode_traces.json`).
pub(crate) fn llada(p: &LladaParams, spec: String) -> Composed {
    Composed {
        name: "llada",
        spec,
        gen_length: p.gen_length,
        blocks: Blocks::after_prompt(
            p.block_length,
            p.steps / (p.gen_length / p.block_length),
            BlockLoop::Fixed,
        ),
        eligible: Eligible::Block,
        token: TokenChoice {
            temperature: p.temperature,
            forbid_eot: p.forbid_eot,
            ..TokenChoice::argmax()
        },
        score: match p.remasking {
            Remasking::LowConfidence => Score::Confidence,
            Remasking::Random => Score::Random,
        },
        count: Count::TopK { curve: Curve::Even },
        cfg_scale: (p.cfg_scale > 0.0).then_some(p.cfg_scale),
    }
}

/// Dream's `diffusion_generate()` (`DreamGenerationMixin._sample`) as parts: one block of
/// `steps` calls over every masked position; Dream's token rule (temperature, top-p, top-k,
/// softmax; categorical draws); the `alg` confidence (`maskgit_plus`: the token's
/// probability, `topk_margin`, `entropy`) ranked over the timestep count, or for `origin` a
/// Bernoulli draw per position. Reproduces every official trace
/// (`fixtures/parity/dream-tiny/decode_traces.json`).
pub(crate) fn dream(p: &DreamParams, spec: String) -> Composed {
    let ranked = |score| {
        (
            score,
            Count::Timesteps {
                eps: p.eps,
                steps: p.steps,
                alg_temp: p.alg_temp,
            },
        )
    };
    let (score, count) = match p.alg {
        DreamAlg::Origin => (
            Score::Unranked,
            Count::Bernoulli {
                eps: p.eps,
                steps: p.steps,
            },
        ),
        DreamAlg::MaskgitPlus => ranked(Score::Confidence),
        DreamAlg::TopkMargin => ranked(Score::Margin),
        DreamAlg::Entropy => ranked(Score::SumPLogP),
    };
    Composed {
        name: "dream",
        spec,
        gen_length: p.max_new_tokens,
        blocks: Blocks {
            layout: BlocksLayout::Whole,
            steps_per_block: Some(p.steps),
            run: BlockLoop::Fixed,
        },
        eligible: Eligible::All,
        token: TokenChoice {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            forbid_mask: false,
            forbid_eot: p.forbid_eot,
            rule: TokenRule::Dream,
        },
        score,
        count,
        cfg_scale: None,
    }
}

/// The crate's `threshold` schedule as parts: blocks after the prompt, each decoded until
/// filled; float32 confidence; the best position and every one at or above `tau`; never the
/// mask id.
pub(crate) fn threshold(p: &ThresholdParams, spec: String) -> Composed {
    Composed {
        name: "threshold",
        spec,
        gen_length: p.gen_length,
        blocks: Blocks {
            layout: BlocksLayout::AfterPrompt {
                length: p.block_length,
            },
            steps_per_block: None,
            run: BlockLoop::UntilFilled,
        },
        eligible: Eligible::Block,
        token: TokenChoice {
            temperature: p.temperature,
            forbid_mask: true,
            forbid_eot: p.forbid_eot,
            ..TokenChoice::argmax()
        },
        score: Score::Confidence,
        count: Count::Threshold { threshold: p.tau },
        cfg_scale: None,
    }
}

/// The crate's `fixed` schedule as parts: one block, `k` positions per step (all of them
/// for `k = all`), the most confident or uniformly random ones; never the mask id.
pub(crate) fn fixed(p: &FixedParams, spec: String) -> Composed {
    let k = match p.k {
        TokensPerStep::Count(k) => k,
        TokensPerStep::All => p.gen_length,
    };
    Composed {
        name: "fixed",
        spec,
        gen_length: p.gen_length,
        blocks: Blocks {
            layout: BlocksLayout::Whole,
            steps_per_block: Some(p.gen_length.div_ceil(k)),
            run: BlockLoop::Fixed,
        },
        eligible: Eligible::Block,
        token: TokenChoice {
            temperature: p.temperature,
            forbid_mask: true,
            forbid_eot: p.forbid_eot,
            ..TokenChoice::argmax()
        },
        score: match p.order {
            FixedOrder::Confidence => Score::Confidence,
            FixedOrder::Random => Score::Random,
        },
        count: Count::TopK {
            curve: Curve::Fixed(k),
        },
        cfg_scale: None,
    }
}

/// Steps per block of LLaDA-style blocks after the prompt (upstream asserts both divisions).
pub(super) fn llada_blocks(
    gen_length: usize,
    block_length: usize,
    steps: usize,
) -> Result<usize, String> {
    if !gen_length.is_multiple_of(block_length) {
        return Err(format!(
            "option `block_length` ({block_length}) must divide gen_length ({gen_length})"
        ));
    }
    let blocks = gen_length / block_length;
    if !steps.is_multiple_of(blocks) {
        return Err(format!(
            "option `steps` ({steps}) must be divisible by the number of blocks (gen_length / block_length = {blocks})"
        ));
    }
    Ok(steps / blocks)
}

pub(super) fn positive(opts: &mut Options, key: &str, default: usize) -> Result<usize, String> {
    let v = opts.usize(key)?.unwrap_or(default);
    if v == 0 {
        return Err(format!("option `{key}` must be at least 1"));
    }
    Ok(v)
}

pub(super) fn unit_interval(key: &str, v: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(format!("option `{key}` must be in [0, 1], found {v}"))
    }
}

pub(super) fn non_negative(key: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!(
            "option `{key}` must be a finite number >= 0, found {v}"
        ))
    }
}

/// The `temperature` option (LLaDA-style Gumbel-max; 0, the default, is greedy).
pub(super) fn temperature(opts: &mut Options) -> Result<TokenChoice, String> {
    let t = opts.f64("temperature")?.unwrap_or(0.0);
    non_negative("temperature", t)?;
    Ok(TokenChoice {
        temperature: t,
        ..TokenChoice::argmax()
    })
}

/// Upstream arguments the preset takes at their one supported value only, so that a call
/// copied from the upstream code reads as written: `remasking=low_confidence` (Fast-dLLM,
/// PC-Sampler) and `cfg_scale=0` (EB-sampler, PC-Sampler). Any other value is an error.
fn upstream_only(opts: &mut Options, keys: &[&str]) -> Result<(), String> {
    for &key in keys {
        match (key, opts.take(key).as_deref()) {
            (_, None) | ("remasking", Some("low_confidence")) => {}
            ("cfg_scale", Some(v)) if v.parse::<f64>() == Ok(0.0) => {}
            (_, Some(v)) => {
                return Err(format!(
                    "option `{key}`: only upstream's default is supported here, found `{v}`"
                ))
            }
        }
    }
    Ok(())
}

/// `,key=value` when the option was given, for a preset's spec string.
fn given(key: &str, value: Option<impl std::fmt::Display>) -> String {
    value.map(|v| format!(",{key}={v}")).unwrap_or_default()
}

fn token_suffix(token: &TokenChoice) -> String {
    if token.temperature == 0.0 {
        String::new()
    } else {
        format!(",temperature={}", token.temperature)
    }
}
