//! LLaDA-MoE and LLaDA2.0 against the logits of their upstream classes
//! (`fixtures/parity/{lladamoe,llada2}-tiny/reference.safetensors`, README sections 6 and 7),
//! loaded through `load_model`, the path a real checkpoint takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cp_model::{
    load_model, save_safetensors, DeviceChoice, Llada2Config, Llada2Model, LoadOptions,
    MaskedDenoiser, ProbeError, SafetensorsSource,
};
use tch::{Device, Kind, Tensor};

/// The README measures up to 5.7e-6 between float32 and float64 runs of the references.
const PARITY_TOL: f64 = 1e-4;

const CASES: [&str; 3] = ["case_a", "case_b", "case_c"];

fn parity(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/parity")
        .join(name)
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(parity(name).join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn cpu(block_length: Option<i64>) -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        block_length,
        ..Default::default()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

#[test]
fn llada_moe_loads_by_its_architecture_and_matches_the_reference() {
    let loaded = load_model(&parity("lladamoe-tiny"), &cpu(None)).unwrap();
    assert_eq!(loaded.info.model_type, "llada");
    let refs = reference("lladamoe-tiny");
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let got = loaded.denoiser.logits(ids, None, 0).unwrap();
        let diff = max_abs_diff(&got, &refs[&format!("{case}_logits")]);
        println!("llada-moe {case}: max abs diff {diff:.3e}");
        assert!(diff <= PARITY_TOL, "llada-moe {case}: {diff:e}");
        // Positions from..L are the same rows.
        let tail = loaded.denoiser.logits(ids, None, 3).unwrap();
        assert!(max_abs_diff(&tail, &got.narrow(1, 3, got.size()[1] - 3)) < 1e-5);
    }
}

#[test]
fn llada_moe_left_padding_gives_the_unpadded_logits() {
    let loaded = load_model(&parity("lladamoe-tiny"), &cpu(None)).unwrap();
    let refs = reference("lladamoe-tiny");
    let ids = &refs["case_a_input"];
    let l = ids.size()[1];
    let padded = Tensor::cat(
        &[
            Tensor::full([1, 3], 5, (Kind::Int64, Device::Cpu)),
            ids.shallow_clone(),
        ],
        1,
    );
    let valid = Tensor::cat(
        &[
            Tensor::zeros([1, 3], (Kind::Bool, Device::Cpu)),
            Tensor::ones([1, l], (Kind::Bool, Device::Cpu)),
        ],
        1,
    );
    let got = loaded.denoiser.logits(&padded, Some(&valid), 3).unwrap();
    let diff = max_abs_diff(&got, &refs["case_a_logits"]);
    assert!(diff <= PARITY_TOL, "padded: {diff:e}");
}

/// Without a mask LLaDA2.0 attends bidirectionally (the `case_*_logits`); its sampler's
/// block-causal attention gives the `case_*_block_causal_logits`, and that is what the loaded
/// model serves.
#[test]
fn llada2_matches_the_reference_bidirectional_and_block_causal() {
    let dir = parity("llada2-tiny");
    let refs = reference("llada2-tiny");
    let cfg: Llada2Config =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut src = SafetensorsSource::open(&dir).unwrap();
    let bidirectional = Llada2Model::new(&cfg, &mut src, Device::Cpu)
        .unwrap()
        .with_block_length(None)
        .unwrap();
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let got = bidirectional.logits(ids, None, 0).unwrap();
        let diff = max_abs_diff(&got, &refs[&format!("{case}_logits")]);
        println!("llada2 {case}: max abs diff {diff:.3e}");
        assert!(diff <= PARITY_TOL, "llada2 {case}: {diff:e}");
    }
    for (case, block) in [("case_a", 8), ("case_b", 8), ("case_c", 16)] {
        let loaded = load_model(&dir, &cpu(Some(block))).unwrap();
        let ids = &refs[&format!("{case}_input")];
        let expected = &refs[&format!("{case}_block_causal_logits")];
        let got = loaded.denoiser.logits(ids, None, 0).unwrap();
        let diff = max_abs_diff(&got, expected);
        println!("llada2 block-causal {case}: max abs diff {diff:.3e}");
        assert!(diff <= PARITY_TOL, "llada2 block-causal {case}: {diff:e}");
        // The sampler feeds block-aligned prefixes: a window's rows are the same.
        let l = ids.size()[1];
        let window = ((l / 2 + block - 1) / block) * block;
        let prefix = loaded
            .denoiser
            .logits(&ids.narrow(1, 0, window), None, 0)
            .unwrap();
        let diff = max_abs_diff(&prefix, &expected.narrow(1, 0, window));
        assert!(diff <= PARITY_TOL, "llada2 window {case}: {diff:e}");
        // And the mask matters.
        assert!(max_abs_diff(&got, &refs[&format!("{case}_logits")]) > 0.1);
    }
}

