//! LLaDA-MoE, LLaDA with a mixture-of-experts feed-forward (LLaDA-MoE-7B-A1B).
//!
//! Reference implementation: `modeling_lladamoe.py` (class `LLaDAMoEModelLM`); the copy this
//! file was checked against, and what of the released layout was inferred rather than seen,
//! are in `fixtures/parity/README.md` (section 6).
//!
//! Its `config.json` says `model_type: "llada"` like dense LLaDA; the loader tells the two apart
//! by `architectures[0]` and by the key set ([`is_llada_moe`]).
//!
//! Layer: `h = x + o_proj(SDPA(rope(q_norm(q)), rope(k_norm(k)), v))` from `input_layernorm(x)`,
//! with qk-norm per head before RoPE, grouped-query attention, non-causal and unmasked;
//! `out = h + FFN(post_attention_layernorm(h))`, where the FFN is a dense SwiGLU on layers with
//! `moe_layer_freq[i] == 0` and otherwise the routed experts plus the shared expert.
//! Routing: `p = softmax(gate(y))` in float32, plus `expert_bias`; the top-k of the biased `p`
//! are chosen **and weighted by those biased values** (no renormalisation, no scaling).

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::moe::{Experts, FeedForward, MoeLayer, Router};
use super::{check_inputs, normalise_valid, Context, Linear, RmsNorm, Rope, SwiGlu};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// The class name in `architectures` of a LLaDA-MoE `config.json`.
pub const LLADA_MOE_ARCHITECTURE: &str = "LLaDAMoEModelLM";

/// The mask id of the released LLaDA-MoE tokenizer; its `config.json` does not carry one.
const RELEASED_MASK_ID: i64 = 156_895;

/// Whether a `model_type: "llada"` config is LLaDA-MoE: `architectures[0]` says so, or, without
/// `architectures`, it has the MoE key set (`hidden_size`, `num_experts`) and not dense LLaDA's
/// (`d_model`).
pub fn is_llada_moe(config: &serde_json::Value) -> bool {
    match config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
    {
        Some(arch) => arch == LLADA_MOE_ARCHITECTURE,
        None => {
            config.get("num_experts").is_some()
                && config.get("hidden_size").is_some()
                && config.get("d_model").is_none()
        }
    }
}

/// `config.json` of a LLaDA-MoE checkpoint. Dimensions are required; switches default to the
/// reference config class's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LladaMoeConfig {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    pub vocab_size: i64,
    /// Width of the dense layers' SwiGLU.
    pub dense_intermediate_size: i64,
    /// Width of each routed expert.
    pub expert_intermediate_size: i64,
    /// Width of the shared expert (0 or absent: none).
    #[serde(default)]
    pub shared_expert_intermediate_size: Option<i64>,
    pub num_experts: i64,
    pub num_experts_per_tok: i64,
    /// Per layer, 0 for a dense layer and 1 for a MoE layer; or one number `k`, Megatron's
    /// shorthand for "layer `i` is MoE when `i % k == 0`".
    pub moe_layer_freq: MoeLayerFreq,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_one")]
    pub partial_rotary_factor: f64,
    #[serde(default)]
    pub qk_layernorm: bool,
    #[serde(default)]
    pub moe_router_enable_expert_bias: bool,
    /// Biases on q/k/v/o.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub clip_qkv: Option<f64>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_len")]
    pub max_position_embeddings: i64,
    /// Absent in the released config; the released tokenizer's mask id is the default.
    #[serde(default)]
    pub mask_token_id: Option<i64>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// `moe_layer_freq` as written: a list with one entry per layer, or a frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MoeLayerFreq {
    PerLayer(Vec<i64>),
    Every(i64),
}

fn default_eps() -> f64 {
    1e-5
}
fn default_rope_theta() -> f64 {
    50_000.0
}
fn default_one() -> f64 {
    1.0
}
fn default_max_len() -> i64 {
    4096
}
fn default_act() -> String {
    "silu".into()
}

impl LladaMoeConfig {
    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Rotated dimensions of each head: `head_dim · partial_rotary_factor`.
    pub fn rotary_dim(&self) -> i64 {
        (self.head_dim() as f64 * self.partial_rotary_factor) as i64
    }

    pub fn mask_id(&self) -> i64 {
        self.mask_token_id.unwrap_or(RELEASED_MASK_ID)
    }

