//! MDLM, the masked diffusion language model of Sahoo et al.
//!
//! Paper: Sahoo et al. 2024, "Simple and Effective Masked Diffusion Language Models"
//! (arXiv:2406.07524). Reference implementation: kuleshov-group/mdlm, `models/dit.py` (the DiT
//! backbone: `EmbeddingLayer`, `TimestepEmbedder`, `Rotary`, `DDiTBlock`, `DDitFinalLayer`),
//! `diffusion.py` (`Diffusion._subs_parameterization`) and `noise_schedule.py`
//! (`LogLinearNoise`), in the Hugging Face layout of `kuleshov-group/mdlm-owt` (`model_type`
//! `mdlm`, every tensor under `backbone.`). The commit and the checks are listed in
//! `fixtures/parity/README.md`.
//!
//! Block: `(shift1, scale1, gate1, shift2, scale2, gate2) = adaLN_modulation(c)` split in six;
//! `x = x + gate1 * attn_out(attn(rope(qkv(LN1(x) * (1 + scale1) + shift1))))`, then
//! `x = x + gate2 * mlp(LN2(x) * (1 + scale2) + shift2)` with a GELU (tanh) MLP. The condition
//! `c = silu(sigma_map(sigma))` embeds the noise level; the LayerNorms have no bias and no eps
//! option. Logits `linear(LN_final(x) * (1 + scale) + shift)`.
//!
//! The model itself returns raw logits ([`MdlmModel::forward_raw`]). What MDLM samples from
//! and scores with is the SUBS parameterisation ([`MdlmModel::subs`]) that the training and
//! sampling code applies after every call: the mask token can never be predicted and
//! unmasked tokens are carried over. The [`MaskedDenoiser`] implementation returns the SUBS
//! log-probabilities.
//!
//! Precision follows upstream's mixed-precision run (float32 weights under a bfloat16
//! autocast): the residual stream, the LayerNorms, the modulation and the timestep features
//! are float32; the matrix products, RoPE and attention run in the weights' dtype. With
//! float32 weights everything is float32, as in the parity references.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::{check_inputs, normalise_valid, Context, Linear, Rope};
use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::weights::WeightSource;

/// `config.json` of an MDLM checkpoint (the keys of upstream `MDLMConfig`). Dimensions are
/// required; the other keys default to the `MDLMConfig` defaults. Other keys
/// (`architectures`, `auto_map`, `return_dict`, `dtype`, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MdlmConfig {
    pub hidden_dim: i64,
    /// Width of the noise-level embedding that conditions every block.
    pub cond_dim: i64,
    pub n_blocks: i64,
    pub n_heads: i64,
    /// Embedding and output size; the last id is the mask token unless `mask_token_id` says
    /// otherwise.
    pub vocab_size: i64,
    /// Inactive at inference; not read.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// The training length. Not read by the forward pass (RoPE works at any length), so it
    /// bounds nothing; it only sizes the precomputed RoPE table.
    #[serde(default = "default_model_length")]
    pub model_length: i64,
    /// Whether the backbone sees the noise level. When false (mdlm-owt), sigma is replaced by
    /// zeros before use, as upstream does, and the timestep setting has no effect.
    #[serde(default)]
    pub time_conditioning: bool,
    /// Not an upstream key: MDLM's mask is the last id (`vocab_size - 1`, 50257 for
    /// mdlm-owt's GPT-2 vocabulary of 50258). Set it for a checkpoint that uses another id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_token_id: Option<i64>,
}

fn default_dropout() -> f64 {
    0.1
}
fn default_model_length() -> i64 {
    1024
}

