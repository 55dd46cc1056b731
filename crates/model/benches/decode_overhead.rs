//! How much time the decoding loop adds on top of the model's forward passes.
//!
//! Builds a random LLaDA-architecture checkpoint (size set by the environment, defaults below),
//! runs every schedule on a batch of random prompts, and prints per schedule the time spent in
//! `MaskedDenoiser::logits` (the forward passes), the rest of `decode` (the loop: token choice,
//! selection, bookkeeping, host copies), and their ratio. Target: loop < 5 % of forward time.
//!
//! ```text
//! cargo bench -p cp-model --bench decode_overhead
//! CP_BENCH_DEVICE=cuda CP_BENCH_D_MODEL=1024 CP_BENCH_LAYERS=8 cargo bench -p cp-model --bench decode_overhead
//! ```
//! Environment: CP_BENCH_DEVICE (cpu | cuda, default cpu), CP_BENCH_D_MODEL (256), CP_BENCH_LAYERS (4),
//! CP_BENCH_VOCAB (8192), CP_BENCH_PROMPTS (4), CP_BENCH_PROMPT_LEN (32), CP_BENCH_GEN (64),
//! CP_BENCH_MODEL (a checkpoint folder to use instead of the random one), CP_BENCH_SCHEDULES
//! (`;`-separated schedule specs to run instead of the default ones; `{background}` stands for a
//! Zipf background-frequency file for PC-Sampler), CP_BENCH_SAME_LENGTH=1 (every prompt
//! `CP_BENCH_PROMPT_LEN` long, so that schedules that batch only equal lengths make one call per
//! step).
//!
//! The preset comparison of docs/performance.md ("Composed schedules"):
//!
//! ```text
//! CP_BENCH_D_MODEL=512 CP_BENCH_LAYERS=8 CP_BENCH_VOCAB=32000 CP_BENCH_SAME_LENGTH=1 \
//!   CP_BENCH_SCHEDULES='llada:gen_length=64,steps=64,block_length=32;fastdllm:gen_length=64,steps=64,block_length=32;...' \
//!   cargo bench --workspace --profile dev --bench decode_overhead
//! ```

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cp_model::{
    decode, load_model, save_safetensors, DecodeOptions, DeviceChoice, LoadOptions, MaskedDenoiser,
    ProbeError, ScheduleSpec,
};
use tch::{Device, Kind, Tensor};

fn env(name: &str, default: i64) -> i64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Delegates to the model and adds up the wall time of its forward passes (synchronising
/// CUDA so that queued kernels are charged to the forward pass, not to the loop).
struct Timed<'a> {
    inner: &'a dyn MaskedDenoiser,
    forward: Cell<Duration>,
    calls: Cell<usize>,
}

impl MaskedDenoiser for Timed<'_> {
    fn mask_id(&self) -> i64 {
        self.inner.mask_id()
    }
    fn vocab_size(&self) -> i64 {
        self.inner.vocab_size()
    }
    fn max_len(&self) -> Option<usize> {
        self.inner.max_len()
    }
    fn device(&self) -> Device {
        self.inner.device()
    }
    fn supports_padding(&self) -> bool {
        self.inner.supports_padding()
    }
    fn logits(
        &self,
        ids: &Tensor,
        valid: Option<&Tensor>,
        from: i64,
    ) -> Result<Tensor, ProbeError> {
        sync(self.device());
        let t = Instant::now();
        let out = self.inner.logits(ids, valid, from)?;
        sync(self.device());
        self.forward.set(self.forward.get() + t.elapsed());
        self.calls.set(self.calls.get() + 1);
        Ok(out)
    }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// A random LLaDA checkpoint with the tiny parity model's config keys, scaled up.
