//! LLaDA2.0 (`model_type: "llada2_moe"`, LLaDA2.0-mini / flash): a block-diffusion
//! mixture-of-experts model.
//!
//! Reference implementation: `modeling_llada2_moe.py` (class `LLaDA2MoeModelLM`) and its
//! sampler; the copy this file was checked against is in `fixtures/parity/README.md`
//! (section 7).
//!
//! Layer: `h = x + dense(SDPA(rope(q), rope(k), v))` with q/k/v from one fused
//! `query_key_value` projection of `input_layernorm(x)`, qk-norm per head before RoPE,
//! **partial RoPE** (the first `head_dim · partial_rotary_factor` values of each head) and
//! grouped-query attention; `out = h + FFN(post_attention_layernorm(h))`, a dense SwiGLU on the
//! first `first_k_dense_replace` layers and otherwise the routed experts plus the shared experts.
//! Routing: `s = sigmoid(gate(y))` in float32; the experts are chosen by `s + expert_bias`
//! (the bias serves selection only) within the `topk_group` best of `n_group` groups, and
//! weighted by their unbiased `s`, normalised to sum 1 and scaled by `routed_scaling_factor`.
//!
//! **Attention.** The model's own sampler runs it block-causally: positions fall in blocks of
//! `block_length` from position 0, and each attends to its block and every earlier one. The
//! probe and the decoders use that attention ([`Llada2Model::with_block_length`]);
//! `None` gives the bidirectional attention of a call without a mask.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::moe::{Experts, FeedForward, MoeLayer, Router};
use super::{check_inputs, normalise_valid, Context, Linear, RmsNorm, Rope, SwiGlu};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// The mask id of the released LLaDA2.0 sampler (`mask_id=156895`); the config does not carry one.
const RELEASED_MASK_ID: i64 = 156_895;

/// The block length of the released sampler when `generation_config.json` gives none.
pub const DEFAULT_BLOCK_LENGTH: i64 = 32;

/// `config.json` of a LLaDA2.0 checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Llada2Config {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    /// `None` means `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<i64>,
    pub vocab_size: i64,
    /// Width of the dense layers' SwiGLU.
    pub intermediate_size: i64,
    /// Width of each routed expert (and, times `num_shared_experts`, of the shared expert).
    pub moe_intermediate_size: i64,
    pub num_experts: i64,
    pub num_experts_per_tok: i64,
    #[serde(default = "default_one_i")]
    pub n_group: i64,
    #[serde(default = "default_one_i")]
    pub topk_group: i64,
    #[serde(default)]
    pub num_shared_experts: i64,
    #[serde(default)]
    pub first_k_dense_replace: i64,
    #[serde(default = "default_one_f")]
    pub routed_scaling_factor: f64,
    #[serde(default = "default_one_f")]
    pub partial_rotary_factor: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_true")]
    pub use_qk_norm: bool,
    /// Bias on `query_key_value`.
    #[serde(default)]
    pub use_qkv_bias: bool,
    /// Bias on the attention output projection `dense`.
    #[serde(default)]
    pub use_bias: bool,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Normalising the LM head's rows is not implemented; only `false` loads.
    #[serde(default)]
    pub norm_head: bool,
    #[serde(default = "default_max_len")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub mask_token_id: Option<i64>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub use_sliding_window: bool,
}