/// Size of the sinusoidal noise-level features (`TimestepEmbedder.frequency_embedding_size`,
/// fixed upstream and not in the config).
const FREQUENCY_EMBEDDING_SIZE: i64 = 256;
/// `max_period` of the sinusoidal features.
const MAX_PERIOD: f64 = 10_000.0;
/// The MLP width is `MLP_RATIO * hidden_dim` (`DDiTBlock`'s fixed `mlp_ratio`).
const MLP_RATIO: i64 = 4;
/// RoPE base (`Rotary`'s fixed `base`).
const ROPE_THETA: f64 = 10_000.0;
/// `F.layer_norm`'s default eps, which `dit.py`'s `LayerNorm` uses.
const LAYER_NORM_EPS: f64 = 1e-5;
/// `Diffusion.neg_infinity`: SUBS's stand-in for minus infinity, finite so that
/// `0 * log p` stays 0.
const NEG_INFINITY: f64 = -1_000_000.0;
/// `LogLinearNoise.eps`: sigma(t) = -log1p(-(1 - eps) t) stays finite at t = 1.
const NOISE_EPS: f64 = 1e-3;

impl MdlmConfig {
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
        value["model_type"] = "mdlm".into();
        value["architectures"] = serde_json::json!(["MDLM"]);
        value
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_dim / self.n_heads
    }

    /// `mask_token_id`, or the last id of the vocabulary.
    pub fn mask_id(&self) -> i64 {
        self.mask_token_id.unwrap_or(self.vocab_size - 1)
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
                ("hidden_dim", self.hidden_dim),
                ("cond_dim", self.cond_dim),
                ("n_blocks", self.n_blocks),
                ("n_heads", self.n_heads),
                ("vocab_size", self.vocab_size),
            ],
        )?;
        if self.hidden_dim % self.n_heads != 0 {
            return fail(
                "n_heads",
                format!(
                    "{} does not divide hidden_dim {}",
                    self.n_heads, self.hidden_dim
                ),
            );
        }
        if self.head_dim() % 2 != 0 {
            return fail(
                "n_heads",
                format!(
                    "head size hidden_dim/n_heads = {} is odd; RoPE needs it even",
                    self.head_dim()
                ),
            );
        }
        let mask = self.mask_id();
        if !(0..self.vocab_size).contains(&mask) {
            let key = if self.mask_token_id.is_some() {
                "mask_token_id"
            } else {
                "vocab_size"
            };
            return fail(
                key,
                format!(
                    "mask id {mask} is outside the vocabulary of {}",
                    self.vocab_size
                ),
            );
        }
        Ok(())
    }
}

/// `dit.py`'s `LayerNorm`: normalise in float32 without affine parameters, then multiply by
/// the weight (there is no bias). Returns float32.
#[derive(Debug)]
struct LayerNorm {
    weight: Tensor,
    size: i64,
}

impl LayerNorm {
    fn load(src: &mut dyn WeightSource, prefix: &str, size: i64) -> Result<Self, ProbeError> {
        let weight = src.tensor(&format!("{prefix}.weight"), &[size])?;
        Ok(LayerNorm { weight, size })
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let normed = x.to_kind(Kind::Float).layer_norm(
            [self.size],
            None::<Tensor>,
            None::<Tensor>,
            LAYER_NORM_EPS,
            false,
        );
        normed * self.weight.to_kind(Kind::Float)
    }
}

/// `modulate_fused`: `x * (1 + scale) + shift`, in float32.
fn modulate(x: &Tensor, shift: &Tensor, scale: &Tensor) -> Tensor {
    x * (scale + 1.0) + shift
}

/// `backbone.sigma_map`, the `TimestepEmbedder`.
#[derive(Debug)]
struct SigmaMap {
    /// `mlp.0`: `[cond_dim, 256]`.
    mlp_0: Linear,
    /// `mlp.2`: `[cond_dim, cond_dim]`.
    mlp_2: Linear,
}

impl SigmaMap {
    fn load(src: &mut dyn WeightSource, cfg: &MdlmConfig, p: &str) -> Result<Self, ProbeError> {
        Ok(SigmaMap {
            mlp_0: Linear::load(
                src,
                &format!("{p}.mlp.0"),
                FREQUENCY_EMBEDDING_SIZE,
                cfg.cond_dim,
                true,
            )?,
            mlp_2: Linear::load(src, &format!("{p}.mlp.2"), cfg.cond_dim, cfg.cond_dim, true)?,
        })
    }