/// The block length comes from `--block-length`, else `generation_config.json`, else 32.
#[test]
fn llada2_block_length_defaults_to_the_generation_config_then_32() {
    let refs = reference("llada2-tiny");
    let ids = &refs["case_c_input"];
    let expected = &refs["case_c_block_causal_logits"];
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(parity("llada2-tiny").join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"block_length": 16, "eos_token_id": 318}"#,
    )
    .unwrap();
    let from_config = load_model(dir.path(), &cpu(None)).unwrap();
    let diff = max_abs_diff(
        &from_config.denoiser.logits(ids, None, 0).unwrap(),
        expected,
    );
    assert!(diff <= PARITY_TOL, "{diff:e}");
    std::fs::write(dir.path().join("generation_config.json"), "{}").unwrap();
    let default = load_model(dir.path(), &cpu(None)).unwrap();
    // 64 positions in blocks of 32 are not the reference's blocks of 16.
    let diff = max_abs_diff(&default.denoiser.logits(ids, None, 0).unwrap(), expected);
    assert!(diff > 0.1, "{diff:e}");
    std::fs::write(
        dir.path().join("generation_config.json"),
        r#"{"block_length": 0}"#,
    )
    .unwrap();
    let Err(err) = load_model(dir.path(), &cpu(None)) else {
        panic!("a block length of 0 loaded");
    };
    assert!(err.to_string().contains("`block_length`"), "{err}");
}

/// A checkpoint whose tensors are named otherwise is refused with both lists, not run.
#[test]
fn renamed_tensors_are_listed_missing_and_unexpected() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        parity("lladamoe-tiny").join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(parity("lladamoe-tiny").join("model.safetensors"))
            .unwrap()
            .into_iter()
            .map(|(name, t)| {
                let name = name.replace("shared_expert.", "mlp.shared_experts.");
                (name, t)
            })
            .chain([(
                "model.extra.weight".to_string(),
                Tensor::zeros([2], (Kind::Float, Device::Cpu)),
            )])
            .collect();
    save_safetensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    let err = match load_model(dir.path(), &cpu(None)) {
        Err(e @ ProbeError::TensorSet { .. }) => e.to_string(),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("loaded a renamed checkpoint"),
    };
    for needle in [
        "3 missing",
        "`model.layers.1.shared_expert.gate_proj.weight`",
        "4 unexpected",
        "`model.layers.1.mlp.shared_experts.up_proj.weight`",
        "`model.extra.weight`",
    ] {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

/// Scattered weights for whatever a config asks (norm weights 1), so that every switch of the
/// configs can be built and run without a reference checkpoint. They come from a hash of the
/// element index, not from libtorch's generator: that one is shared by every test thread, and
/// drawing from it here would change the seeded draws of the decode tests running beside.
struct Random;

impl cp_model::WeightSource for Random {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        let n: i64 = shape.iter().product();
        Ok(if name.contains("norm") && shape.len() == 1 {
            Tensor::ones(shape, (Kind::Float, Device::Cpu))
        } else {
            let salt = name.len() as u64;
            let values: Vec<f32> = (0..n as u64)
                .map(|i| {
                    let h = (i ^ (salt << 32)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
                    (h as f32 / (1u64 << 24) as f32 - 0.5) * 0.4
                })
                .collect();
            Tensor::from_slice(&values).view(shape)
        })
    }
}

/// Left padding must not change a row's logits, whatever the switches.
fn padding_invariant(model: &dyn MaskedDenoiser, what: &str) {
    let ids = Tensor::from_slice(&[3i64, 17, 42, 5, 9, 11, 31, 30]).view([1, 8]);
    let plain = model.logits(&ids, None, 0).unwrap();
    assert_eq!(plain.size(), [1, 8, 64], "{what}");
    assert!(bool::try_from(plain.isfinite().all()).unwrap(), "{what}");
    if model.supports_padding() {
        let padded = Tensor::cat(&[Tensor::zeros([1, 2], (Kind::Int64, Device::Cpu)), ids], 1);
        let valid = Tensor::cat(
            &[
                Tensor::zeros([1, 2], (Kind::Bool, Device::Cpu)),
                Tensor::ones([1, 8], (Kind::Bool, Device::Cpu)),
            ],
            1,
        );
        let got = model.logits(&padded, Some(&valid), 2).unwrap();
        assert!(
            max_abs_diff(&got, &plain) < 1e-4,
            "{what}: padding changed the logits"
        );
    }
}

#[test]
fn llada_moe_switches_build_and_run() {
    let base = serde_json::json!({
        "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 64, "dense_intermediate_size": 48,
        "expert_intermediate_size": 16, "num_experts": 6, "num_experts_per_tok": 2,
        "moe_layer_freq": [0, 1, 1], "mask_token_id": 63,
    });
    let variants = [
        serde_json::json!({}),
        serde_json::json!({"qk_layernorm": true, "moe_router_enable_expert_bias": true,
            "shared_expert_intermediate_size": 24, "partial_rotary_factor": 0.5}),
        serde_json::json!({"attention_bias": true, "tie_word_embeddings": true,
            "moe_layer_freq": 1, "num_experts_per_tok": 6}),
    ];
    for (i, extra) in variants.iter().enumerate() {
        let mut json = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            json[k] = v.clone();
        }
        let cfg: cp_model::LladaMoeConfig = serde_json::from_value(json).unwrap();
        let model = cp_model::LladaMoeModel::new(&cfg, &mut Random, Device::Cpu).unwrap();
        padding_invariant(&model, &format!("llada-moe variant {i}"));
    }
}