    fn is_moe_layer(&self, i: i64) -> bool {
        match &self.moe_layer_freq {
            MoeLayerFreq::PerLayer(flags) => flags[i as usize] != 0,
            MoeLayerFreq::Every(k) => i % k == 0,
        }
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
                ("vocab_size", self.vocab_size),
                ("dense_intermediate_size", self.dense_intermediate_size),
                ("expert_intermediate_size", self.expert_intermediate_size),
                ("num_experts", self.num_experts),
                ("num_experts_per_tok", self.num_experts_per_tok),
            ],
        )?;
        if self.num_experts_per_tok > self.num_experts {
            return fail(
                "num_experts_per_tok",
                format!(
                    "{} is more than num_experts {}",
                    self.num_experts_per_tok, self.num_experts
                ),
            );
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return fail(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
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
        let rd = self.rotary_dim();
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0)
            || rd % 2 != 0
            || rd == 0
        {
            return fail(
                "partial_rotary_factor",
                format!(
                    "{} gives {rd} rotated dimensions of {}; RoPE needs an even number > 0",
                    self.partial_rotary_factor,
                    self.head_dim()
                ),
            );
        }
        let freq_ok = match &self.moe_layer_freq {
            MoeLayerFreq::PerLayer(flags) => {
                flags.len() as i64 == self.num_hidden_layers
                    && flags.iter().all(|&f| f == 0 || f == 1)
            }
            MoeLayerFreq::Every(k) => *k >= 1,
        };
        if !freq_ok {
            return fail(
                "moe_layer_freq",
                format!(
                    "{:?}: expected one 0 (dense) or 1 (MoE) per layer ({} layers), or a frequency >= 1",
                    self.moe_layer_freq, self.num_hidden_layers
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
        if self.clip_qkv.is_some() {
            return fail("clip_qkv", "only null is supported".into());
        }
        if self.rope_scaling.as_ref().is_some_and(|s| !s.is_null()) {
            return fail("rope_scaling", "only null is supported".into());
        }
        Ok(())
    }
}

/// `model.layers.{i}.self_attn`.
#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
    rotary_dim: i64,
}

impl Attention {
    fn load(src: &mut dyn WeightSource, cfg: &LladaMoeConfig, p: &str) -> Result<Self, ProbeError> {
        let (d, hd) = (cfg.hidden_size, cfg.head_dim());
        let (q, kv) = (cfg.num_attention_heads * hd, cfg.kv_heads() * hd);
        let bias = cfg.attention_bias;
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
            q_proj: Linear::load(src, &format!("{p}.q_proj"), d, q, bias)?,
            k_proj: Linear::load(src, &format!("{p}.k_proj"), d, kv, bias)?,
            v_proj: Linear::load(src, &format!("{p}.v_proj"), d, kv, bias)?,
            o_proj: Linear::load(src, &format!("{p}.o_proj"), q, d, bias)?,
            q_norm: cfg.qk_layernorm.then(|| norm(src, "q_norm")).transpose()?,
            k_norm: cfg.qk_layernorm.then(|| norm(src, "k_norm")).transpose()?,
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.kv_heads(),
            head_dim: hd,
            rotary_dim: cfg.rotary_dim(),
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let (b, l) = (x.size()[0], x.size()[1]);
        // [B, L, H, head_dim]: qk-norm normalises each head's row, then heads move to dim 1.
        let split = |t: Tensor, n: i64, norm: &Option<RmsNorm>| {
            let t = t.view([b, l, n, self.head_dim]);
            let t = match norm {
                Some(norm) => norm.forward(&t),
                None => t,
            };
            t.transpose(1, 2)
        };
        let q = split(self.q_proj.forward(x), self.n_heads, &self.q_norm);
        let k = split(self.k_proj.forward(x), self.n_kv_heads, &self.k_norm);
        let v = split(self.v_proj.forward(x), self.n_kv_heads, &None);
        let q = ctx.rope_partial(&q, self.rotary_dim);
        let k = ctx.rope_partial(&k, self.rotary_dim);
        let att = ctx.attention(&q, &k, &v);
        self.o_proj.forward(
            &att.transpose(1, 2)
                .reshape([b, l, self.n_heads * self.head_dim]),
        )
    }
}

/// LLaDA-MoE's router (`model.layers.{i}.mlp.gate`): softmax scores plus `expert_bias`, whose
/// top-k are both the choice and the weights.
#[derive(Debug)]
struct SoftmaxRouter {
    /// `mlp.gate.weight`, `[num_experts, hidden]`.
    gate: Tensor,
    /// `mlp.expert_bias`, added to the softmax scores.
    expert_bias: Option<Tensor>,
    top_k: i64,
}

impl Router for SoftmaxRouter {
    fn route(&self, y: &Tensor) -> (Tensor, Tensor) {
        let router = y.linear::<Tensor>(&self.gate, None);
        let mut p = router.to_kind(Kind::Float).softmax(-1, Kind::Float);
        if let Some(bias) = &self.expert_bias {
            p += bias.to_kind(Kind::Float);
        }
        let (weights, chosen) = p.topk(self.top_k, -1, true, true);
        (chosen, weights)
    }
}

/// The MoE feed-forward of layer `i`: router and experts under `mlp`, and the shared expert
/// beside `mlp` (`model.layers.{i}.shared_expert`) rather than inside it.
fn load_moe(
    src: &mut dyn WeightSource,
    cfg: &LladaMoeConfig,
    i: i64,
) -> Result<MoeLayer<SoftmaxRouter>, ProbeError> {
    let p = format!("model.layers.{i}");
    let (d, e) = (cfg.hidden_size, cfg.num_experts);
    Ok(MoeLayer {
        router: SoftmaxRouter {
            gate: src.tensor(&format!("{p}.mlp.gate.weight"), &[e, d])?,
            expert_bias: if cfg.moe_router_enable_expert_bias {
                Some(src.tensor(&format!("{p}.mlp.expert_bias"), &[e])?)
            } else {
                None
            },
            top_k: cfg.num_experts_per_tok,
        },
        experts: Experts::load(
            src,
            &format!("{p}.mlp.experts"),
            e,
            d,
            cfg.expert_intermediate_size,
        )?,
        shared: match cfg.shared_expert_intermediate_size {
            Some(w) if w > 0 => Some(SwiGlu::load(src, &format!("{p}.shared_expert"), d, w)?),
            _ => None,
        },
    })
}

/// `model.layers.{i}`.
#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    ffn: FeedForward<SoftmaxRouter>,
}

