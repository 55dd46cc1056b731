//! MDLM parity and behaviour tests.
//!
//! The references in `fixtures/parity/mdlm-tiny/reference.safetensors` were computed in
//! float32 by the upstream `dit.py` backbone and `Diffusion._subs_parameterization` (see
//! `fixtures/parity/README.md`, "mdlm-tiny"): raw logits and SUBS log-probabilities, without
//! and with time conditioning.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cp_model::{
    MaskedDenoiser, MdlmConfig, MdlmModel, ProbeError, SafetensorsSource, WeightSource,
};
use tch::{Device, Kind, Tensor};

/// Largest absolute difference accepted against the float32 references; the README measures
/// up to 5.7e-6 between float32 and float64 runs of the reference itself.
const PARITY_TOL: f64 = 1e-4;

/// SUBS writes -1e6 for "impossible"; anything below this counts as such.
const IMPOSSIBLE: f64 = -1e5;

const CASES: [&str; 3] = ["case_a", "case_b", "case_c"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/mdlm-tiny")
}

fn reference() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir().join("reference.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

fn config(time_conditioning: bool) -> MdlmConfig {
    let mut cfg = MdlmConfig::from_file(&dir().join("config.json")).unwrap();
    cfg.time_conditioning = time_conditioning;
    cfg
}

fn model(time_conditioning: bool) -> MdlmModel {
    let mut src = SafetensorsSource::open(&dir()).unwrap();
    MdlmModel::new(&config(time_conditioning), &mut src, Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

/// Compares SUBS log-probabilities: the largest difference over the entries the reference
/// holds finite (> -1e5), after checking that ours are "impossible" exactly where the
/// reference's are.
fn subs_diff(got: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(got.size(), expected.size(), "shapes differ");
    let (got, expected) = (got.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let finite = expected.gt(IMPOSSIBLE);
    assert_eq!(
        got.gt(IMPOSSIBLE)
            .ne_tensor(&finite)
            .sum(Kind::Int64)
            .int64_value(&[]),
        0,
        "the impossible entries differ"
    );
    (got - expected)
        .abs()
        .where_self(&finite, &Tensor::zeros([], (Kind::Double, Device::Cpu)))
        .max()
        .double_value(&[])
}

fn assert_close(what: &str, diff: f64) {
    println!("mdlm {what}: max abs diff {diff:.3e}");
    assert!(diff <= PARITY_TOL, "mdlm {what}: max abs diff {diff:e}");
}

#[test]
fn raw_logits_and_subs_match_the_reference() {
    let model = model(false);
    let refs = reference();
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let sigma = &refs[&format!("{case}_sigma")];
        let raw = tch::no_grad(|| model.forward_raw(ids, sigma));
        assert_close(
            &format!("{case} logits"),
            max_abs_diff(&raw, &refs[&format!("{case}_logits")]),
        );
        let subs = model.subs(&raw, ids);
        assert_close(
            &format!("{case} subs"),
            subs_diff(&subs, &refs[&format!("{case}_subs_logprobs")]),
        );
        // Without time conditioning sigma is replaced by zeros, so any sigma gives the same.
        let other = tch::no_grad(|| model.forward_raw(ids, &(sigma * 3.0 + 1.0)));
        assert_eq!(max_abs_diff(&raw, &other), 0.0, "{case}");
    }
}

#[test]
fn time_conditioned_logits_and_subs_match_the_reference() {
    let model = model(true);
    let refs = reference();
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let raw = tch::no_grad(|| model.forward_raw(ids, &refs[&format!("{case}_sigma")]));
        assert_close(
            &format!("{case} logits_timecond"),
            max_abs_diff(&raw, &refs[&format!("{case}_logits_timecond")]),
        );
        assert_close(
            &format!("{case} subs_timecond"),
            subs_diff(
                &model.subs(&raw, ids),
                &refs[&format!("{case}_subs_logprobs_timecond")],
            ),
        );
        // The conditioning is live: the unconditioned logits are far away.
        assert!(max_abs_diff(&raw, &refs[&format!("{case}_logits")]) > 0.1);
    }
}

#[test]
fn denoiser_logits_are_subs_at_the_set_timestep() {
    let refs = reference();
    let ids = &refs["case_a_input"];
    let t = refs["case_a_t"].double_value(&[0]);
    let model = model(true).with_timestep(Some(t)).unwrap();
    assert_eq!(model.timestep(), Some(t));
    let expected = &refs["case_a_subs_logprobs_timecond"];
    let got = model.logits(ids, None, 0).unwrap();
    assert_eq!(got.kind(), Kind::Float);
    assert_close("denoiser case_a at t", subs_diff(&got, expected));
    // `from` slices the same computation.
    let tail = model.logits(ids, None, 12).unwrap();
    assert_eq!(tail.size(), [1, 20, 320]);
    assert_close(
        "denoiser case_a at t, from 12",
        subs_diff(&tail, &expected.narrow(1, 12, 20)),
    );
    assert_eq!(model.logits(ids, None, 32).unwrap().size(), [1, 0, 320]);
}

#[test]
fn default_timestep_is_the_fraction_masked() {
    let refs = reference();
    // case_b: row 0 has 10 of 24 positions masked, row 1 has 13.
    let ids = &refs["case_b_input"];
    let masked: Vec<i64> =
        Vec::try_from(ids.eq(319).sum_dim_intlist(1, false, Kind::Int64)).unwrap();
    assert_eq!(masked, [10, 13]);
    let by_default = model(true).logits(ids, None, 0).unwrap();
    for (row, &m) in masked.iter().enumerate() {
        let one = ids.narrow(0, row as i64, 1);
        let t = m as f64 / 24.0;
        let at_t = model(true)
            .with_timestep(Some(t))
            .unwrap()
            .logits(&one, None, 0)
            .unwrap();
        let diff = max_abs_diff(&by_default.narrow(0, row as i64, 1), &at_t);
        assert!(diff < 1e-5, "row {row}: {diff:e}");
    }
    // Another timestep gives other probabilities, so the check above could fail.
    let at_one = model(true)
        .with_timestep(Some(1.0))
        .unwrap()
        .logits(ids, None, 0)
        .unwrap();
    assert!(subs_diff(&by_default, &at_one) > 0.01);
}

#[test]
fn timestep_does_not_matter_without_time_conditioning() {
    let ids = &reference()["case_c_input"];
    let a = model(false).logits(ids, None, 0).unwrap();
    let b = model(false)
        .with_timestep(Some(0.2))
        .unwrap()
        .logits(ids, None, 0)
        .unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
}

#[test]
fn subs_distribution_never_predicts_the_mask_and_copies_unmasked_tokens() {
    let refs = reference();
    let model = model(false);
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let probs = model.logits(ids, None, 0).unwrap().softmax(-1, Kind::Float);
        let mask_prob = probs.select(2, 319).max().double_value(&[]);
        assert!(mask_prob < 1e-30, "{case}: p(mask) up to {mask_prob:e}");
        let sums = probs.sum_dim_intlist(-1, false, Kind::Double);
        assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5, "{case}");
        // At an unmasked position all mass is on the input token.
        let own = probs.gather(2, &ids.unsqueeze(-1), false).squeeze_dim(-1);
        let unmasked = ids.ne(319);
        let own_min = own.masked_select(&unmasked).min().double_value(&[]);
        assert_eq!(own_min, 1.0, "{case}");
    }
}