    /// `sigma` `[B]` to `[B, cond_dim]` in `kind`, without the backbone's outer silu.
    fn forward(&self, sigma: &Tensor, kind: Kind) -> Tensor {
        // `timestep_embedding`: freqs_k = exp(-ln(max_period) * k / half), features
        // [cos(sigma * freqs), sin(sigma * freqs)] (cos first), all float32, in upstream's
        // order of operations.
        let half = FREQUENCY_EMBEDDING_SIZE / 2;
        let freqs = (Tensor::arange(half, (Kind::Float, sigma.device())) * -MAX_PERIOD.ln()
            / half as f64)
            .exp();
        let args = sigma.to_kind(Kind::Float).unsqueeze(1) * freqs.unsqueeze(0);
        let features = Tensor::cat(&[args.cos(), args.sin()], -1).to_kind(kind);
        self.mlp_2.forward(&self.mlp_0.forward(&features).silu())
    }
}

/// `backbone.blocks.{i}`, a `DDiTBlock`.
#[derive(Debug)]
struct Block {
    norm1: LayerNorm,
    /// `[3 * hidden, hidden]`, rows ordered (q|k|v, head, head_dim); no bias.
    attn_qkv: Linear,
    /// No bias.
    attn_out: Linear,
    norm2: LayerNorm,
    mlp_0: Linear,
    mlp_2: Linear,
    /// `[6 * hidden, cond_dim]`.
    adaln_modulation: Linear,
    n_heads: i64,
    head_dim: i64,
}

impl Block {
    fn load(src: &mut dyn WeightSource, cfg: &MdlmConfig, i: i64) -> Result<Self, ProbeError> {
        let p = format!("backbone.blocks.{i}");
        let d = cfg.hidden_dim;
        Ok(Block {
            norm1: LayerNorm::load(src, &format!("{p}.norm1"), d)?,
            attn_qkv: Linear::load(src, &format!("{p}.attn_qkv"), d, 3 * d, false)?,
            attn_out: Linear::load(src, &format!("{p}.attn_out"), d, d, false)?,
            norm2: LayerNorm::load(src, &format!("{p}.norm2"), d)?,
            mlp_0: Linear::load(src, &format!("{p}.mlp.0"), d, MLP_RATIO * d, true)?,
            mlp_2: Linear::load(src, &format!("{p}.mlp.2"), MLP_RATIO * d, d, true)?,
            adaln_modulation: Linear::load(
                src,
                &format!("{p}.adaLN_modulation"),
                cfg.cond_dim,
                6 * d,
                true,
            )?,
            n_heads: cfg.n_heads,
            head_dim: cfg.head_dim(),
        })
    }

    /// `x` float32 `[B, L, hidden]`, `c` `[B, cond_dim]` in the weights' dtype.
    fn forward(&self, x: &Tensor, c: &Tensor, ctx: &Context) -> Tensor {
        let (b, l) = (x.size()[0], x.size()[1]);
        let kind = c.kind();
        let m = self
            .adaln_modulation
            .forward(c)
            .to_kind(Kind::Float)
            .unsqueeze(1)
            .chunk(6, 2);
        let (shift1, scale1, gate1, shift2, scale2, gate2) =
            (&m[0], &m[1], &m[2], &m[3], &m[4], &m[5]);

        let a = modulate(&self.norm1.forward(x), shift1, scale1).to_kind(kind);
        // [B, L, (3, heads, head_dim)] -> three [B, heads, L, head_dim].
        let qkv = self
            .attn_qkv
            .forward(&a)
            .view([b, l, 3, self.n_heads, self.head_dim])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let o = ctx.attention(&ctx.rope(&q), &ctx.rope(&k), &v);
        let o = o
            .transpose(1, 2)
            .reshape([b, l, self.n_heads * self.head_dim]);
        let x = x + gate1 * self.attn_out.forward(&o).to_kind(Kind::Float);

        let m = modulate(&self.norm2.forward(&x), shift2, scale2).to_kind(kind);
        let mlp = self
            .mlp_2
            .forward(&self.mlp_0.forward(&m).gelu("tanh"))
            .to_kind(Kind::Float);
        x + gate2 * mlp
    }
}

