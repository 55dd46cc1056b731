//! LLaDA, a masked diffusion language model with a bidirectional Llama-style transformer.
//!
//! Paper: Nie et al. 2025, "Large Language Diffusion Models" (arXiv:2502.09992).
//! Reference implementation: `modeling_llada.py` distributed with `GSAI-ML/LLaDA-8B-Instruct`
//! (class `LLaDAModelLM`, block `LLaDALlamaBlock`); the copy this file was checked against
//! is listed in `fixtures/parity/README.md`.
//!
//! Block: `h = x + attn_out(SDPA(rope(q), rope(k), v))` with q/k/v from `attn_norm(x)`,
//! non-causal and without a mask; `out = h + ff_out(silu(ff_proj(n)) * up_proj(n))` with
//! `n = ff_norm(h)`. Logits are `ff_out(ln_f(x))`, or `wte` used as the LM head when
//! `weight_tying` is set. The logits at position `j` predict the token at position `j`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{check_inputs, normalise_valid, Context, Linear, RmsNorm, Rope};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// `config.json` of a LLaDA checkpoint, key for key (keys that do not change the forward
/// pass, such as `init_fn` or `precision`, are ignored).
///
/// Dimensions have no defaults: a config without `d_model`, `n_layers`, `n_heads` or
/// `vocab_size` is rejected. Switches that every released LLaDA config carries default to
/// the released value when absent (`block_type` llama, `activation_type` silu,
/// `layer_norm_type` rms, `rope` true); biases and weight tying default to off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LladaConfig {
    pub d_model: i64,
    pub n_layers: i64,
    pub n_heads: i64,
    /// Key/value heads (grouped-query attention); `None` means `n_heads`, or 1 with
    /// `multi_query_attention`.
    #[serde(default)]
    pub n_kv_heads: Option<i64>,
    #[serde(default)]
    pub multi_query_attention: Option<bool>,
    /// Feed-forward width; when `None`, `mlp_ratio * d_model`.
    #[serde(default)]
    pub mlp_hidden_size: Option<i64>,
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: i64,
    pub vocab_size: i64,
    /// Rows of the embedding and of the LM head (padded vocabulary); `None` means `vocab_size`.
    #[serde(default)]
    pub embedding_size: Option<i64>,
    #[serde(default = "default_true")]
    pub rope: bool,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Whether RoPE is applied in float32 whatever the activation dtype.
    #[serde(default = "default_true")]
    pub rope_full_precision: bool,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_max_len")]
    pub max_sequence_length: i64,
    #[serde(default = "default_mask_id")]
    pub mask_token_id: i64,
    /// LM head = `wte` (and `model.transformer.ff_out` is not read).
    #[serde(default)]
    pub weight_tying: bool,
    /// Biases on every linear layer (and on the norms unless `bias_for_layer_norm` says otherwise).
    #[serde(default)]
    pub include_bias: bool,
    /// Biases on q/k/v only.
    #[serde(default)]
    pub include_qkv_bias: bool,
    #[serde(default)]
    pub bias_for_layer_norm: Option<bool>,
    #[serde(default = "default_true")]
    pub layer_norm_with_affine: bool,
    /// Multiply the embeddings by `sqrt(d_model)`.
    #[serde(default)]
    pub input_emb_norm: bool,
    /// Multiply the logits by `1 / sqrt(d_model)`.
    #[serde(default)]
    pub scale_logits: bool,
    #[serde(default = "default_block_type")]
    pub block_type: String,
    #[serde(default = "default_activation")]
    pub activation_type: String,
    #[serde(default = "default_norm_type")]
    pub layer_norm_type: String,
    #[serde(default)]
    pub attention_layer_norm: bool,
    #[serde(default)]
    pub alibi: bool,
    #[serde(default = "default_one")]
    pub block_group_size: i64,
    #[serde(default)]
    pub clip_qkv: Option<f64>,
}