#[test]
fn the_denoiser_describes_the_checkpoint() {
    let model = model(false);
    assert_eq!((model.mask_id(), model.vocab_size()), (319, 320));
    assert_eq!(model.max_len(), None);
    assert!(!model.supports_padding());
    assert_eq!(model.device(), Device::Cpu);
}

#[test]
fn padded_batches_are_an_error() {
    let model = model(false);
    let ids = &reference()["case_a_input"];
    let valid = Tensor::ones([1, 32], (Kind::Bool, Device::Cpu));
    // All valid is not padding.
    assert!(model.logits(ids, Some(&valid), 0).is_ok());
    let _ = valid.narrow(1, 0, 2).fill_(0);
    let err = model.logits(ids, Some(&valid), 0).unwrap_err();
    assert!(matches!(err, ProbeError::Input(_)));
    assert!(err.to_string().contains("padded"), "{err}");
}

#[test]
fn timestep_outside_the_unit_interval_is_an_error() {
    for t in [-0.1, 1.5, f64::NAN] {
        let err = model(true).with_timestep(Some(t)).unwrap_err();
        assert!(err.to_string().contains("[0, 1]"), "{err}");
    }
}

fn config_error(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("config.json")).unwrap()).unwrap();
    edit(&mut config);
    let path = tmp.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec(&config).unwrap()).unwrap();
    match MdlmConfig::from_file(&path) {
        Ok(cfg) => panic!("accepted {cfg:?}"),
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains("config.json"), "{msg}");
            msg
        }
    }
}