/// `backbone.output_layer`, the `DDitFinalLayer`.
#[derive(Debug)]
struct OutputLayer {
    norm_final: LayerNorm,
    /// `[2 * hidden, cond_dim]`.
    adaln_modulation: Linear,
    linear: Linear,
}

impl OutputLayer {
    fn load(src: &mut dyn WeightSource, cfg: &MdlmConfig, p: &str) -> Result<Self, ProbeError> {
        let d = cfg.hidden_dim;
        Ok(OutputLayer {
            norm_final: LayerNorm::load(src, &format!("{p}.norm_final"), d)?,
            adaln_modulation: Linear::load(
                src,
                &format!("{p}.adaLN_modulation"),
                cfg.cond_dim,
                2 * d,
                true,
            )?,
            linear: Linear::load(src, &format!("{p}.linear"), d, cfg.vocab_size, true)?,
        })
    }

    /// Float32 logits.
    fn forward(&self, x: &Tensor, c: &Tensor) -> Tensor {
        let m = self
            .adaln_modulation
            .forward(c)
            .to_kind(Kind::Float)
            .unsqueeze(1)
            .chunk(2, 2);
        let h = modulate(&self.norm_final.forward(x), &m[0], &m[1]).to_kind(c.kind());
        self.linear.forward(&h).to_kind(Kind::Float)
    }
}

/// An MDLM model (the `DITBackbone` of `MDLM`), ready for inference or for training.
#[derive(Debug)]
pub struct MdlmModel {
    cfg: MdlmConfig,
    /// `backbone.vocab_embed.embedding`.
    vocab_embed: Tensor,
    sigma_map: SigmaMap,
    blocks: Vec<Block>,
    output_layer: OutputLayer,
    /// Recomputed rather than read from `backbone.rotary_emb.inv_freq`: that buffer is the
    /// same function of the head size, and a reduced-precision checkpoint would round it.
    rope: Rope,
    /// The `t` set by [`MdlmModel::with_timestep`].
    timestep: Option<f64>,
    device: Device,
}

impl MdlmModel {
    /// Builds the model from `src`, asking it for every tensor by its checkpoint name
    /// (`backbone.rotary_emb.inv_freq`, a buffer, is not asked for). `device` is where the
    /// tensors from `src` live (RoPE tables are made there).
    pub fn new(
        cfg: &MdlmConfig,
        src: &mut dyn WeightSource,
        device: Device,
    ) -> Result<Self, ProbeError> {
        cfg.validate(Path::new("config.json"))?;
        let vocab_embed = src.tensor(
            "backbone.vocab_embed.embedding",
            &[cfg.vocab_size, cfg.hidden_dim],
        )?;
        let sigma_map = SigmaMap::load(src, cfg, "backbone.sigma_map")?;
        let blocks = (0..cfg.n_blocks)
            .map(|i| Block::load(src, cfg, i))
            .collect::<Result<Vec<_>, _>>()?;
        let output_layer = OutputLayer::load(src, cfg, "backbone.output_layer")?;
        let rope = Rope::new(cfg.head_dim(), ROPE_THETA, cfg.model_length, device);
        Ok(MdlmModel {
            cfg: cfg.clone(),
            vocab_embed,
            sigma_map,
            blocks,
            output_layer,
            rope,
            timestep: None,
            device,
        })
    }

    pub fn config(&self) -> &MdlmConfig {
        &self.cfg
    }

    /// Sets the diffusion time `t` in `[0, 1]` that [`MaskedDenoiser::logits`] conditions on
    /// when the config has `time_conditioning`: every row gets the noise level
    /// `sigma = -log1p(-(1 - 1e-3) t)` (MDLM's log-linear schedule). With `None` (the default)
    /// each row's `t` is its fraction of masked positions (mask ids / row length), the
    /// expected masking rate at time `t` under that schedule. Without `time_conditioning` the
    /// model ignores the noise level and this setting changes nothing.
    ///
    /// A `t` outside `[0, 1]` (or NaN) is a [`ProbeError::Input`].
    pub fn with_timestep(mut self, t: Option<f64>) -> Result<Self, ProbeError> {
        if let Some(t) = t {
            if !(0.0..=1.0).contains(&t) {
                return Err(ProbeError::Input(format!(
                    "the MDLM timestep must lie in [0, 1], got {t}"
                )));
            }
        }
        self.timestep = t;
        Ok(self)
    }