fn default_mlp_ratio() -> i64 {
    4
}
fn default_true() -> bool {
    true
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_max_len() -> i64 {
    1024
}
/// The mask id of the released LLaDA tokenizer (`<|mdm_mask|>`).
fn default_mask_id() -> i64 {
    126_336
}
fn default_block_type() -> String {
    "llama".into()
}
fn default_activation() -> String {
    "silu".into()
}
fn default_norm_type() -> String {
    "rms".into()
}
fn default_one() -> i64 {
    1
}

impl LladaConfig {
    /// Reads and checks `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ProbeError> {
        let value = super::read_config_json(path)?;
        let cfg: Self = super::from_config_value(path, value)?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// The `config.json` this config would be read from, with `model_type` set, so a
    /// trainer can write a checkpoint folder that [`crate::load_model`] opens.
    pub fn to_config_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the config serialises");
        value["model_type"] = "llada".into();
        value["architectures"] = serde_json::json!(["LLaDAModelLM"]);
        value
    }

    /// Key/value heads as the reference's `effective_n_kv_heads`.
    pub fn kv_heads(&self) -> i64 {
        match (self.n_kv_heads, self.multi_query_attention) {
            (Some(n), _) => n,
            (None, Some(true)) => 1,
            (None, _) => self.n_heads,
        }
    }

    pub fn head_dim(&self) -> i64 {
        self.d_model / self.n_heads
    }

    pub fn mlp_size(&self) -> i64 {
        self.mlp_hidden_size
            .unwrap_or(self.mlp_ratio * self.d_model)
    }

    /// Logits per position: `embedding_size` when set, else `vocab_size`.
    pub fn logit_count(&self) -> i64 {
        self.embedding_size.unwrap_or(self.vocab_size)
    }

    fn norm_bias(&self) -> bool {
        self.bias_for_layer_norm.unwrap_or(self.include_bias)
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
                ("d_model", self.d_model),
                ("n_layers", self.n_layers),
                ("n_heads", self.n_heads),
                ("vocab_size", self.vocab_size),
                ("max_sequence_length", self.max_sequence_length),
                ("mlp_hidden_size", self.mlp_size()),
                ("n_kv_heads", self.kv_heads()),
            ],
        )?;
        if self.d_model % self.n_heads != 0 {
            return fail(
                "n_heads",
                format!("{} does not divide d_model {}", self.n_heads, self.d_model),
            );
        }
        if self.head_dim() % 2 != 0 {
            return fail(
                "n_heads",
                format!(
                    "head size d_model/n_heads = {} is odd; RoPE needs it even",
                    self.head_dim()
                ),
            );
        }
        if let (Some(n), Some(mqa)) = (self.n_kv_heads, self.multi_query_attention) {
            let expected = if mqa { 1 } else { self.n_heads };
            if n != expected {
                return fail(
                    "n_kv_heads",
                    format!("{n} contradicts multi_query_attention {mqa}"),
                );
            }
        }
        if self.n_heads % self.kv_heads() != 0 {
            return fail(
                "n_kv_heads",
                format!(
                    "{} does not divide n_heads {}",
                    self.kv_heads(),
                    self.n_heads
                ),
            );
        }
        if self.logit_count() < self.vocab_size {
            return fail(
                "embedding_size",
                format!(
                    "{} is smaller than vocab_size {}",
                    self.logit_count(),
                    self.vocab_size
                ),
            );
        }
        if !(0..self.logit_count()).contains(&self.mask_token_id) {
            return fail(
                "mask_token_id",
                format!(
                    "{} is outside the {} embeddings",
                    self.mask_token_id,
                    self.logit_count()
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
        let unsupported = |key: &str, value: &str, supported: &str| {
            fail(
                key,
                format!("`{value}` is not supported (supported: {supported})"),
            )
        };
        if self.block_type != "llama" {
            return unsupported("block_type", &self.block_type, "llama");
        }
        if !["silu", "gelu", "relu"].contains(&self.activation_type.as_str()) {
            return unsupported("activation_type", &self.activation_type, "silu, gelu, relu");
        }
        if self.layer_norm_type != "rms" {
            return unsupported("layer_norm_type", &self.layer_norm_type, "rms");
        }
        if !self.rope {
            return unsupported("rope", "false", "true");
        }
        if self.alibi {
            return unsupported("alibi", "true", "false");
        }
        if self.attention_layer_norm {
            return unsupported("attention_layer_norm", "true", "false");
        }
        if self.block_group_size != 1 {
            return unsupported("block_group_size", &self.block_group_size.to_string(), "1");
        }
        if let Some(clip) = self.clip_qkv {
            return unsupported("clip_qkv", &clip.to_string(), "null");
        }
        Ok(())
    }
}

/// One `LLaDALlamaBlock`; field names are the tensor names under
/// `model.transformer.blocks.{i}`.
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    attn_out: Linear,
    ff_norm: RmsNorm,
    ff_proj: Linear,
    up_proj: Linear,
    ff_out: Linear,
    n_heads: i64,
    n_kv_heads: i64,
    head_dim: i64,
    activation: Activation,
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    Silu,
    Gelu,
    Relu,
}

