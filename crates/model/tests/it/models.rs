//! Model loading and parity tests.
//!
//! The parity cases compare against `fixtures/parity/*/reference.safetensors`, logits the
//! upstream Python classes produced in float32 (see `fixtures/parity/README.md`). Every
//! model here is loaded through `load_model`, the path a real checkpoint takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cp_model::{
    load_model, load_torchscript, save_safetensors, DTypeChoice, DeviceChoice, DreamConfig,
    DreamModel, LladaConfig, LladaModel, LoadOptions, MaskedDenoiser, ProbeError,
    SafetensorsSource, WeightSource, OVERHEAD_BYTES,
};
use tch::{Device, Kind, Tensor};

/// Largest absolute logit difference accepted against the float32 references; the README
/// measures up to 1.3e-5 between float32 and float64 runs of the reference itself.
const PARITY_TOL: f64 = 1e-4;

fn parity(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/parity")
        .join(name)
}

fn read_tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect()
}

fn reference(name: &str) -> HashMap<String, Tensor> {
    read_tensors(&parity(name).join("reference.safetensors"))
}

fn cpu() -> LoadOptions {
    LoadOptions {
        dtype: DTypeChoice::Auto,
        device: DeviceChoice::Cpu,
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

/// Dream's sampler shift applied to raw reference rows: position j takes row j-1, position 0 row 0.
fn dream_shift(raw: &Tensor) -> Tensor {
    let l = raw.size()[1];
    Tensor::cat(&[raw.narrow(1, 0, 1), raw.narrow(1, 0, l - 1)], 1)
}

const CASES: [&str; 3] = ["case_a", "case_b", "case_c"];

#[test]
fn llada_logits_match_the_reference() {
    let model = load_model(&parity("llada-tiny"), &cpu()).unwrap();
    let refs = reference("llada-tiny");
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let expected = &refs[&format!("{case}_logits")];
        let got = model.logits(ids, None, 0).unwrap();
        let diff = max_abs_diff(&got, expected);
        println!("llada {case}: max abs diff {diff:.3e}");
        assert!(diff <= PARITY_TOL, "llada {case}: max abs diff {diff:e}");
    }
}

#[test]
fn dream_aligned_logits_are_the_shifted_reference() {
    let model = load_model(&parity("dream-tiny"), &cpu()).unwrap();
    let refs = reference("dream-tiny");
    for case in CASES {
        let ids = &refs[&format!("{case}_input")];
        let raw = &refs[&format!("{case}_logits")];
        let got = model.logits(ids, None, 0).unwrap();
        let diff = max_abs_diff(&got, &dream_shift(raw));
        println!("dream aligned {case}: max abs diff {diff:.3e}");
        assert!(diff <= PARITY_TOL, "dream {case}: max abs diff {diff:e}");
        // Without the shift the rows would be off by one: the unshifted reference is far away.
        assert!(
            max_abs_diff(&got, raw) > 0.1,
            "dream {case}: aligned logits equal the raw rows"
        );
    }
}

#[test]
fn dream_raw_forward_matches_the_unshifted_reference() {
    let dir = parity("dream-tiny");
    let cfg = DreamConfig::from_file(&dir.join("config.json")).unwrap();
    let mut src = SafetensorsSource::open(&dir).unwrap();
    let model = DreamModel::new(&cfg, &mut src, Device::Cpu).unwrap();
    let refs = reference("dream-tiny");
    for case in CASES {
        let got = tch::no_grad(|| model.forward(&refs[&format!("{case}_input")], None));
        let diff = max_abs_diff(&got, &refs[&format!("{case}_logits")]);
        println!("dream raw {case}: max abs diff {diff:.3e}");
        assert!(
            diff <= PARITY_TOL,
            "dream raw {case}: max abs diff {diff:e}"
        );
    }
}

/// A trainer-style source: every tensor from the checkpoint becomes a leaf that requires grad.
struct Trainable {
    inner: SafetensorsSource,
    params: Vec<(String, Tensor)>,
}

impl WeightSource for Trainable {
    fn tensor(&mut self, name: &str, shape: &[i64]) -> Result<Tensor, ProbeError> {
        let t = self.inner.tensor(name, shape)?.set_requires_grad(true);
        self.params.push((name.to_string(), t.shallow_clone()));
        Ok(t)
    }
}

#[test]
fn llada_forward_is_differentiable_and_equals_the_denoiser_logits() {
    let dir = parity("llada-tiny");
    let cfg = LladaConfig::from_file(&dir.join("config.json")).unwrap();
    let mut src = Trainable {
        inner: SafetensorsSource::open(&dir).unwrap(),
        params: Vec::new(),
    };
    let model = LladaModel::new(&cfg, &mut src, Device::Cpu).unwrap();
    // 1 embedding + 9 tensors per block + ln_f + LM head.
    assert_eq!(src.params.len(), 1 + 9 * 2 + 2);
    let ids = &reference("llada-tiny")["case_b_input"];
    let raw = model.forward(ids, None);
    assert!(raw.requires_grad());
    let diff = max_abs_diff(&raw.detach(), &model.logits(ids, None, 0).unwrap());
    assert!(diff < 1e-6, "{diff:e}");
    raw.logsumexp(&[-1i64][..], false)
        .sum(Kind::Float)
        .backward();
    for (name, p) in &src.params {
        let g = p.grad();
        assert!(
            g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "no gradient for {name}"
        );
    }
}

/// Left-pads `ids` [1, l] to `len` with `pad`, returning the ids and the `valid` mask.
fn left_pad(ids: &Tensor, len: i64, pad: i64) -> (Tensor, Tensor) {
    let l = ids.size()[1];
    let padding = Tensor::full([1, len - l], pad, (Kind::Int64, Device::Cpu));
    let valid = Tensor::cat(
        &[
            Tensor::zeros([1, len - l], (Kind::Bool, Device::Cpu)),
            Tensor::ones([1, l], (Kind::Bool, Device::Cpu)),
        ],
        1,
    );
    (Tensor::cat(&[padding, ids.shallow_clone()], 1), valid)
}

fn check_padding(name: &str) {
    let model = load_model(&parity(name), &cpu()).unwrap();
    let refs = reference(name);
    let short = &refs["case_a_input"]; // [1, 32]
    let long = &refs["case_c_input"]; // [1, 64]
    let (padded, valid_short) = left_pad(short, 64, 5);
    let ids = Tensor::cat(&[&padded, long], 0);
    let valid = Tensor::cat(
        &[
            valid_short,
            Tensor::ones([1, 64], (Kind::Bool, Device::Cpu)),
        ],
        0,
    );
    for from in [32, 40] {
        let batched = model.logits(&ids, Some(&valid), from).unwrap();
        let alone_short = model.logits(short, None, from - 32).unwrap();
        let alone_long = model.logits(long, None, from).unwrap();
        let d_short = max_abs_diff(&batched.narrow(0, 0, 1), &alone_short);
        let d_long = max_abs_diff(&batched.narrow(0, 1, 1), &alone_long);
        println!(
            "{name} padded batch, from {from}: padded row {d_short:.3e}, full row {d_long:.3e}"
        );
        assert!(
            d_short <= 2e-5 && d_long <= 2e-5,
            "{name}: {d_short:e} {d_long:e}"
        );
    }
    // The pad id must not matter: padded keys are masked out of attention.
    let (padded9, _) = left_pad(short, 64, 9);
    let other = model
        .logits(&Tensor::cat(&[&padded9, long], 0), Some(&valid), 32)
        .unwrap();
    let same = model.logits(&ids, Some(&valid), 32).unwrap();
    assert!(max_abs_diff(&other, &same) < 1e-6);
}

#[test]
fn llada_padded_batch_equals_unbatched_rows() {
    check_padding("llada-tiny");
}

#[test]
fn dream_padded_batch_equals_unbatched_rows() {
    check_padding("dream-tiny");
}

#[test]
fn dream_first_valid_position_reuses_its_own_row_when_padded() {
    // Position 0 of an unpadded row reuses row 0; in a padded row the first valid position
    // must do the same rather than read the padding before it.
    let model = load_model(&parity("dream-tiny"), &cpu()).unwrap();
    let short = &reference("dream-tiny")["case_a_input"];
    let (padded, valid) = left_pad(short, 40, 5);
    let batched = model.logits(&padded, Some(&valid), 8).unwrap();
    let alone = model.logits(short, None, 0).unwrap();
    let diff = max_abs_diff(&batched, &alone);
    assert!(diff <= 2e-5, "{diff:e}");
}

#[test]
fn from_slices_the_full_computation() {
    for name in ["llada-tiny", "dream-tiny"] {
        let model = load_model(&parity(name), &cpu()).unwrap();
        let ids = &reference(name)["case_b_input"]; // [2, 24]
        let full = model.logits(ids, None, 0).unwrap();
        assert_eq!(full.size(), [2, 24, 320]);
        for from in [1, 12, 23, 24] {
            let part = model.logits(ids, None, from).unwrap();
            assert_eq!(part.size(), [2, 24 - from, 320]);
            if from == 24 {
                continue; // nothing left to compare: the empty slice's shape is the check
            }
            let diff = max_abs_diff(&part, &full.narrow(1, from, 24 - from));
            // Another matmul shape may sum in another order: float32 noise, far below parity tolerance.
            assert!(diff < 1e-5, "{name} from {from}: {diff:e}");
        }
    }
}

#[test]
fn logits_reject_bad_requests() {
    let model = load_model(&parity("llada-tiny"), &cpu()).unwrap();
    let ids = Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]);
    let err = |r: Result<Tensor, ProbeError>| r.unwrap_err().to_string();
    assert!(err(model.logits(&ids, None, 4)).contains("`from` is 4"));
    assert!(err(model.logits(&ids.to_kind(Kind::Int), None, 0)).contains("int64"));
    let too_big = Tensor::from_slice(&[1i64, 320]).view([1, 2]);
    assert!(err(model.logits(&too_big, None, 0)).contains("320"));
    let empty_row = Tensor::zeros([1, 3], (Kind::Bool, Device::Cpu));
    assert!(err(model.logits(&ids, Some(&empty_row), 0)).contains("no valid position"));
}

