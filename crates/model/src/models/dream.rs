//! Dream, a masked diffusion language model initialised from an autoregressive Qwen2.5.
//!
//! Paper: Ye et al. 2025, "Dream 7B: Diffusion Large Language Models" (arXiv:2508.15487).
//! Reference implementation: `modeling_dream.py` distributed with
//! `Dream-org/Dream-v0-Instruct-7B` (class `DreamModel`), a Qwen2 decoder with the causal
//! mask removed; the copy this file was checked against is listed in
//! `fixtures/parity/README.md`.
//!
//! Layer: `h = x + o_proj(SDPA(rope(q), rope(k), v))` with biased q/k/v projections of
//! `input_layernorm(x)` and grouped-query attention; `out = h + down_proj(silu(gate_proj(n))
//! * up_proj(n))` with `n = post_attention_layernorm(h)`; logits `lm_head(norm(x))`.
//!
//! Dream keeps the autoregressive habit of its initialisation: the model's output row
//! `j - 1` is its prediction for position `j`. [`DreamModel::forward`] returns the raw,
//! unshifted rows like the reference `forward`; the [`MaskedDenoiser`] implementation
//! applies the shift that the reference sampler applies after every call.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{check_inputs, normalise_valid, Context, Linear, RmsNorm, Rope, SwiGlu};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// `config.json` of a Dream checkpoint (Qwen2 keys). Dimensions are required; the other
/// keys default to the reference `DreamConfig` defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DreamConfig {
    pub hidden_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    /// `None` means `num_attention_heads` (no grouped-query attention).
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    pub intermediate_size: i64,
    pub vocab_size: i64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// LM head = `model.embed_tokens` (and `lm_head.weight` is not read).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_len")]
    pub max_position_embeddings: i64,
    #[serde(default = "default_mask_id")]
    pub mask_token_id: i64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `null` (plain RoPE) is supported.
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub use_sliding_window: bool,
}

fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_max_len() -> i64 {
    32_768
}
/// The mask id of the released Dream tokenizer (`<|mask|>`).
fn default_mask_id() -> i64 {
    151_666
}
fn default_act() -> String {
    "silu".into()
}