fn default_one_i() -> i64 {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_rope_theta() -> f64 {
    600_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_len() -> i64 {
    32_768
}
fn default_act() -> String {
    "silu".into()
}

impl Llada2Config {
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// Rotated values per head: `int(head_dim · partial_rotary_factor)`, as upstream computes it.
    pub fn rotary_dim(&self) -> i64 {
        (self.head_dim() as f64 * self.partial_rotary_factor) as i64
    }

    pub fn mask_id(&self) -> i64 {
        self.mask_token_id.unwrap_or(RELEASED_MASK_ID)
    }

    /// Rejects configs this implementation would compute wrongly, naming the key.
    pub fn validate(&self, path: &Path) -> Result<(), ProbeError> {
        let fail = |key: &str, why: String| {
            Err(ProbeError::Config {
                path: path.to_path_buf(),
                message: format!("key `{key}`: {why}"),
            })
        };
        super::require_positive(
            path,
            &[
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("num_key_value_heads", self.kv_heads()),
                ("head_dim", self.head_dim()),
                ("vocab_size", self.vocab_size),
                ("intermediate_size", self.intermediate_size),
                ("moe_intermediate_size", self.moe_intermediate_size),
                ("num_experts", self.num_experts),
                ("num_experts_per_tok", self.num_experts_per_tok),
                ("n_group", self.n_group),
                ("topk_group", self.topk_group),
            ],
        )?;
        if self.num_attention_heads % self.kv_heads() != 0 {
            return fail(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.kv_heads(),
                    self.num_attention_heads
                ),
            );
        }
        if self.num_experts % self.n_group != 0 {
            return fail(
                "n_group",
                format!(
                    "{} does not divide num_experts {}",
                    self.n_group, self.num_experts
                ),
            );
        }
        if self.topk_group > self.n_group {
            return fail(
                "topk_group",
                format!("{} is more than n_group {}", self.topk_group, self.n_group),
            );
        }
        let selectable = self.topk_group * (self.num_experts / self.n_group);
        if self.num_experts_per_tok > selectable {
            return fail(
                "num_experts_per_tok",
                format!(
                    "{} is more than the {selectable} experts of the topk_group best groups",
                    self.num_experts_per_tok
                ),
            );
        }
        if !(0..=self.num_hidden_layers).contains(&self.first_k_dense_replace) {
            return fail(
                "first_k_dense_replace",
                format!(
                    "{} is outside 0..={}",
                    self.first_k_dense_replace, self.num_hidden_layers
                ),
            );
        }
        if self.num_shared_experts < 0 {
            return fail(
                "num_shared_experts",
                format!("must not be negative, is {}", self.num_shared_experts),
            );
        }
        let rd = self.rotary_dim();
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0)
            || rd % 2 != 0
            || rd == 0
        {
            return fail(
                "partial_rotary_factor",
                format!(
                    "{} gives {rd} rotated values of {}; RoPE needs an even number > 0",
                    self.partial_rotary_factor,
                    self.head_dim()
                ),
            );
        }
        if let Some(m) = self.mask_token_id {
            if !(0..self.vocab_size).contains(&m) {
                return fail(
                    "mask_token_id",
                    format!("{m} is outside the vocabulary of {}", self.vocab_size),
                );
            }
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return fail(
                "rope_theta",
                format!("must be positive, is {}", self.rope_theta),
            );
        }
        if self.hidden_act != "silu" {
            return fail(
                "hidden_act",
                format!("`{}` is not supported (supported: silu)", self.hidden_act),
            );
        }
        if self.norm_head {
            return fail(
                "norm_head",
                "true is not supported (supported: false)".into(),
            );
        }
        if self.use_sliding_window {
            return fail(
                "use_sliding_window",
                "true is not supported (supported: false)".into(),
            );
        }
        if self.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            return fail("rope_scaling", "only null is supported".into());
        }
        Ok(())
    }
}

/// `model.layers.{i}.attention`.
#[derive(Debug)]
struct Attention {
    query_key_value: Linear,
    query_layernorm: Option<RmsNorm>,
    key_layernorm: Option<RmsNorm>,
    dense: Linear,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
    rotary_dim: i64,
}

