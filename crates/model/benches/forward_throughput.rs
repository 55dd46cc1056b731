//! Probe-shaped forward throughput of a 60M-parameter LLaDA on 2 CPU threads.
//!
//! Model: d_model 512, 8 layers, 8 heads, SwiGLU width 1536, vocabulary 32000, float32
//! (27M parameters in the blocks + 2 x 16.4M in the embedding and LM head = 60M).
//! Workload: 16 prompts of 32 random ids followed by 128 masks, in batches of 8;
//! `logits(ids, None, from = 32)`, then softmax, top-3 and entropy on the 128 mask rows.
//! Tokens/s counts all 16 x 160 positions per pass. The official Python implementation
//! does about 1,000 tokens/s in this setting.
//!
//! Run: `cargo bench -p cp-model --bench forward_throughput`

mod common;

use std::time::Instant;

use cp_model::{load_model, DTypeChoice, DeviceChoice, LoadOptions};
use tch::{Device, Kind, Tensor};

const PROMPTS: i64 = 16;
const PROMPT_LEN: i64 = 32;
const MASKS: i64 = 128;
const BATCH: i64 = 8;
const PASSES: usize = 5;

fn main() {
    tch::set_num_threads(2);
    let cfg = common::llada_config(512, 8, 8, 1536, 32_000);
    let dir = tempfile::tempdir().unwrap();
    let bytes = common::write_random_llada(dir.path(), &cfg, 0);
    let opts = LoadOptions {
        dtype: DTypeChoice::F32,
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let model = load_model(dir.path(), &opts).unwrap();
    let mask = model.mask_id();

    tch::manual_seed(1);
    let prompts = Tensor::randint(
        cfg.vocab_size - 2,
        [PROMPTS, PROMPT_LEN],
        (Kind::Int64, Device::Cpu),
    );
    let ids = Tensor::cat(
        &[
            prompts,
            Tensor::full([PROMPTS, MASKS], mask, (Kind::Int64, Device::Cpu)),
        ],
        1,
    );
    let tokens = (PROMPTS * (PROMPT_LEN + MASKS)) as f64;

    let pass = || {
        let (mut model_s, mut post_s) = (0.0, 0.0);
        let mut checksum = 0.0;
        for b in 0..PROMPTS / BATCH {
            let batch = ids.narrow(0, b * BATCH, BATCH);
            let t = Instant::now();
            let logits = model.logits(&batch, None, PROMPT_LEN).unwrap();
            model_s += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let (p, entropy, top) = tch::no_grad(|| {
                let logp = logits.log_softmax(-1, Kind::Float);
                let p = logp.exp();
                let entropy = -(&p * &logp).sum_dim_intlist(-1, false, Kind::Float);
                let (top_p, top_id) = p.topk(3, -1, true, true);
                (top_p, entropy, top_id)
            });
            checksum +=
                entropy.sum(Kind::Double).double_value(&[]) + p.sum(Kind::Double).double_value(&[]);
            assert_eq!(top.size(), [BATCH, MASKS, 3]);
            post_s += t.elapsed().as_secs_f64();
        }
        (model_s, post_s, checksum)
    };

    pass(); // Warm-up: allocator pools and oneDNN kernels.
    let mut times = Vec::new();
    let mut model_total = 0.0;
    let mut post_total = 0.0;
    for _ in 0..PASSES {
        let t = Instant::now();
        let (m, p, _) = pass();
        times.push(t.elapsed().as_secs_f64());
        model_total += m;
        post_total += p;
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let median = times[PASSES / 2];
    println!(
        "forward_throughput: LLaDA d_model {} x {} layers, {} heads, mlp {}, vocab {} ({:.1}M params, f32), {} threads",
        cfg.d_model,
        cfg.n_layers,
        cfg.n_heads,
        cfg.mlp_size(),
        cfg.vocab_size,
        bytes as f64 / 4e6,
        tch::get_num_threads()
    );
    println!(
        "  {PROMPTS} prompts x ({PROMPT_LEN} ids + {MASKS} masks), batch {BATCH}, {PASSES} passes after a warm-up"
    );
    println!(
        "  median pass {median:.3} s (min {:.3}, max {:.3}); model {:.0}%, softmax/top-3/entropy {:.0}%",
        times[0],
        times[PASSES - 1],
        100.0 * model_total / (model_total + post_total),
        100.0 * post_total / (model_total + post_total)
    );
    println!(
        "  {:.0} tokens/s (median), {:.0} tokens/s (best)",
        tokens / median,
        tokens / times[0]
    );
}