fn random_llada(dir: &Path) -> PathBuf {
    let parity =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/parity/llada-tiny/config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(parity).unwrap()).unwrap();
    let d = env("CP_BENCH_D_MODEL", 256);
    let layers = env("CP_BENCH_LAYERS", 4);
    let vocab = env("CP_BENCH_VOCAB", 8192);
    let heads = (d / 64).max(1);
    let hidden = 3 * d;
    for (k, v) in [
        ("d_model", d),
        ("n_layers", layers),
        ("n_heads", heads),
        ("n_kv_heads", heads),
        ("mlp_hidden_size", hidden),
        ("vocab_size", vocab),
        ("embedding_size", vocab),
        ("max_sequence_length", 1024),
        ("mask_token_id", vocab - 1),
        ("eos_token_id", vocab - 2),
        ("pad_token_id", vocab - 2),
    ] {
        config[k] = v.into();
    }
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();

    tch::manual_seed(0);
    let w = |shape: &[i64], std: f64| Tensor::randn(shape, (Kind::Float, Device::Cpu)) * std;
    let mut tensors = vec![
        (
            "model.transformer.wte.weight".to_owned(),
            w(&[vocab, d], 0.5),
        ),
        (
            "model.transformer.ln_f.weight".to_owned(),
            Tensor::ones([d], (Kind::Float, Device::Cpu)),
        ),
        (
            "model.transformer.ff_out.weight".to_owned(),
            w(&[vocab, d], 0.5 / (d as f64).sqrt()),
        ),
    ];
    let s = 1.0 / (d as f64).sqrt();
    for i in 0..layers {
        let p = |n: &str| format!("model.transformer.blocks.{i}.{n}.weight");
        tensors.push((
            p("attn_norm"),
            Tensor::ones([d], (Kind::Float, Device::Cpu)),
        ));
        tensors.push((p("ff_norm"), Tensor::ones([d], (Kind::Float, Device::Cpu))));
        for n in ["q_proj", "k_proj", "v_proj", "attn_out"] {
            tensors.push((p(n), w(&[d, d], s)));
        }
        tensors.push((p("ff_proj"), w(&[hidden, d], s)));
        tensors.push((p("up_proj"), w(&[hidden, d], s)));
        tensors.push((p("ff_out"), w(&[d, hidden], 1.0 / (hidden as f64).sqrt())));
    }
    save_safetensors(&dir.join("model.safetensors"), &tensors).unwrap();
    dir.to_owned()
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported and is ignored.
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var("CP_BENCH_MODEL") {
        Ok(d) => PathBuf::from(d),
        Err(_) => random_llada(tmp.path()),
    };
    let device = match std::env::var("CP_BENCH_DEVICE").as_deref() {
        Ok("cuda") => DeviceChoice::Cuda(0),
        _ => DeviceChoice::Cpu,
    };
    let loaded = load_model(
        &dir,
        &LoadOptions {
            device,
            ..Default::default()
        },
    )
    .unwrap();
    let model = &*loaded.denoiser;
    let n = env("CP_BENCH_PROMPTS", 4) as usize;
    let prompt_len = env("CP_BENCH_PROMPT_LEN", 32);
    let gen = env("CP_BENCH_GEN", 64);
    let vocab = model.vocab_size();
    tch::manual_seed(1);
    let prompts: Vec<Vec<i64>> = (0..n)
        .map(|i| {
            let len = if std::env::var("CP_BENCH_SAME_LENGTH").is_ok_and(|v| v == "1") {
                prompt_len
            } else {
                prompt_len - (i as i64 % 3)
            };
            Vec::<i64>::try_from(&Tensor::randint(
                vocab - 2,
                [len],
                (Kind::Int64, Device::Cpu),
            ))
            .unwrap()
        })
        .collect();
    println!(
        "model {} on {:?}, vocab {vocab}, {n} prompts of ~{prompt_len} tokens, {gen} generated, batch {n}, torch threads {}",
        dir.display(),
        model.device(),
        tch::get_num_threads()
    );
    println!(
        "{:<62} {:>6} {:>11} {:>10} {:>8} {:>12}",
        "schedule", "calls", "forward ms", "loop ms", "loop %", "ms per call"
    );
    let h = gen / 2;
    let defaults = [
        format!("llada:gen_length={gen},steps={h},block_length={h}"),
        format!("llada:gen_length={gen},steps={h},remasking=random,temperature=1"),
        format!("llada:gen_length={gen},steps={h},cfg_scale=1"),
        format!("dream:max_new_tokens={gen},steps={h},alg=entropy,top_k=50"),
        format!("dream:max_new_tokens={gen},steps={h},alg=origin,temperature=0.5,top_p=0.9"),
        format!("threshold:gen_length={gen},block_length={h},tau=0.9"),
        format!("fixed:gen_length={gen},k=2"),
    ];
    // CP_BENCH_SCHEDULES: `;`-separated schedule specs to run instead of the default seven.
    let specs: Vec<String> = match std::env::var("CP_BENCH_SCHEDULES") {
        Ok(s) => s
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(_) => defaults.to_vec(),
    };
    // A Zipf background for PC-Sampler's `{background}`.
    let background = tmp.path().join("background.json");
    let norm: f64 = (1..=vocab).map(|r| 1.0 / r as f64).sum();
    let zipf: Vec<f64> = (1..=vocab).map(|r| 1.0 / r as f64 / norm).collect();
    std::fs::write(&background, serde_json::to_string(&zipf).unwrap()).unwrap();
    for spec in specs {
        let spec = spec.replace("{background}", &background.display().to_string());
        let schedule = ScheduleSpec::parse(&spec).unwrap();
        let timed = Timed {
            inner: model,
            forward: Cell::new(Duration::ZERO),
            calls: Cell::new(0),
        };
        let opts = DecodeOptions {
            batch_size: n,
            ..Default::default()
        };
        // One warm-up run, then the measured one.
        decode(&timed, &prompts, &schedule, &opts).unwrap();
        timed.forward.set(Duration::ZERO);
        timed.calls.set(0);
        sync(model.device());
        let t = Instant::now();
        decode(&timed, &prompts, &schedule, &opts).unwrap();
        sync(model.device());
        let total = t.elapsed();
        let forward = timed.forward.get();
        let lp = total.saturating_sub(forward);
        let shown = if spec.len() > 62 {
            format!("{}...", &spec[..59])
        } else {
            spec.clone()
        };
        println!(
            "{shown:<62} {:>6} {:>11.1} {:>10.1} {:>7.2}% {:>12.2}",
            timed.calls.get(),
            forward.as_secs_f64() * 1e3,
            lp.as_secs_f64() * 1e3,
            100.0 * lp.as_secs_f64() / forward.as_secs_f64(),
            total.as_secs_f64() * 1e3 / timed.calls.get().max(1) as f64
        );
    }
}