impl DreamConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ProbeError> {
        let value = super::read_config_json(path)?;
        let cfg: Self = super::from_config_value(path, value)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The `config.json` this config would be read from, with `model_type` set.
    pub fn to_config_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the config serialises");
        value["model_type"] = "Dream".into();
        value["architectures"] = serde_json::json!(["DreamModel"]);
        value
    }

    pub fn kv_heads(&self) -> i64 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
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
                ("intermediate_size", self.intermediate_size),
                ("vocab_size", self.vocab_size),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
        )?;
        if self.hidden_size % self.num_attention_heads != 0 {
            return fail(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if self.head_dim() % 2 != 0 {
            return fail(
                "num_attention_heads",
                format!(
                    "head size hidden_size/num_attention_heads = {} is odd; RoPE needs it even",
                    self.head_dim()
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
        if !(0..self.vocab_size).contains(&self.mask_token_id) {
            return fail(
                "mask_token_id",
                format!(
                    "{} is outside the vocabulary of {}",
                    self.mask_token_id, self.vocab_size
                ),
            );
        }
        // NaN fails too.
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return fail(
                "rope_theta",
                format!("must be positive, is {}", self.rope_theta),
            );
        }
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps < 0.0 {
            return fail(
                "rms_norm_eps",
                format!("must not be negative, is {}", self.rms_norm_eps),
            );
        }
        if self.hidden_act != "silu" {
            return fail(
                "hidden_act",
                format!("`{}` is not supported (supported: silu)", self.hidden_act),
            );
        }
        if let Some(scaling) = &self.rope_scaling {
            if !scaling.is_null() {
                return fail(
                    "rope_scaling",
                    format!("{scaling} is not supported (supported: null)"),
                );
            }
        }
        if self.use_sliding_window {
            return fail(
                "use_sliding_window",
                "true is not supported (supported: false)".into(),
            );
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
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
}

impl Attention {
    fn load(src: &mut dyn WeightSource, cfg: &DreamConfig, p: &str) -> Result<Self, ProbeError> {
        let d = cfg.hidden_size;
        let kv = cfg.kv_heads() * cfg.head_dim();
        // As in Qwen2, q/k/v always carry a bias and o_proj never does.
        Ok(Attention {
            q_proj: Linear::load(
                src,
                &format!("{p}.q_proj"),
                d,
                cfg.num_attention_heads * cfg.head_dim(),
                true,
            )?,
            k_proj: Linear::load(src, &format!("{p}.k_proj"), d, kv, true)?,
            v_proj: Linear::load(src, &format!("{p}.v_proj"), d, kv, true)?,
            o_proj: Linear::load(
                src,
                &format!("{p}.o_proj"),
                cfg.num_attention_heads * cfg.head_dim(),
                d,
                false,
            )?,
            n_heads: cfg.num_attention_heads,
            n_kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let (b, l) = (x.size()[0], x.size()[1]);
        let heads = |t: Tensor, n: i64| t.view([b, l, n, self.head_dim]).transpose(1, 2);
        let q = heads(self.q_proj.forward(x), self.n_heads);
        let k = heads(self.k_proj.forward(x), self.n_kv_heads);
        let v = heads(self.v_proj.forward(x), self.n_kv_heads);
        let att = ctx.attention(&ctx.rope(&q), &ctx.rope(&k), &v);
        self.o_proj.forward(
            &att.transpose(1, 2)
                .reshape([b, l, self.n_heads * self.head_dim]),
        )
    }
}

/// `model.layers.{i}`.
#[derive(Debug)]
struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: SwiGlu,
}

impl DecoderLayer {
    fn load(src: &mut dyn WeightSource, cfg: &DreamConfig, i: i64) -> Result<Self, ProbeError> {
        let p = format!("model.layers.{i}");
        let (d, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        Ok(DecoderLayer {
            input_layernorm: RmsNorm::load(
                src,
                &format!("{p}.input_layernorm"),
                d,
                eps,
                true,
                false,
            )?,
            self_attn: Attention::load(src, cfg, &format!("{p}.self_attn"))?,
            post_attention_layernorm: RmsNorm::load(
                src,
                &format!("{p}.post_attention_layernorm"),
                d,
                eps,
                true,
                false,
            )?,
            mlp: SwiGlu::load(src, &format!("{p}.mlp"), d, cfg.intermediate_size)?,
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let x = x + self
            .self_attn
            .forward(&self.input_layernorm.forward(x), ctx);
        let mlp = self.mlp.forward(&self.post_attention_layernorm.forward(&x));
        x + mlp
    }
}

/// A Dream model (`DreamModel`), ready for inference or for training.
#[derive(Debug)]
pub struct DreamModel {
    cfg: DreamConfig,
    /// `model.embed_tokens.weight`.
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    /// `model.norm`.
    norm: RmsNorm,
    /// `lm_head`, or `model.embed_tokens` when `tie_word_embeddings`.
    lm_head: Linear,
    rope: Rope,
    device: Device,
}

impl DreamModel {
    /// Builds the model from `src`, asking it for every tensor by its checkpoint name.
    /// `device` is where the tensors from `src` live (RoPE tables are made there).
    pub fn new(
        cfg: &DreamConfig,
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
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.max_position_embeddings,
            device,
        );
        Ok(DreamModel {
            cfg: cfg.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            device,
        })
    }

    pub fn config(&self) -> &DreamConfig {
        &self.cfg
    }

    /// Raw, UNSHIFTED logits `[B, L, vocab_size]` in the weights' dtype, as the reference
    /// `DreamModel.forward` returns them: row `j - 1` predicts position `j`. Differentiable
    /// (not under `no_grad`). `valid` as in [`crate::LladaModel::forward`].
    pub fn forward(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        let valid = normalise_valid(valid);
        self.head(&self.hidden(ids, valid.as_ref()))
    }

    fn hidden(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        let l = ids.size()[1];
        let mut x = Tensor::embedding(&self.embed_tokens, ids, -1, false, false);
        // Qwen2 casts cos/sin to the activation dtype and rotates in it.
        let ctx = Context::new(&self.rope, valid, l, x.kind());
        for layer in &self.layers {
            x = layer.forward(&x, &ctx);
        }
        x
    }

    fn head(&self, hidden: &Tensor) -> Tensor {
        self.lm_head.forward(&self.norm.forward(hidden))
    }
}

impl MaskedDenoiser for DreamModel {
    fn mask_id(&self) -> i64 {
        self.cfg.mask_token_id
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
        let (b, l) = check_inputs(ids, valid, from, self.device, self.cfg.vocab_size)?;
        Ok(tch::no_grad(|| {
            let valid = normalise_valid(valid);
            let hidden = self.hidden(ids, valid.as_ref());
            // THE DREAM SHIFT. The reference sampler (`DreamGenerationMixin._sample`) turns
            // the model output into per-position logits with
            // `cat([logits[:, :1], logits[:, :-1]], dim=1)`: position j uses output row j-1 and
            // position 0 reuses row 0. We apply it here, on hidden states (the head is
            // per-position), so callers always get aligned logits. With left padding the row
            // "before" a row's first valid token is padding; that position reuses its own row,
            // exactly as position 0 does unpadded, so a padded row equals the unpadded one.
            let n = l - from;
            let shifted = if valid.is_none() && from >= 1 {
                hidden.narrow(1, from - 1, n)
            } else {
                let first_valid = match &valid {
                    Some(v) => v.to_kind(Kind::Int64).argmax(1, false),
                    None => Tensor::zeros([b], (Kind::Int64, self.device)),
                };
                let rows = Tensor::arange_start(from - 1, l - 1, (Kind::Int64, self.device))
                    .unsqueeze(0)
                    .maximum(&first_valid.unsqueeze(1));
                let d = hidden.size()[2];
                hidden.gather(1, &rows.unsqueeze(2).expand([b, n, d], false), false)
            };
            self.head(&shifted).to_kind(Kind::Float)
        }))
    }
}