impl Attention {
    fn load(src: &mut dyn WeightSource, cfg: &Llada2Config, p: &str) -> Result<Self, ProbeError> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (h, kv) = (cfg.num_attention_heads, cfg.kv_heads());
        let norm = |src: &mut dyn WeightSource, name: &str| {
            RmsNorm::load(
                src,
                &format!("{p}.{name}"),
                hd,
                cfg.rms_norm_eps,
                true,
                false,
            )
        };
        Ok(Attention {
            query_key_value: Linear::load(
                src,
                &format!("{p}.query_key_value"),
                d,
                (h + 2 * kv) * hd,
                cfg.use_qkv_bias,
            )?,
            query_layernorm: cfg
                .use_qk_norm
                .then(|| norm(src, "query_layernorm"))
                .transpose()?,
            key_layernorm: cfg
                .use_qk_norm
                .then(|| norm(src, "key_layernorm"))
                .transpose()?,
            dense: Linear::load(src, &format!("{p}.dense"), h * hd, d, cfg.use_bias)?,
            n_heads: h,
            n_kv_heads: kv,
            head_dim: hd,
            rotary_dim: cfg.rotary_dim(),
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let (b, l) = (x.size()[0], x.size()[1]);
        let (h, kv) = (self.n_heads, self.n_kv_heads);
        let qkv = self
            .query_key_value
            .forward(x)
            .view([b, l, h + 2 * kv, self.head_dim]);
        let norm = |t: Tensor, norm: &Option<RmsNorm>| match norm {
            Some(norm) => norm.forward(&t),
            None => t,
        };
        let q = norm(qkv.narrow(2, 0, h), &self.query_layernorm).transpose(1, 2);
        let k = norm(qkv.narrow(2, h, kv), &self.key_layernorm).transpose(1, 2);
        let v = qkv.narrow(2, h + kv, kv).transpose(1, 2);
        let q = ctx.rope_partial(&q, self.rotary_dim);
        let k = ctx.rope_partial(&k, self.rotary_dim);
        let att = ctx.attention(&q, &k, &v);
        self.dense
            .forward(&att.transpose(1, 2).reshape([b, l, h * self.head_dim]))
    }
}

/// LLaDA2.0's router (`model.layers.{i}.mlp.gate`): sigmoid scores; experts chosen by the
/// biased scores within the best groups, weighted by the unbiased ones.
#[derive(Debug)]
struct GroupRouter {
    /// `mlp.gate.weight`, `[num_experts, hidden]`.
    gate: Tensor,
    /// `mlp.gate.expert_bias`: added to the scores for choosing experts, not for weighting them.
    expert_bias: Tensor,
    top_k: i64,
    n_group: i64,
    topk_group: i64,
    routed_scaling_factor: f64,
}

impl Router for GroupRouter {
    fn route(&self, y: &Tensor) -> (Tensor, Tensor) {
        let n = y.size()[0];
        let e = self.gate.size()[0];
        // The router runs in float32 whatever the model's dtype (`router_dtype: fp32`).
        let logits = y
            .to_kind(Kind::Float)
            .linear::<Tensor>(&self.gate.to_kind(Kind::Float), None);
        let scores = logits.sigmoid();
        let biased = &scores + self.expert_bias.to_kind(Kind::Float);
        // Group-limited selection: a group's score is the sum of its two best biased scores;
        // experts outside the topk_group best groups cannot be chosen.
        let per_group = e / self.n_group;
        let grouped = biased.view([n, self.n_group, per_group]);
        let group_scores = grouped
            .topk(per_group.min(2), -1, true, true)
            .0
            .sum_dim_intlist(-1, false, Kind::Float);
        let (_, best_groups) = group_scores.topk(self.topk_group, -1, true, false);
        let keep = Tensor::zeros([n, self.n_group], (Kind::Float, y.device()))
            .scatter_value(1, &best_groups, 1.0)
            .unsqueeze(-1)
            .expand([n, self.n_group, per_group], false)
            .reshape([n, e])
            .gt(0.5);
        let candidates = biased.masked_fill(&keep.logical_not(), f64::NEG_INFINITY);
        let (_, chosen) = candidates.topk(self.top_k, -1, true, false);
        let mut weights = scores.gather(1, &chosen, false);
        if self.top_k > 1 {
            weights = &weights / (weights.sum_dim_intlist(-1, true, Kind::Float) + 1e-20);
        }
        (chosen, weights * self.routed_scaling_factor)
    }
}

/// The MoE feed-forward under `p` (`model.layers.{i}.mlp`): router, experts, shared experts.
fn load_moe(
    src: &mut dyn WeightSource,
    cfg: &Llada2Config,
    p: &str,
) -> Result<MoeLayer<GroupRouter>, ProbeError> {
    let (d, e) = (cfg.hidden_size, cfg.num_experts);
    Ok(MoeLayer {
        router: GroupRouter {
            gate: src.tensor(&format!("{p}.gate.weight"), &[e, d])?,
            expert_bias: src.tensor(&format!("{p}.gate.expert_bias"), &[e])?,
            top_k: cfg.num_experts_per_tok,
            n_group: cfg.n_group,
            topk_group: cfg.topk_group,
            routed_scaling_factor: cfg.routed_scaling_factor,
        },
        experts: Experts::load(
            src,
            &format!("{p}.experts"),
            e,
            d,
            cfg.moe_intermediate_size,
        )?,
        shared: (cfg.num_shared_experts > 0)
            .then(|| {
                SwiGlu::load(
                    src,
                    &format!("{p}.shared_experts"),
                    d,
                    cfg.moe_intermediate_size * cfg.num_shared_experts,
                )
            })
            .transpose()?,
    })
}

/// `model.layers.{i}`.
#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    attention: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: FeedForward<GroupRouter>,
}