#[test]
fn manifest_info_describes_the_checkpoint() {
    let dir = parity("llada-tiny");
    let model = load_model(&dir, &cpu()).unwrap();
    let info = &model.info;
    assert_eq!(info.model_type, "llada");
    assert_eq!((info.mask_id, info.vocab_size), (319, 320));
    assert_eq!((info.dtype.as_str(), info.device.as_str()), ("f32", "cpu"));
    let config_sha = cp_records::sha256_file(&dir.join("config.json")).unwrap();
    assert_eq!(info.config_sha256.as_deref(), Some(config_sha.as_str()));
    assert_eq!(info.weights_sha256.as_ref().map(String::len), Some(64));
    assert_eq!(model.eos_ids, [318]);
    assert_eq!(model.max_len(), Some(256));
    assert!(model.supports_padding());
    let dream = load_model(&parity("dream-tiny"), &cpu()).unwrap();
    assert_eq!(dream.info.model_type, "Dream");
    assert_eq!(dream.mask_id(), 319);
}

// ---- Derived checkpoints, written to temporary folders ----

fn copy_config(from: &Path, to: &Path) {
    std::fs::copy(from.join("config.json"), to.join("config.json")).unwrap();
}

fn sorted(tensors: HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = tensors.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn weights(name: &str) -> Vec<(String, Tensor)> {
    sorted(read_tensors(&parity(name).join("model.safetensors")))
}

fn write_config(dir: &Path, config: &serde_json::Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).unwrap(),
    )
    .unwrap();
}

