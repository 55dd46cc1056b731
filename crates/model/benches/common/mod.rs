//! Random LLaDA-layout checkpoints for the benchmarks, written through the same
//! `LladaModel::new` + `WeightSource` path a trainer uses, so names and shapes are exactly
//! what `load_model` asks for.

use std::path::Path;

use cp_model::{save_safetensors, LladaConfig, LladaModel, ProbeError, WeightSource};
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

/// A LLaDA-MoE `config.json` (`architectures: ["LLaDAMoEModelLM"]`): layer 0 dense, the others
/// MoE with a shared expert, every switch on as in the released model.
// Only `load_memory` writes MoE checkpoints; the other benches share this module.
#[allow(dead_code)]
pub fn llada_moe_config_json(
    hidden: i64,
    layers: i64,
    experts: i64,
    expert_width: i64,
    vocab: i64,
) -> serde_json::Value {
    let freq: Vec<i64> = (0..layers).map(|i| i64::from(i > 0)).collect();
    serde_json::json!({
        "architectures": ["LLaDAMoEModelLM"], "model_type": "llada",
        "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": 8,
        "num_key_value_heads": 4, "dense_intermediate_size": 4 * hidden,
        "expert_intermediate_size": expert_width, "shared_expert_intermediate_size": expert_width,
        "num_experts": experts, "num_experts_per_tok": 4, "moe_layer_freq": freq,
        "qk_layernorm": true, "moe_router_enable_expert_bias": true, "vocab_size": vocab,
        "mask_token_id": vocab - 1, "eos_token_id": vocab - 2, "rope_theta": 50000.0,
        "rms_norm_eps": 1e-5, "max_position_embeddings": 4096, "dtype": "float32",
    })
}

/// Writes a random LLaDA-MoE checkpoint of `config` to `dir`; returns the weight bytes.
#[allow(dead_code)]
pub fn write_random_llada_moe(dir: &Path, config: &serde_json::Value, seed: i64) -> u64 {
    tch::manual_seed(seed);
    let cfg: cp_model::LladaMoeConfig =
        serde_json::from_value(config.clone()).expect("a valid LLaDA-MoE config");
    let mut src = Random { params: Vec::new() };
    let model = cp_model::LladaMoeModel::new(&cfg, &mut src, Device::Cpu)
        .expect("random weights fit the config");
    drop(model);
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
    save_safetensors(&dir.join("model.safetensors"), &src.params).unwrap();
    src.params.iter().map(|(_, t)| (t.numel() * 4) as u64).sum()
}