impl DecoderLayer {
    fn load(src: &mut dyn WeightSource, cfg: &Llada2Config, i: i64) -> Result<Self, ProbeError> {
        let p = format!("model.layers.{i}");
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let norm = |src: &mut dyn WeightSource, name: &str| {
            RmsNorm::load(src, &format!("{p}.{name}"), d, eps, true, false)
        };
        Ok(DecoderLayer {
            input_layernorm: norm(src, "input_layernorm")?,
            attention: Attention::load(src, cfg, &format!("{p}.attention"))?,
            post_attention_layernorm: norm(src, "post_attention_layernorm")?,
            mlp: if i < cfg.first_k_dense_replace {
                FeedForward::Dense(SwiGlu::load(
                    src,
                    &format!("{p}.mlp"),
                    d,
                    cfg.intermediate_size,
                )?)
            } else {
                FeedForward::Moe(load_moe(src, cfg, &format!("{p}.mlp"))?)
            },
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let x = x + self
            .attention
            .forward(&self.input_layernorm.forward(x), ctx);
        let ffn = self.mlp.forward(&self.post_attention_layernorm.forward(&x));
        x + ffn
    }
}

/// A LLaDA2.0 model (`LLaDA2MoeModelLM`).
#[derive(Debug)]
pub struct Llada2Model {
    cfg: Llada2Config,
    word_embeddings: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    /// Block-causal attention with blocks of this length; `None`: bidirectional.
    block_length: Option<i64>,
    device: Device,
}

impl Llada2Model {
    /// Builds the model, attending block-causally with [`DEFAULT_BLOCK_LENGTH`].
    pub fn new(
        cfg: &Llada2Config,
        src: &mut dyn WeightSource,
        device: Device,
    ) -> Result<Self, ProbeError> {
        cfg.validate(Path::new("config.json"))?;
        let d = cfg.hidden_size;
        let word_embeddings = src.tensor("model.word_embeddings.weight", &[cfg.vocab_size, d])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(src, cfg, i))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(src, "model.norm", d, cfg.rms_norm_eps, true, false)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::tied(&word_embeddings)
        } else {
            Linear::load(src, "lm_head", d, cfg.vocab_size, false)?
        };
        let rope = Rope::new(
            cfg.rotary_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            device,
        );
        Ok(Llada2Model {
            cfg: cfg.clone(),
            word_embeddings,
            layers,
            norm,
            lm_head,
            rope,
            block_length: Some(DEFAULT_BLOCK_LENGTH),
            device,
        })
    }

    /// Attends block-causally with blocks of `block_length` (the model's sampler), or
    /// bidirectionally with `None`.
    pub fn with_block_length(mut self, block_length: Option<i64>) -> Result<Self, ProbeError> {
        if let Some(b) = block_length {
            if b < 1 {
                return Err(ProbeError::Input(format!(
                    "the block length must be at least 1, is {b}"
                )));
            }
        }
        self.block_length = block_length;
        Ok(self)
    }

    pub fn block_length(&self) -> Option<i64> {
        self.block_length
    }

    pub fn config(&self) -> &Llada2Config {
        &self.cfg
    }

    /// Logits `[B, L, vocab_size]` in the weights' dtype, with the model's attention.
    pub fn forward(&self, ids: &Tensor) -> Tensor {
        self.head(&self.hidden(ids))
    }

    fn hidden(&self, ids: &Tensor) -> Tensor {
        let l = ids.size()[1];
        let mut x = Tensor::embedding(&self.word_embeddings, ids, -1, false, false);
        let mut ctx = Context::new(&self.rope, None, l, x.kind());
        if let Some(block) = self.block_length {
            ctx = ctx.block_causal(l, block);
        }
        for layer in &self.layers {
            x = layer.forward(&x, &ctx);
        }
        x
    }

    fn head(&self, hidden: &Tensor) -> Tensor {
        self.lm_head.forward(&self.norm.forward(hidden))
    }
}

impl MaskedDenoiser for Llada2Model {
    fn mask_id(&self) -> i64 {
        self.cfg.mask_id()
    }

    fn vocab_size(&self) -> i64 {
        self.cfg.vocab_size
    }

    fn max_len(&self) -> Option<usize> {
        usize::try_from(self.cfg.max_position_embeddings).ok()
    }

    fn device(&self) -> Device {
        self.device
    }

    fn attention_blocks(&self) -> Option<i64> {
        self.block_length
    }

    /// Blocks count from the first position of the sequence, as in the model's sampler; left
    /// padding would move them, so rows are never padded.
    fn supports_padding(&self) -> bool {
        false
    }

    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (_, l) = check_inputs(ids, valid, from, self.device, self.cfg.vocab_size)?;
        if normalise_valid(valid).is_some() {
            return Err(ProbeError::Input(
                "LLaDA2.0 takes no left padding: its attention blocks count from position 0".into(),
            ));
        }
        Ok(tch::no_grad(|| {
            let hidden = self.hidden(ids);
            self.head(&hidden.narrow(1, from, l - from))
                .to_kind(Kind::Float)
        }))
    }
}