fn read_config(name: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(parity(name).join("config.json")).unwrap()).unwrap()
}

#[test]
fn memory_is_checked_before_the_weights_are_read() {
    // llada-tiny stored as bf16: ~295 kB of weights, ~590 kB as float32.
    let dir = tempfile::tempdir().unwrap();
    let mut config = read_config("llada-tiny");
    config["torch_dtype"] = "bfloat16".into();
    write_config(dir.path(), &config);
    let converted: Vec<(String, Tensor)> = weights("llada-tiny")
        .into_iter()
        .map(|(n, t)| (n, t.to_kind(Kind::BFloat16)))
        .collect();
    let bf16_bytes: u64 = converted.iter().map(|(_, t)| t.numel() as u64 * 2).sum();
    save_safetensors(&dir.path().join("model.safetensors"), &converted).unwrap();
    let with = |dtype, bytes| LoadOptions {
        dtype,
        device: DeviceChoice::Cpu,
        available_memory: Some(bytes),
        ..Default::default()
    };
    // Room for bf16 but not float32: auto keeps bf16 and says why.
    let room = OVERHEAD_BYTES + bf16_bytes + bf16_bytes / 2;
    let model = load_model(dir.path(), &with(DTypeChoice::Auto, room)).unwrap();
    assert_eq!(model.info.dtype, "bf16");
    let note = model.info.dtype_note.clone().unwrap();
    assert!(note.contains("as f32 would need about"), "{note}");
    assert!(note.contains("keeping the checkpoint's bf16"), "{note}");
    // Asked for float32 explicitly: refused, with the numbers and the flag that fits.
    let err = load_model(dir.path(), &with(DTypeChoice::F32, room))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("loading as f32 needs about"), "{err}");
    assert!(err.contains("use --dtype bf16"), "{err}");
    // Room for nothing.
    let err = load_model(dir.path(), &with(DTypeChoice::Auto, OVERHEAD_BYTES))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no dtype fits"), "{err}");
    // Room enough: float32 as usual, no note.
    let model = load_model(dir.path(), &with(DTypeChoice::Auto, OVERHEAD_BYTES * 4)).unwrap();
    assert_eq!(model.info.dtype, "f32");
    assert!(model.info.dtype_note.is_none());
}