#[test]
fn bad_configs_name_the_key() {
    let err = config_error(|c| c["n_heads"] = 3.into());
    assert!(
        err.contains("`n_heads`") && err.contains("does not divide"),
        "{err}"
    );
    // head size 64 / 64 = 1 is odd.
    let err = config_error(|c| c["n_heads"] = 64.into());
    assert!(err.contains("`n_heads`") && err.contains("odd"), "{err}");
    let err = config_error(|c| c["cond_dim"] = 0.into());
    assert!(err.contains("`cond_dim`"), "{err}");
    let err = config_error(|c| c["mask_token_id"] = 320.into());
    assert!(err.contains("`mask_token_id`"), "{err}");
    let err = config_error(|c| c["hidden_dim"] = "sixty-four".into());
    assert!(err.contains("`hidden_dim`"), "{err}");
    let err = config_error(|c| {
        c.as_object_mut().unwrap().remove("n_blocks");
    });
    assert!(err.contains("n_blocks"), "{err}");
}

#[test]
fn config_keys_are_mirrored_and_unknown_ones_ignored() {
    let cfg = config(false);
    assert_eq!(
        (
            cfg.hidden_dim,
            cfg.cond_dim,
            cfg.n_blocks,
            cfg.n_heads,
            cfg.vocab_size
        ),
        (64, 32, 2, 4, 320)
    );
    assert_eq!((cfg.model_length, cfg.dropout), (128, 0.1));
    assert_eq!((cfg.mask_token_id, cfg.mask_id()), (None, 319));
    // The parity config carries `architectures`, `auto_map`, `return_dict`, `dtype`; a key no
    // version knows is ignored as well.
    let tmp = tempfile::tempdir().unwrap();
    let mut json = cfg.to_config_json();
    assert_eq!(json["model_type"], "mdlm");
    json["some_future_key"] = 1.into();
    json["mask_token_id"] = 7.into();
    let path = tmp.path().join("config.json");
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let read = MdlmConfig::from_file(&path).unwrap();
    assert_eq!(read.mask_id(), 7);
    assert_eq!(
        MdlmConfig {
            mask_token_id: None,
            ..read
        },
        cfg
    );
}

/// A source that lacks one tensor.
struct Without {
    inner: SafetensorsSource,
    name: &'static str,
}

impl WeightSource for Without {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        if name == self.name {
            return Err(ProbeError::MissingTensor {
                file: "model.safetensors".into(),
                name: name.into(),
            });
        }
        self.inner.tensor(name, shape)
    }
}

#[test]
fn every_checkpoint_tensor_is_read_by_name() {
    // Each of these is needed: a loader that skipped one would not fail here.
    for name in [
        "backbone.sigma_map.mlp.2.bias",
        "backbone.blocks.1.adaLN_modulation.weight",
        "backbone.blocks.0.norm2.weight",
        "backbone.output_layer.linear.bias",
    ] {
        let mut src = Without {
            inner: SafetensorsSource::open(&dir()).unwrap(),
            name,
        };
        let err = MdlmModel::new(&config(false), &mut src, Device::Cpu).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn bfloat16_weights_run_in_mixed_precision() {
    // Matrix products in bfloat16, the residual stream and LayerNorms in float32: logits of
    // magnitude ~9 move by a few tenths at most (8 mantissa bits), a misread tensor by units.
    let mut src = SafetensorsSource::open(&dir()).unwrap();
    src.set_target(Kind::BFloat16, Device::Cpu);
    let model = MdlmModel::new(&config(true), &mut src, Device::Cpu).unwrap();
    let refs = reference();
    let raw = tch::no_grad(|| model.forward_raw(&refs["case_b_input"], &refs["case_b_sigma"]));
    assert_eq!(raw.kind(), Kind::Float);
    let diff = max_abs_diff(&raw, &refs["case_b_logits_timecond"]);
    println!("mdlm bf16 case_b logits_timecond: max abs diff {diff:.3e}");
    assert!(diff < 0.5, "{diff:e}");
}
