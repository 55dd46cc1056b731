//! The architectures, and the layers they share.
//!
//! Each architecture lives in its own file (`llada.rs`, `dream.rs`, `torchscript.rs`)
//! with a serde `Config` mirroring its `config.json` and layer structs whose
//! fields are named after the checkpoint's tensors. What is shared here is only
//! what the two transformer families compute identically: linear layers, RMSNorm,
//! rotate-half RoPE, bidirectional attention with a padding mask, and the checks
//! every [`crate::MaskedDenoiser::logits`] call makes on its inputs.

pub(crate) mod dream;
pub(crate) mod llada;
pub(crate) mod llada2;
pub(crate) mod llada_moe;
pub(crate) mod mdlm;
pub(crate) mod moe;
pub(crate) mod torchscript;

use tch::{Device, Kind, Tensor};

use crate::error::ProbeError;
use crate::weights::WeightSource;

/// `y = x W^T + b`, with `W` stored `[out, in]` as in PyTorch.
#[derive(Debug)]
pub(crate) struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        prefix: &str,
        in_dim: i64,
        out_dim: i64,
        bias: bool,
    ) -> Result<Self, ProbeError> {
        let weight = src.tensor(&format!("{prefix}.weight"), &[out_dim, in_dim])?;
        let bias = if bias {
            Some(src.tensor(&format!("{prefix}.bias"), &[out_dim])?)
        } else {
            None
        };
        Ok(Linear { weight, bias })
    }

    /// A linear layer reusing another tensor as its weight (tied embeddings).
    pub(crate) fn tied(weight: &Tensor) -> Self {
        Linear {
            weight: weight.shallow_clone(),
            bias: None,
        }
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `down_proj(silu(gate_proj(x)) * up_proj(x))`, without biases: Dream's and the MoE
/// models' dense MLPs, and every expert.
#[derive(Debug)]
pub(crate) struct SwiGlu {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl SwiGlu {
    /// Loads `{prefix}.{gate,up,down}_proj.weight` for width `width`.
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        prefix: &str,
        d: i64,
        width: i64,
    ) -> Result<Self, ProbeError> {
        Ok(SwiGlu {
            gate_proj: Linear::load(src, &format!("{prefix}.gate_proj"), d, width, false)?,
            up_proj: Linear::load(src, &format!("{prefix}.up_proj"), d, width, false)?,
            down_proj: Linear::load(src, &format!("{prefix}.down_proj"), width, d, false)?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj
            .forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}

/// RMSNorm as both reference implementations compute it: normalise in float32, cast back
/// to the activation dtype, then scale by the weight (and add a bias, for LLaDA configs
/// with `bias_for_layer_norm`).
#[derive(Debug)]
pub(crate) struct RmsNorm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    eps: f64,
}

impl RmsNorm {
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        prefix: &str,
        size: i64,
        eps: f64,
        affine: bool,
        bias: bool,
    ) -> Result<Self, ProbeError> {
        let weight = if affine {
            Some(src.tensor(&format!("{prefix}.weight"), &[size])?)
        } else {
            None
        };
        let bias = if affine && bias {
            Some(src.tensor(&format!("{prefix}.bias"), &[size])?)
        } else {
            None
        };
        Ok(RmsNorm { weight, bias, eps })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let variance = xf.square().mean_dim(-1, true, Kind::Float);
        let normed = (xf * (variance + self.eps).rsqrt()).to_kind(kind);
        let scaled = match &self.weight {
            Some(w) => w * normed,
            None => normed,
        };
        match &self.bias {
            Some(b) => scaled + b,
            None => scaled,
        }
    }
}

/// Rotary position embedding, non-interleaved ("rotate half"): dimension `i` of the first
/// half pairs with dimension `i + head_dim/2`. The cos/sin tables are float32, computed
/// once for the model's maximum length (capped) and sliced or gathered per call.
#[derive(Debug)]
pub(crate) struct Rope {
    inv_freq: Tensor,
    cos: Tensor,
    sin: Tensor,
}

/// Longest table precomputed at load time; longer inputs get a table computed on the fly.
/// (Dream's `max_position_embeddings` is 131072, whose table would take 134 MB.)
const ROPE_TABLE_CAP: i64 = 8192;

impl Rope {
    pub(crate) fn new(head_dim: i64, theta: f64, max_len: i64, device: Device) -> Self {
        // inv_freq = 1 / theta^(2i/d) in float32, the order of operations of both references.
        let exponent =
            Tensor::arange_start_step(0, head_dim, 2, (Kind::Float, device)) / head_dim as f64;
        let inv_freq = Tensor::pow_scalar(theta, &exponent).reciprocal();
        let (cos, sin) = Self::compute(&inv_freq, max_len.clamp(1, ROPE_TABLE_CAP));
        Rope { inv_freq, cos, sin }
    }

    fn compute(inv_freq: &Tensor, len: i64) -> (Tensor, Tensor) {
        let positions = Tensor::arange(len, (Kind::Float, inv_freq.device()));
        let freqs = positions.outer(inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos(), emb.sin())
    }

    /// Tables for positions `0..len`, `[len, head_dim]` float32.
    fn tables(&self, len: i64) -> (Tensor, Tensor) {
        if len <= self.cos.size()[0] {
            (self.cos.narrow(0, 0, len), self.sin.narrow(0, 0, len))
        } else {
            Self::compute(&self.inv_freq, len)
        }
    }
}

/// What every layer of one forward pass shares: the RoPE cos/sin for each position
/// (`[1 or B, 1, L, head_dim]`, in the dtype RoPE is applied in) and the key padding mask.
pub(crate) struct Context {
    cos: Tensor,
    sin: Tensor,
    /// Bool `[B, 1, 1, L]`, true where a key may be attended to; `None` without padding.
    mask: Option<Tensor>,
    /// The dtype RoPE is computed in.
    rope_kind: Kind,
}

impl Context {
    /// `valid` must already be normalised by [`normalise_valid`] (`None` when nothing is padded).
    /// Positions count from each row's first valid token, as the Dream sampler's
    /// `attention_mask.cumsum(-1) - 1` does, so left padding does not shift RoPE.
    pub(crate) fn new(rope: &Rope, valid: Option<&Tensor>, len: i64, rope_kind: Kind) -> Self {
        let (cos, sin) = rope.tables(len);
        let (cos, sin, mask) = match valid {
            None => (cos.view([1, 1, len, -1]), sin.view([1, 1, len, -1]), None),
            Some(valid) => {
                let b = valid.size()[0];
                let positions = (valid.cumsum(1, Kind::Int64) - 1).clamp_min(0).view([-1]);
                let gather = |t: &Tensor| t.index_select(0, &positions).view([b, 1, len, -1]);
                (gather(&cos), gather(&sin), Some(valid.view([b, 1, 1, len])))
            }
        };
        Context {
            cos: cos.to_kind(rope_kind),
            sin: sin.to_kind(rope_kind),
            mask,
            rope_kind,
        }
    }

    /// Applies RoPE to `x` `[B, H, L, head_dim]`, computing in the context's RoPE dtype and
    /// returning `x`'s dtype.
    pub(crate) fn rope(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let x = x.to_kind(self.rope_kind);
        let half = x.size()[3] / 2;
        let rotated = Tensor::cat(&[&x.narrow(3, half, half).neg(), &x.narrow(3, 0, half)], 3);
        (x * &self.cos + rotated * &self.sin).to_kind(kind)
    }

    /// Restricts attention to block-causal, as LLaDA2.0's sampler runs its model: positions
    /// fall in blocks of `block` counted from position 0, and a query attends to the keys of
    /// its own block and of every earlier one (bidirectional inside a block).
    pub(crate) fn block_causal(mut self, len: i64, block: i64) -> Self {
        let device = self.cos.device();
        let blocks = Tensor::arange(len, (Kind::Int64, device)).divide_scalar_mode(block, "floor");
        let allowed = blocks
            .unsqueeze(0)
            .le_tensor(&blocks.unsqueeze(1))
            .view([1, 1, len, len]);
        self.mask = Some(match self.mask.take() {
            Some(padding) => padding.logical_and(&allowed),
            None => allowed,
        });
        self
    }

    /// RoPE on the first `dims` values of each head of `x` `[B, H, L, head_dim]`, the rest
    /// passed through (partial rotary); the context's tables must be `dims` wide.
    pub(crate) fn rope_partial(&self, x: &Tensor, dims: i64) -> Tensor {
        let head_dim = x.size()[3];
        if dims == head_dim {
            return self.rope(x);
        }
        Tensor::cat(
            &[
                self.rope(&x.narrow(3, 0, dims)),
                x.narrow(3, dims, head_dim - dims),
            ],
            3,
        )
    }

    /// Bidirectional scaled-dot-product attention, `q` `[B, H, L, d]`, `k`/`v` `[B, H_kv, L, d]`.
    /// Grouped-query attention shares each k/v head among `H / H_kv` consecutive query heads
    /// (heads 0,0,1,1 for 4 query and 2 kv heads), as `repeat_interleave` does upstream.
    pub(crate) fn attention(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> Tensor {
        let n_rep = q.size()[1] / k.size()[1];
        let (k, v) = if n_rep > 1 {
            let heads = Some(q.size()[1]);
            (
                k.repeat_interleave_self_int(n_rep, Some(1), heads),
                v.repeat_interleave_self_int(n_rep, Some(1), heads),
            )
        } else {
            (k.shallow_clone(), v.shallow_clone())
        };
        Tensor::scaled_dot_product_attention(q, &k, &v, self.mask.as_ref(), 0.0, false, None, false)
    }
}

/// Checks the arguments of [`crate::MaskedDenoiser::logits`] so that a bad request is an
/// error rather than a libtorch panic. Returns `(B, L)`.
pub(crate) fn check_inputs(
    ids: &Tensor,
    valid: Option<&Tensor>,
    from: i64,
    device: Device,
    vocab: i64,
) -> Result<(i64, i64), ProbeError> {
    let size = ids.size();
    if size.len() != 2 || ids.kind() != Kind::Int64 {
        return Err(ProbeError::Input(format!(
            "ids must be int64 [batch, length], got {:?} {:?}",
            ids.kind(),
            size
        )));
    }
    if ids.device() != device {
        return Err(ProbeError::Input(format!(
            "ids are on {:?} but the model is on {:?}",
            ids.device(),
            device
        )));
    }
    let (b, l) = (size[0], size[1]);
    if !(0..=l).contains(&from) {
        return Err(ProbeError::Input(format!(
            "`from` is {from}, outside 0..={l} for sequences of length {l}"
        )));
    }
    if ids.numel() > 0 {
        let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
        if lo < 0 || hi >= vocab {
            return Err(ProbeError::Input(format!(
                "token ids must lie in 0..{vocab}, found {}",
                if lo < 0 { lo } else { hi }
            )));
        }
    }
    if let Some(valid) = valid {
        if valid.size() != size || valid.kind() != Kind::Bool || valid.device() != device {
            return Err(ProbeError::Input(format!(
                "valid must be bool {size:?} on {device:?}, got {:?} {:?} on {:?}",
                valid.kind(),
                valid.size(),
                valid.device()
            )));
        }
        if b > 0 && l > 0 && valid.any_dim(1, false).all().int64_value(&[]) == 0 {
            return Err(ProbeError::Input(
                "a row of `valid` has no valid position".to_string(),
            ));
        }
    }
    Ok((b, l))
}

/// `None` when no position is padded, so the unpadded fast path (no mask, sliced RoPE
/// tables) is taken whenever it gives the same result.
pub(crate) fn normalise_valid(valid: Option<&Tensor>) -> Option<Tensor> {
    match valid {
        Some(v) if v.numel() > 0 && v.all().int64_value(&[]) == 0 => Some(v.shallow_clone()),
        _ => None,
    }
}

/// The first of `dims` (key, value) that is not positive, as an error naming the key of the
/// config at `path`: every architecture's dimensions are checked alike.
pub(crate) fn require_positive(
    path: &std::path::Path,
    dims: &[(&str, i64)],
) -> Result<(), ProbeError> {
    match dims.iter().find(|(_, v)| *v <= 0) {
        Some((key, v)) => Err(ProbeError::Config {
            path: path.to_path_buf(),
            message: format!("key `{key}`: must be positive, is {v}"),
        }),
        None => Ok(()),
    }
}

/// Reads `config.json` as JSON, naming the file (and the line and column) when it is not.
pub(crate) fn read_config_json(path: &std::path::Path) -> Result<serde_json::Value, ProbeError> {
    let bytes = std::fs::read(path).map_err(|source| ProbeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_config_json(path, &bytes)
}

pub(crate) fn parse_config_json(
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<serde_json::Value, ProbeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ProbeError::Config {
            path: path.to_path_buf(),
            message: format!("invalid JSON: {e}"),
        })?;
    if !value.is_object() {
        return Err(ProbeError::Config {
            path: path.to_path_buf(),
            message: "expected a JSON object of settings".into(),
        });
    }
    Ok(value)
}

/// Deserialises an architecture config, naming the key whose value has the wrong type
/// (serde itself names missing keys).
pub(crate) fn from_config_value<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    value: serde_json::Value,
) -> Result<T, ProbeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ProbeError::Config {
            path: path.to_path_buf(),
            message: if key == "." {
                inner.to_string()
            } else {
                format!("key `{key}`: {inner}")
            },
        }
    })
}