    /// The `t` set by [`MdlmModel::with_timestep`].
    pub fn timestep(&self) -> Option<f64> {
        self.timestep
    }

    /// Raw logits, float32 `[B, L, vocab_size]`, as `MDLM.forward(ids, timesteps=sigma)`
    /// returns them: nothing is masked or normalised. `sigma` is float `[B]`, one noise level
    /// per row; it is replaced by zeros unless the config has `time_conditioning`, exactly as
    /// upstream does. Differentiable (not under `no_grad`).
    pub fn forward_raw(&self, ids: &Tensor, sigma: &Tensor) -> Tensor {
        let (x, c) = self.hidden(ids, sigma);
        self.output_layer.forward(&x, &c)
    }

    /// The SUBS parameterisation of MDLM (`Diffusion._subs_parameterization`): raw `logits`
    /// `[B, L, V]` and the input `ids` `[B, L]` they were computed from to float32
    /// log-probabilities. The mask token's logit is lowered by 1e6 before normalising, so it
    /// gets a log-probability of about -1e6; at every position whose input is not the mask
    /// id, all entries are -1e6 except the input token's, which is 0 (the token is carried
    /// over).
    pub fn subs(&self, logits: &Tensor, ids: &Tensor) -> Tensor {
        subs_parameterization(logits, ids, self.cfg.mask_id())
    }

    /// The float32 residual stream after the last block, and the condition `c`.
    fn hidden(&self, ids: &Tensor, sigma: &Tensor) -> (Tensor, Tensor) {
        let (b, l) = (ids.size()[0], ids.size()[1]);
        let kind = self.vocab_embed.kind();
        let sigma = if self.cfg.time_conditioning {
            sigma.shallow_clone()
        } else {
            Tensor::zeros([b], (Kind::Float, self.device))
        };
        let c = self.sigma_map.forward(&sigma, kind).silu();
        let mut x =
            Tensor::embedding(&self.vocab_embed, ids, -1, false, false).to_kind(Kind::Float);
        // `apply_rotary_pos_emb` casts cos/sin to the dtype of qkv and rotates in it.
        let ctx = Context::new(&self.rope, None, l, kind);
        for block in &self.blocks {
            x = block.forward(&x, &c, &ctx);
        }
        (x, c)
    }

    /// The noise level of every row of `ids`: from the set timestep, or from the row's
    /// fraction of masked positions (see [`MdlmModel::with_timestep`]).
    fn sigma(&self, ids: &Tensor) -> Tensor {
        let (b, l) = (ids.size()[0], ids.size()[1]);
        let t = match self.timestep {
            Some(t) => Tensor::full([b], t, (Kind::Float, self.device)),
            None => {
                ids.eq(self.cfg.mask_id())
                    .sum_dim_intlist(1, false, Kind::Float)
                    / l.max(1) as f64
            }
        };
        total_noise(&t)
    }
}

/// `LogLinearNoise.total_noise`: `sigma(t) = -log1p(-(1 - eps) t)`, in `t`'s dtype.
fn total_noise(t: &Tensor) -> Tensor {
    (t * -(1.0 - NOISE_EPS)).log1p().neg()
}

fn subs_parameterization(logits: &Tensor, ids: &Tensor, mask_id: i64) -> Tensor {
    let logits = logits.to_kind(Kind::Float);
    let v = logits.size()[2];
    let vocab = Tensor::arange(v, (Kind::Int64, logits.device()));
    // Upstream adds -1e6 in place to the mask column; adding 0.0 everywhere else is exact.
    let offset = vocab.eq(mask_id).to_kind(Kind::Float) * NEG_INFINITY;
    let logits = logits + offset;
    let logp = &logits - logits.logsumexp([-1i64], true);
    // 0 at the input token, -1e6 elsewhere (both exact in float32).
    let carry =
        ids.unsqueeze(-1).eq_tensor(&vocab).to_kind(Kind::Float) * -NEG_INFINITY + NEG_INFINITY;
    let unmasked = ids.ne(mask_id).unsqueeze(-1);
    carry.where_self(&unmasked, &logp)
}

