//! Random LLaDA-layout checkpoints for the benchmarks, written through the same
//! `LladaModel::new` + `WeightSource` path a trainer uses, so names and shapes are exactly
//! what `load_model` asks for.

use std::path::Path;

use cp_probe::{save_safetensors, LladaConfig, LladaModel, ProbeError, WeightSource};
use tch::{Device, Kind, Tensor};

/// Hands out N(0, 0.02) tensors (norm weights 1) and remembers them by name.
struct Random {
    params: Vec<(String, Tensor)>,
}

impl WeightSource for Random {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        let t = if shape.len() == 1 {
            Tensor::ones(shape, (Kind::Float, Device::Cpu))
        } else {
            Tensor::randn(shape, (Kind::Float, Device::Cpu)) * 0.02
        };
        self.params.push((name.to_string(), t.shallow_clone()));
        Ok(t)
    }
}

/// An LLaDA config of the given size, every other key as in the released model.
pub fn llada_config(
    d_model: i64,
    n_layers: i64,
    n_heads: i64,
    mlp: i64,
    vocab: i64,
) -> LladaConfig {
    let json = serde_json::json!({
        "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads, "n_kv_heads": n_heads,
        "mlp_hidden_size": mlp, "mlp_ratio": 4, "vocab_size": vocab, "embedding_size": vocab,
        "rope_theta": 500000.0, "rms_norm_eps": 1e-5, "max_sequence_length": 4096,
        "mask_token_id": vocab - 1, "eos_token_id": vocab - 2, "weight_tying": false,
        "include_bias": false, "block_type": "llama", "activation_type": "silu",
        "layer_norm_type": "rms", "rope": true, "torch_dtype": "float32",
    });
    serde_json::from_value(json).expect("a valid LLaDA config")
}

/// Writes `config.json` and `model.safetensors` (float32, seeded) to `dir`; returns the
/// weight bytes.
pub fn write_random_llada(dir: &Path, cfg: &LladaConfig, seed: i64) -> u64 {
    tch::manual_seed(seed);
    let mut src = Random { params: Vec::new() };
    let model = LladaModel::new(cfg, &mut src, Device::Cpu).expect("random weights fit the config");
    drop(model);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&cfg.to_config_json()).unwrap(),
    )
    .unwrap();
    save_safetensors(&dir.join("model.safetensors"), &src.params).unwrap();
    src.params.iter().map(|(_, t)| (t.numel() * 4) as u64).sum()
}