impl DecoderLayer {
    fn load(src: &mut dyn WeightSource, cfg: &LladaMoeConfig, i: i64) -> Result<Self, ProbeError> {
        let p = format!("model.layers.{i}");
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let norm = |src: &mut dyn WeightSource, name: &str| {
            RmsNorm::load(src, &format!("{p}.{name}"), d, eps, true, false)
        };
        Ok(DecoderLayer {
            input_layernorm: norm(src, "input_layernorm")?,
            self_attn: Attention::load(src, cfg, &format!("{p}.self_attn"))?,
            post_attention_layernorm: norm(src, "post_attention_layernorm")?,
            ffn: if cfg.is_moe_layer(i) {
                FeedForward::Moe(load_moe(src, cfg, i)?)
            } else {
                FeedForward::Dense(SwiGlu::load(
                    src,
                    &format!("{p}.mlp"),
                    d,
                    cfg.dense_intermediate_size,
                )?)
            },
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let x = x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x), ctx);
        let ffn = self.ffn.forward(&self.post_attention_layernorm.forward(&x));
        x + ffn
    }
}

/// A LLaDA-MoE model (`LLaDAMoEModelLM`).
#[derive(Debug)]
pub struct LladaMoeModel {
    cfg: LladaMoeConfig,
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: Rope,
    device: Device,
}

impl LladaMoeModel {
    pub fn new(
        cfg: &LladaMoeConfig,
        src: &mut dyn WeightSource,
        device: Device,
    ) -> Result<Self, ProbeError> {
        cfg.validate(Path::new("config.json"))?;
        let d = cfg.hidden_size;
        let embed_tokens = src.tensor("model.embed_tokens.weight", &[cfg.vocab_size, d])?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| DecoderLayer::load(src, cfg, i))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = RmsNorm::load(src, "model.norm", d, cfg.rms_norm_eps, true, false)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::tied(&embed_tokens)
        } else {
            Linear::load(src, "lm_head", d, cfg.vocab_size, false)?
        };
        let rope = Rope::new(
            cfg.rotary_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            device,
        );
        Ok(LladaMoeModel {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            device,
        })
    }

    pub fn config(&self) -> &LladaMoeConfig {
        &self.cfg
    }

    /// Logits `[B, L, vocab_size]` in the weights' dtype; `valid` as in
    /// [`crate::LladaModel::forward`].
    pub fn forward(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        self.head(&self.hidden(ids, valid))
    }

    fn hidden(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        let valid = normalise_valid(valid);
        let l = ids.size()[1];
        let mut x = Tensor::embedding(&self.embed_tokens, ids, -1, false, false);
        let ctx = Context::new(&self.rope, valid.as_ref(), l, x.kind());
        for layer in &self.layers {
            x = layer.forward(&x, &ctx);
        }
        x
    }

    fn head(&self, hidden: &Tensor) -> Tensor {
        self.lm_head.forward(&self.norm.forward(hidden))
    }
}

impl MaskedDenoiser for LladaMoeModel {
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

    fn supports_padding(&self) -> bool {
        true
    }

    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (_, l) = check_inputs(ids, valid, from, self.device, self.cfg.vocab_size)?;
        Ok(tch::no_grad(|| {
            let hidden = self.hidden(ids, valid);
            self.head(&hidden.narrow(1, from, l - from))
                .to_kind(Kind::Float)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(freq: serde_json::Value) -> LladaMoeConfig {
        serde_json::from_value(serde_json::json!({
            "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
            "vocab_size": 320, "dense_intermediate_size": 160, "expert_intermediate_size": 32,
            "num_experts": 8, "num_experts_per_tok": 2, "moe_layer_freq": freq,
        }))
        .unwrap()
    }

    #[test]
    fn moe_layers_from_a_list_or_a_frequency() {
        let layers = |c: &LladaMoeConfig| (0..4).map(|i| c.is_moe_layer(i)).collect::<Vec<_>>();
        assert_eq!(
            layers(&config(serde_json::json!([0, 1, 1, 0]))),
            [false, true, true, false]
        );
        assert_eq!(
            layers(&config(serde_json::json!(2))),
            [true, false, true, false]
        );
        let path = Path::new("config.json");
        assert!(config(serde_json::json!([0, 1])).validate(path).is_err());
        assert!(config(serde_json::json!(0)).validate(path).is_err());
        assert!(config(serde_json::json!([0, 1, 2, 1]))
            .validate(path)
            .is_err());
    }
}