impl Block {
    fn load(src: &mut dyn WeightSource, cfg: &LladaConfig, i: i64) -> Result<Self, ProbeError> {
        let p = format!("model.transformer.blocks.{i}");
        let d = cfg.d_model;
        let kv = cfg.kv_heads() * cfg.head_dim();
        let mlp = cfg.mlp_size();
        let qkv_bias = cfg.include_bias || cfg.include_qkv_bias;
        let bias = cfg.include_bias;
        let affine = cfg.layer_norm_with_affine;
        let eps = cfg.rms_norm_eps;
        Ok(Block {
            attn_norm: RmsNorm::load(
                src,
                &format!("{p}.attn_norm"),
                d,
                eps,
                affine,
                cfg.norm_bias(),
            )?,
            q_proj: Linear::load(src, &format!("{p}.q_proj"), d, d, qkv_bias)?,
            k_proj: Linear::load(src, &format!("{p}.k_proj"), d, kv, qkv_bias)?,
            v_proj: Linear::load(src, &format!("{p}.v_proj"), d, kv, qkv_bias)?,
            attn_out: Linear::load(src, &format!("{p}.attn_out"), d, d, bias)?,
            ff_norm: RmsNorm::load(
                src,
                &format!("{p}.ff_norm"),
                d,
                eps,
                affine,
                cfg.norm_bias(),
            )?,
            ff_proj: Linear::load(src, &format!("{p}.ff_proj"), d, mlp, bias)?,
            up_proj: Linear::load(src, &format!("{p}.up_proj"), d, mlp, bias)?,
            ff_out: Linear::load(src, &format!("{p}.ff_out"), mlp, d, bias)?,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.kv_heads(),
            head_dim: cfg.head_dim(),
            activation: match cfg.activation_type.as_str() {
                "gelu" => Activation::Gelu,
                "relu" => Activation::Relu,
                _ => Activation::Silu,
            },
        })
    }

    fn forward(&self, x: &Tensor, ctx: &Context) -> Tensor {
        let (b, l) = (x.size()[0], x.size()[1]);
        let x_normed = self.attn_norm.forward(x);
        let heads = |t: Tensor, n: i64| t.view([b, l, n, self.head_dim]).transpose(1, 2);
        let q = heads(self.q_proj.forward(&x_normed), self.n_heads);
        let k = heads(self.k_proj.forward(&x_normed), self.n_kv_heads);
        let v = heads(self.v_proj.forward(&x_normed), self.n_kv_heads);
        let att = ctx.attention(&ctx.rope(&q), &ctx.rope(&k), &v);
        let att = att
            .transpose(1, 2)
            .reshape([b, l, self.n_heads * self.head_dim]);
        let x = x + self.attn_out.forward(&att);

        let h = self.ff_norm.forward(&x);
        let gate = self.ff_proj.forward(&h);
        let gate = match self.activation {
            Activation::Silu => gate.silu(),
            Activation::Gelu => gate.gelu("none"),
            Activation::Relu => gate.relu(),
        };
        x + self.ff_out.forward(&(gate * self.up_proj.forward(&h)))
    }
}

/// A LLaDA model (`LLaDAModelLM`), ready for inference or for training.
#[derive(Debug)]
pub struct LladaModel {
    cfg: LladaConfig,
    /// `model.transformer.wte.weight`.
    wte: Tensor,
    blocks: Vec<Block>,
    ln_f: RmsNorm,
    /// `model.transformer.ff_out`, or `wte` when `weight_tying`.
    ff_out: Linear,
    rope: Rope,
    device: Device,
}