impl MaskedDenoiser for MdlmModel {
    fn mask_id(&self) -> i64 {
        self.cfg.mask_id()
    }

    fn vocab_size(&self) -> i64 {
        self.cfg.vocab_size
    }

    /// `None`: `model_length` is the training length, but the forward pass never reads it
    /// and RoPE extends to any length, so nothing bounds the input.
    fn max_len(&self) -> Option<usize> {
        None
    }

    fn device(&self) -> Device {
        self.device
    }

    /// False: the upstream backbone takes no attention mask (its flash-attention call sees
    /// whole rows), so left padding would be attended to.
    fn supports_padding(&self) -> bool {
        false
    }

    /// The SUBS log-probabilities (see [`MdlmModel::subs`]), conditioned on the timestep of
    /// [`MdlmModel::with_timestep`] when the config has `time_conditioning`. Their softmax is
    /// the distribution MDLM samples from: about 0 for the mask token, and at an unmasked
    /// position all mass on its input token.
    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        let (b, l) = check_inputs(ids, valid, from, self.device, self.cfg.vocab_size)?;
        if normalise_valid(valid).is_some() {
            return Err(ProbeError::Input(
                "MDLM has no attention mask and cannot take padded batches; batch equal lengths"
                    .into(),
            ));
        }
        let n = l - from;
        if n == 0 {
            return Ok(Tensor::zeros(
                [b, 0, self.cfg.vocab_size],
                (Kind::Float, self.device),
            ));
        }
        Ok(tch::no_grad(|| {
            let (x, c) = self.hidden(ids, &self.sigma(ids));
            let raw = self.output_layer.forward(&x.narrow(1, from, n), &c);
            self.subs(&raw, &ids.narrow(1, from, n))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_subs(logits: &[f32], ids: &[i64], mask_id: i64, expected: &[f32]) {
        let v = (logits.len() / ids.len()) as i64;
        let logits = Tensor::from_slice(logits).view([1, ids.len() as i64, v]);
        let ids = Tensor::from_slice(ids).view([1, -1]);
        let got =
            Vec::<f32>::try_from(subs_parameterization(&logits, &ids, mask_id).view([-1])).unwrap();
        for (g, e) in got.iter().zip(expected) {
            assert!(
                (g - e).abs() <= 1e-5 * e.abs().max(1.0),
                "{got:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn subs_normalises_masked_rows_without_the_mask_token() {
        // Vocabulary of 3 with mask id 2: a masked position spreads over tokens 0 and 1 only
        // (equal logits: ln 1/2 each) and the mask token gets about -1e6.
        let ln_half = 0.5f32.ln();
        check_subs(&[1.0, 1.0, 5.0], &[2], 2, &[ln_half, ln_half, -1e6]);
    }

    #[test]
    fn subs_carries_unmasked_tokens_over() {
        check_subs(
            &[1.0, 2.0, 3.0, 0.0, 0.0, 0.0],
            &[1, 2],
            2,
            &[-1e6, 0.0, -1e6, 0.5f32.ln(), 0.5f32.ln(), -1e6],
        );
    }

    #[test]
    fn log_linear_noise_is_zero_at_zero_and_finite_at_one() {
        let t = Tensor::from_slice(&[0.0f32, 0.5, 1.0]);
        let sigma = Vec::<f32>::try_from(total_noise(&t)).unwrap();
        assert_eq!(sigma[0], 0.0);
        // -ln(1 - 0.999 / 2) = ln(1 / 0.5005).
        assert!(
            (sigma[1] - (1.0f32 / 0.5005).ln()).abs() < 1e-6,
            "{sigma:?}"
        );
        assert!((sigma[2] - 1000f32.ln()).abs() < 1e-4, "{sigma:?}");
    }
}