#[test]
fn reduced_precision_checkpoints_load() {
    // Rounding the weights to 16 bits moves logits of magnitude ~7 by up to a few tenths for
    // bfloat16 (8 mantissa bits; 0.157 measured on llada-tiny) and a few hundredths for float16
    // (0.026 measured).
    // A misread tensor moves them by whole units.
    for (name, kind, torch_dtype, tol) in [
        ("llada-tiny", Kind::BFloat16, "bfloat16", 0.3),
        ("llada-tiny", Kind::Half, "float16", 0.05),
        ("dream-tiny", Kind::BFloat16, "bfloat16", 0.3),
        ("dream-tiny", Kind::Half, "float16", 0.05),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = read_config(name);
        config["torch_dtype"] = torch_dtype.into();
        write_config(dir.path(), &config);
        let converted: Vec<(String, Tensor)> = weights(name)
            .into_iter()
            .map(|(n, t)| (n, t.to_kind(kind)))
            .collect();
        save_safetensors(&dir.path().join("model.safetensors"), &converted).unwrap();

        let refs = reference(name);
        let ids = &refs["case_a_input"];
        let mut expected = refs["case_a_logits"].shallow_clone();
        if name == "dream-tiny" {
            expected = dream_shift(&expected);
        }
        // Auto on the CPU widens to float32.
        let model = load_model(dir.path(), &cpu()).unwrap();
        assert_eq!(model.info.dtype, "f32");
        let diff = max_abs_diff(&model.logits(ids, None, 0).unwrap(), &expected);
        println!("{name} stored {torch_dtype}, computed f32: max abs diff {diff:.3e}");
        assert!(diff <= tol, "{name} {torch_dtype}: {diff:e}");
        // Computing in the stored dtype on the CPU works too, less precisely.
        let dtype = if kind == Kind::Half {
            DTypeChoice::F16
        } else {
            DTypeChoice::Bf16
        };
        let opts = LoadOptions {
            dtype,
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let model = load_model(dir.path(), &opts).unwrap();
        let got = model.logits(ids, None, 0).unwrap();
        assert_eq!(got.kind(), Kind::Float, "logits are always float32");
        let diff = max_abs_diff(&got, &expected);
        println!("{name} stored {torch_dtype}, computed {torch_dtype}: max abs diff {diff:.3e}");
        assert!(diff <= 4.0 * tol, "{name} {torch_dtype} computed: {diff:e}");
    }
}

#[test]
fn sharded_checkpoint_equals_the_single_file() {
    for name in ["llada-tiny", "dream-tiny"] {
        let dir = tempfile::tempdir().unwrap();
        copy_config(&parity(name), dir.path());
        let all = weights(name);
        let half = all.len() / 2;
        let shards = [
            ("model-00001-of-00002.safetensors", &all[..half]),
            ("model-00002-of-00002.safetensors", &all[half..]),
        ];
        let mut weight_map = serde_json::Map::new();
        for (file, tensors) in shards {
            let tensors: Vec<(String, Tensor)> = tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect();
            save_safetensors(&dir.path().join(file), &tensors).unwrap();
            for (n, _) in &tensors {
                weight_map.insert(n.clone(), file.into());
            }
        }
        let index =
            serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();

        let sharded = load_model(dir.path(), &cpu()).unwrap();
        let single = load_model(&parity(name), &cpu()).unwrap();
        let ids = &reference(name)["case_b_input"];
        let diff = max_abs_diff(
            &sharded.logits(ids, None, 0).unwrap(),
            &single.logits(ids, None, 0).unwrap(),
        );
        assert_eq!(diff, 0.0, "{name}");
        let index_sha =
            cp_records::sha256_file(&dir.path().join("model.safetensors.index.json")).unwrap();
        assert_eq!(
            sharded.info.weights_sha256.as_deref(),
            Some(index_sha.as_str())
        );
    }
}

#[test]
fn llada_gqa_repeats_kv_heads_in_order() {
    // A model with 2 kv heads must equal the 4-kv-head model whose k/v projections repeat
    // each kv head for two consecutive query heads (0,0,1,1).
    let head_dim = 16;
    let mut gqa = weights("llada-tiny");
    for (name, t) in gqa.iter_mut() {
        if name.ends_with("k_proj.weight") || name.ends_with("v_proj.weight") {
            *t = t.narrow(0, 0, 2 * head_dim).copy();
        }
    }
    let expanded: Vec<(String, Tensor)> = gqa
        .iter()
        .map(|(name, t)| {
            let t = if name.ends_with("k_proj.weight") || name.ends_with("v_proj.weight") {
                t.view([2, 1, head_dim, 64])
                    .expand([2, 2, head_dim, 64], false)
                    .reshape([4 * head_dim, 64])
            } else {
                t.shallow_clone()
            };
            (name.clone(), t)
        })
        .collect();
    let (dir_gqa, dir_full) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = read_config("llada-tiny");
    config["n_kv_heads"] = 2.into();
    write_config(dir_gqa.path(), &config);
    save_safetensors(&dir_gqa.path().join("model.safetensors"), &gqa).unwrap();
    copy_config(&parity("llada-tiny"), dir_full.path());
    save_safetensors(&dir_full.path().join("model.safetensors"), &expanded).unwrap();

    let ids = &reference("llada-tiny")["case_b_input"];
    let a = load_model(dir_gqa.path(), &cpu())
        .unwrap()
        .logits(ids, None, 0)
        .unwrap();
    let b = load_model(dir_full.path(), &cpu())
        .unwrap()
        .logits(ids, None, 0)
        .unwrap();
    let diff = max_abs_diff(&a, &b);
    assert!(diff < 1e-5, "{diff:e}");
}

#[test]
fn llada_weight_tying_and_padded_embeddings() {
    // weight_tying: no ff_out in the file, the LM head is wte. embedding_size 384 > vocab 320:
    // 384 logits per position.
    let mut tensors: Vec<(String, Tensor)> = weights("llada-tiny")
        .into_iter()
        .filter(|(n, _)| n != "model.transformer.ff_out.weight")
        .collect();
    for (name, t) in tensors.iter_mut() {
        if name == "model.transformer.wte.weight" {
            *t = Tensor::cat(
                &[
                    t.shallow_clone(),
                    Tensor::zeros([64, 64], (Kind::Float, Device::Cpu)),
                ],
                0,
            );
        }
    }
    let wte = tensors
        .iter()
        .find(|(n, _)| n == "model.transformer.wte.weight")
        .unwrap()
        .1
        .shallow_clone();
    let dir = tempfile::tempdir().unwrap();
    let mut config = read_config("llada-tiny");
    config["weight_tying"] = true.into();
    config["embedding_size"] = 384.into();
    write_config(dir.path(), &config);
    save_safetensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    let tied = load_model(dir.path(), &cpu()).unwrap();
    assert_eq!(tied.vocab_size(), 384);

    // The same model untied, with an explicit head equal to wte.
    let untied_dir = tempfile::tempdir().unwrap();
    config["weight_tying"] = false.into();
    write_config(untied_dir.path(), &config);
    tensors.push(("model.transformer.ff_out.weight".into(), wte));
    save_safetensors(&untied_dir.path().join("model.safetensors"), &tensors).unwrap();
    let untied = load_model(untied_dir.path(), &cpu()).unwrap();

    let ids = &reference("llada-tiny")["case_a_input"];
    let a = tied.logits(ids, None, 12).unwrap();
    assert_eq!(a.size(), [1, 20, 384]);
    let diff = max_abs_diff(&a, &untied.logits(ids, None, 12).unwrap());
    assert_eq!(diff, 0.0);
}

// ---- Bad inputs ----

fn load_err(dir: &Path) -> String {
    load_model(dir, &cpu()).unwrap_err().to_string()
}

/// A copy of a parity checkpoint with `edit` applied to its config and `tensors` as weights.
fn variant(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value),
    tensors: Vec<(String, Tensor)>,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = read_config(name);
    edit(&mut config);
    write_config(dir.path(), &config);
    save_safetensors(&dir.path().join("model.safetensors"), &tensors).unwrap();
    dir
}