impl LladaModel {
    /// Builds the model from `src`, asking it for every tensor by its checkpoint name.
    /// `device` is where the tensors from `src` live (RoPE tables are made there).
    pub fn new(
        cfg: &LladaConfig,
        src: &mut dyn WeightSource,
        device: Device,
    ) -> Result<Self, ProbeError> {
        cfg.validate(Path::new("config.json"))?;
        let d = cfg.d_model;
        let wte = src.tensor("model.transformer.wte.weight", &[cfg.logit_count(), d])?;
        let blocks = (0..cfg.n_layers)
            .map(|i| Block::load(src, cfg, i))
            .collect::<Result<Vec<_>, _>>()?;
        let ln_f = RmsNorm::load(
            src,
            "model.transformer.ln_f",
            d,
            cfg.rms_norm_eps,
            cfg.layer_norm_with_affine,
            cfg.norm_bias(),
        )?;
        // As upstream: with weight tying the model has no `ff_out` module at all, so a stray
        // `model.transformer.ff_out.weight` in the file is ignored.
        let ff_out = if cfg.weight_tying {
            Linear::tied(&wte)
        } else {
            Linear::load(
                src,
                "model.transformer.ff_out",
                d,
                cfg.logit_count(),
                cfg.include_bias,
            )?
        };
        let rope = Rope::new(
            cfg.head_dim(),
            cfg.rope_theta,
            cfg.max_sequence_length,
            device,
        );
        Ok(LladaModel {
            cfg: cfg.clone(),
            wte,
            blocks,
            ln_f,
            ff_out,
            rope,
            device,
        })
    }

    pub fn config(&self) -> &LladaConfig {
        &self.cfg
    }

    /// Raw logits `[B, L, logit_count]` in the weights' dtype, differentiable (not under
    /// `no_grad`). `valid` (bool `[B, L]`, false at left padding) masks padded keys and
    /// counts RoPE positions from each row's first valid token; `None` means all valid.
    /// Panics on malformed input; [`MaskedDenoiser::logits`] checks its input first.
    pub fn forward(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        let valid = normalise_valid(valid);
        self.head(&self.hidden(ids, valid.as_ref()))
    }

    /// Hidden states after the last block, before `ln_f`. `valid` is normalised.
    fn hidden(&self, ids: &Tensor, valid: Option<&Tensor>) -> Tensor {
        let l = ids.size()[1];
        let mut x = Tensor::embedding(&self.wte, ids, -1, false, false);
        if self.cfg.input_emb_norm {
            x *= (self.cfg.d_model as f64).sqrt();
        }
        let rope_kind = if self.cfg.rope_full_precision {
            Kind::Float
        } else {
            x.kind()
        };
        let ctx = Context::new(&self.rope, valid, l, rope_kind);
        for block in &self.blocks {
            x = block.forward(&x, &ctx);
        }
        x
    }

    fn head(&self, hidden: &Tensor) -> Tensor {
        let logits = self.ff_out.forward(&self.ln_f.forward(hidden));
        if self.cfg.scale_logits {
            logits * (1.0 / (self.cfg.d_model as f64).sqrt())
        } else {
            logits
        }
    }
}

impl MaskedDenoiser for LladaModel {
    fn mask_id(&self) -> i64 {
        self.cfg.mask_token_id
    }

    fn vocab_size(&self) -> i64 {
        self.cfg.logit_count()
    }

    fn max_len(&self) -> Option<usize> {
        usize::try_from(self.cfg.max_sequence_length).ok()
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
        let (_, l) = check_inputs(ids, valid, from, self.device, self.cfg.logit_count())?;
        Ok(tch::no_grad(|| {
            let valid = normalise_valid(valid);
            let hidden = self.hidden(ids, valid.as_ref());
            // Every position takes part in attention, but only the requested rows go
            // through the final norm and the (vocabulary-sized) LM head.
            self.head(&hidden.narrow(1, from, l - from))
                .to_kind(Kind::Float)
        }))
    }

    fn logits_at(&self, ids: &Tensor, rows: &Tensor) -> Result<Tensor, ProbeError> {
        let (b, l) = check_inputs(ids, None, 0, self.device, self.cfg.logit_count())?;
        if rows.numel() > 0 {
            let (lo, hi) = (rows.min().int64_value(&[]), rows.max().int64_value(&[]));
            if lo < 0 || hi >= b * l {
                return Err(ProbeError::Input(format!(
                    "rows must lie in 0..{}, found {}",
                    b * l,
                    if lo < 0 { lo } else { hi }
                )));
            }
        }
        Ok(tch::no_grad(|| {
            let hidden = self.hidden(ids, None);
            let d = hidden.size()[2];
            self.head(&hidden.view([-1, d]).index_select(0, rows))
                .to_kind(Kind::Float)
        }))
    }
}