#[test]
fn llada2_switches_build_and_run() {
    let base = serde_json::json!({
        "hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 64, "intermediate_size": 48,
        "moe_intermediate_size": 16, "num_experts": 8, "num_experts_per_tok": 2,
        "n_group": 4, "topk_group": 2, "num_shared_experts": 1, "first_k_dense_replace": 1,
        "partial_rotary_factor": 0.5, "mask_token_id": 63,
    });
    let variants = [
        serde_json::json!({}),
        serde_json::json!({"use_qkv_bias": true, "use_bias": true, "use_qk_norm": false,
            "num_shared_experts": 0, "first_k_dense_replace": 0}),
        serde_json::json!({"head_dim": 12, "n_group": 1, "topk_group": 1,
            "num_shared_experts": 2, "num_experts_per_tok": 1, "tie_word_embeddings": true,
            "partial_rotary_factor": 1.0}),
    ];
    for (i, extra) in variants.iter().enumerate() {
        let mut json = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            json[k] = v.clone();
        }
        let cfg: Llada2Config = serde_json::from_value(json).unwrap();
        cfg.validate(Path::new("config.json")).unwrap();
        let model = Llada2Model::new(&cfg, &mut Random, Device::Cpu)
            .unwrap()
            .with_block_length(Some(4))
            .unwrap();
        padding_invariant(&model, &format!("llada2 variant {i}"));
        // Block-causal: a later block never changes an earlier block's logits.
        let ids = Tensor::from_slice(&[3i64, 17, 42, 5, 9, 11, 31, 30]).view([1, 8]);
        let mut other = Vec::<i64>::try_from(ids.view([-1])).unwrap();
        other[6] = 1;
        let other = Tensor::from_slice(&other).view([1, 8]);
        let (a, b) = (
            model.logits(&ids, None, 0).unwrap(),
            model.logits(&other, None, 0).unwrap(),
        );
        assert!(
            max_abs_diff(&a.narrow(1, 0, 4), &b.narrow(1, 0, 4)) < 1e-5,
            "variant {i}"
        );
        assert!(
            max_abs_diff(&a.narrow(1, 4, 4), &b.narrow(1, 4, 4)) > 1e-4,
            "variant {i}"
        );
    }
}