#[test]
fn missing_folder_is_named() {
    let err = load_err(Path::new("/nonexistent/llada"));
    assert!(err.contains("/nonexistent/llada"), "{err}");
}

#[test]
fn missing_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_config(&parity("llada-tiny"), dir.path());
    let err = load_err(dir.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn malformed_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        "{\"model_type\": \"llada\", ",
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(
        err.contains("config.json") && err.contains("invalid JSON"),
        "{err}"
    );

    let wrong_type = variant(
        "llada-tiny",
        |c| c["n_heads"] = "four".into(),
        weights("llada-tiny"),
    );
    let err = load_err(wrong_type.path());
    assert!(
        err.contains("config.json") && err.contains("`n_heads`"),
        "{err}"
    );

    let missing = variant(
        "dream-tiny",
        |c| {
            c.as_object_mut().unwrap().remove("hidden_size");
        },
        weights("dream-tiny"),
    );
    let err = load_err(missing.path());
    assert!(
        err.contains("config.json") && err.contains("hidden_size"),
        "{err}"
    );

    let indivisible = variant(
        "llada-tiny",
        |c| c["n_heads"] = 3.into(),
        weights("llada-tiny"),
    );
    let err = load_err(indivisible.path());
    assert!(
        err.contains("`n_heads`") && err.contains("does not divide"),
        "{err}"
    );

    let no_type = variant(
        "llada-tiny",
        |c| {
            c.as_object_mut().unwrap().remove("model_type");
        },
        weights("llada-tiny"),
    );
    let err = load_err(no_type.path());
    assert!(err.contains("`model_type`"), "{err}");
}

