//! The corruption probe against the mask probe, side by side on the 60M-parameter LLaDA of
//! `forward_throughput` (2 CPU threads, float32): both run one forward pass per sequence, so
//! `corrupt` should process tokens at the probe's rate or better.
//!
//! Workload, alternating five times after a warm-up of each: `probe` on 16 prompts of 32 random
//! ids + 128 masks (batch 8), and `corrupt` on 16 texts of 160 random ids at one ratio (0.5)
//! and one sample (batch 8), with a random frequency table. Tokens/s counts every position of
//! every sequence.
//!
//! Run: `cargo bench -p cp-model --bench corrupt_throughput`

mod common;

use std::time::Instant;

use cp_model::{
    corrupt, load_model, mask_probe, CorruptScheme, CorruptSettings, DTypeChoice, DeviceChoice,
    LoadOptions, ProbeInput, ProbeSettings,
};
use tch::{Device, Kind, Tensor};

const TEXTS: usize = 16;
const LEN: usize = 160;
const PROMPT_LEN: usize = 32;
const ROUNDS: usize = 5;

fn random_ids(n: usize, len: usize, vocab: i64) -> Vec<Vec<i64>> {
    let t = Tensor::randint(
        vocab - 2,
        [n as i64, len as i64],
        (Kind::Int64, Device::Cpu),
    );
    (0..n)
        .map(|i| Vec::<i64>::try_from(t.get(i as i64)).unwrap())
        .collect()
}

fn main() {
    tch::set_num_threads(2);
    let cfg = common::llada_config(512, 8, 8, 1536, 32_000);
    let dir = tempfile::tempdir().unwrap();
    common::write_random_llada(dir.path(), &cfg, 0);
    let opts = LoadOptions {
        dtype: DTypeChoice::F32,
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let model = load_model(dir.path(), &opts).unwrap();
    let vocab = cfg.vocab_size;
    tch::manual_seed(2);
    let inputs = |ids: Vec<Vec<i64>>| -> Vec<ProbeInput> {
        ids.into_iter()
            .enumerate()
            .map(|(i, ids)| ProbeInput {
                prompt_index: i as u32,
                prompt_id: i.to_string(),
                ids,
            })
            .collect()
    };
    let prompts = inputs(random_ids(TEXTS, PROMPT_LEN, vocab));
    let texts = inputs(random_ids(TEXTS, LEN, vocab));
    let probe_settings = ProbeSettings {
        masks: LEN - PROMPT_LEN,
        top_k: 3,
        batch_size: 8,
        ..Default::default()
    };
    let corrupt_settings = CorruptSettings {
        ratios: vec![0.5],
        samples: 1,
        scheme: CorruptScheme::Uniform,
        seed: 0,
        top_k: 5,
        batch_size: 8,
        freq_rank: (1..=vocab as u32).collect(),
        log_unigram: vec![-(vocab as f32).ln(); vocab as usize],
        keep: Vec::new(),
    };
    let tokens = (TEXTS * LEN) as f64;
    let run_probe = || {
        let t = Instant::now();
        mask_probe(
            model.denoiser.as_ref(),
            &prompts,
            &probe_settings,
            &|id| id.to_string(),
            &mut |_, _| {},
        )
        .unwrap();
        t.elapsed().as_secs_f64()
    };
    let run_corrupt = || {
        let t = Instant::now();
        corrupt(
            model.denoiser.as_ref(),
            &texts,
            &corrupt_settings,
            &mut |_, _| {},
        )
        .unwrap();
        t.elapsed().as_secs_f64()
    };
    run_probe();
    run_corrupt();
    let (mut p, mut c) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        p.push(run_probe());
        c.push(run_corrupt());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mp, mc) = (median(&mut p), median(&mut c));
    println!(
        "corrupt_throughput: LLaDA d_model 512 x 8 layers, vocab {vocab}, f32, {} threads; {TEXTS} sequences of {LEN}, batch 8, {ROUNDS} alternating rounds",
        tch::get_num_threads()
    );
    println!("  probe   median {mp:.3} s, {:.0} tokens/s", tokens / mp);
    println!("  corrupt median {mc:.3} s, {:.0} tokens/s", tokens / mc);
    println!("  corrupt / probe tokens/s: {:.3} (target >= 1)", mp / mc);
}