#[test]
fn unknown_model_type_lists_the_supported_ones() {
    let dir = variant(
        "llada-tiny",
        |c| c["model_type"] = "llama".into(),
        weights("llada-tiny"),
    );
    let err = load_model(dir.path(), &cpu()).unwrap_err();
    assert!(matches!(err, ProbeError::UnknownArchitecture { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("`llama`")
            && msg.contains("llada")
            && msg.contains("Dream")
            && msg.contains("TorchScript"),
        "{msg}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let tensors: Vec<(String, Tensor)> = weights("dream-tiny")
        .into_iter()
        .filter(|(n, _)| n != "model.layers.1.self_attn.k_proj.bias")
        .collect();
    let dir = variant("dream-tiny", |_| {}, tensors);
    let err = load_model(dir.path(), &cpu()).unwrap_err();
    assert!(matches!(err, ProbeError::MissingTensor { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("model.layers.1.self_attn.k_proj.bias") && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn misshaped_tensor_names_both_shapes() {
    let tensors: Vec<(String, Tensor)> = weights("llada-tiny")
        .into_iter()
        .map(|(n, t)| {
            let t = if n == "model.transformer.blocks.1.up_proj.weight" {
                t.narrow(0, 0, 128).copy()
            } else {
                t
            };
            (n, t)
        })
        .collect();
    let dir = variant("llada-tiny", |_| {}, tensors);
    let msg = load_err(dir.path());
    assert!(
        msg.contains("model.transformer.blocks.1.up_proj.weight")
            && msg.contains("[128, 64]")
            && msg.contains("[192, 64]"),
        "{msg}"
    );
    // A config whose dimensions disagree with the file is caught the same way.
    let dir = variant(
        "llada-tiny",
        |c| c["mlp_hidden_size"] = 256.into(),
        weights("llada-tiny"),
    );
    let msg = load_err(dir.path());
    assert!(
        msg.contains("ff_proj.weight") && msg.contains("[256, 64]") && msg.contains("[192, 64]"),
        "{msg}"
    );
}

#[test]
fn torchscript_trace_of_llada_matches_the_native_model() {
    let dir = parity("llada-tiny");
    let cfg = LladaConfig::from_file(&dir.join("config.json")).unwrap();
    let mut src = SafetensorsSource::open(&dir).unwrap();
    let model = LladaModel::new(&cfg, &mut src, Device::Cpu).unwrap();
    let ids = reference("llada-tiny")["case_a_input"].shallow_clone();
    // Shapes are recorded as constants by the tracer, so the module serves [1, 32] inputs.
    let module = tch::no_grad(|| {
        tch::CModule::create_by_tracing(
            "LladaTiny",
            "forward",
            &[ids.shallow_clone()],
            &mut |inputs| vec![model.forward(&inputs[0], None)],
        )
    })
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("llada-tiny.pt");
    module.save(&path).unwrap();

    let traced = load_torchscript(&path, 319, Some(320), &cpu()).unwrap();
    assert_eq!(traced.vocab_size(), 320);
    assert_eq!(traced.info.model_type, "torchscript");
    assert!(!traced.supports_padding());
    let native = model.logits(&ids, None, 12).unwrap();
    let got = traced.logits(&ids, None, 12).unwrap();
    let diff = max_abs_diff(&got, &native);
    println!("torchscript vs native: max abs diff {diff:.3e}");
    assert!(diff < 1e-5, "{diff:e}");
    let valid = Tensor::cat(
        &[
            Tensor::zeros([1, 1], (Kind::Bool, Device::Cpu)),
            Tensor::ones([1, 31], (Kind::Bool, Device::Cpu)),
        ],
        1,
    );
    assert!(traced
        .logits(&ids, Some(&valid), 12)
        .unwrap_err()
        .to_string()
        .contains("padded"));

    // The probe reads both the same way: case_a's 12 prompt ids + 20 masks fill the traced [1, 32].
    let prompt: Vec<i64> = Vec::try_from(ids.get(0).narrow(0, 0, 12)).unwrap();
    let input = [cp_model::ProbeInput {
        prompt_index: 0,
        prompt_id: "a".into(),
        ids: prompt,
    }];
    let settings = cp_model::ProbeSettings {
        masks: 20,
        top_k: 5,
        batch_size: 1,
        eot_ids: vec![318],
        unigram: None,
    };
    let native = load_model(&dir, &cpu()).unwrap();
    let text = |id: u32| id.to_string();
    let a =
        cp_model::mask_probe(native.as_ref(), &input, &settings, &text, &mut |_, _| {}).unwrap();
    let b =
        cp_model::mask_probe(traced.as_ref(), &input, &settings, &text, &mut |_, _| {}).unwrap();
    assert_eq!(a.len(), 20);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.position, &x.top_ids), (y.position, &y.top_ids));
        assert!((x.entropy - y.entropy).abs() < 1e-5 && (x.eot_mass - y.eot_mass).abs() < 1e-6);
    }
}
