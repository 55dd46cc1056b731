//! Analysis benchmark: probe rows analysed per second.
//!
//! `cargo bench -p cp-analysis --bench analysis` (rows: `CP_BENCH_ROWS`, default 4 M).
//! Rows are synthetic: 256 mask positions per prompt, top-10 predictions per row.

use std::time::Instant;

use cp_analysis::{analyze_probe, Bootstrap, CollapseSettings, ProbeColumns, Unigram};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn main() {
    let rows: usize = std::env::var("CP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let (k, masks, vocab) = (10usize, 256u32, 50_000u32);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut c = ProbeColumns {
        top_offsets: vec![0],
        ..Default::default()
    };
    for i in 0..rows {
        let d = (i as u32 % masks) + 1;
        c.prompt_index.push(i as u32 / masks);
        c.distance.push(d);
        for j in 0..k {
            // Far positions predict frequent (small) ids more often, as a collapsing model does.
            let hi = if rng.gen_bool(d as f64 / masks as f64) {
                50
            } else {
                vocab
            };
            c.top_ids.push(rng.gen_range(0..hi));
            c.top_probs.push(0.5 / (j + 1) as f32);
        }
        c.top_offsets.push(c.top_ids.len());
        c.entropy.push(rng.gen_range(0.0..8.0));
        c.max_prob.push(0.5);
        c.margin.push(0.25);
        c.eot_mass.push(0.01);
        c.kl_unigram.push(rng.gen_range(0.0..5.0));
        c.xent_unigram.push(rng.gen_range(0.0..10.0));
        c.js_prev.push(if d > 1 {
            rng.gen_range(0.0..0.7)
        } else {
            f32::NAN
        });
    }
    let unigram = Unigram::from_counts((0..vocab as u64).map(|t| 1_000_000 / (t + 1)).collect());
    println!(
        "probe rows: {rows} ({} prompts x {masks} masks, top-{k})",
        rows as u32 / masks
    );
    for replicates in [0usize, 100] {
        let settings = CollapseSettings {
            bootstrap: Bootstrap {
                replicates,
                seed: 0,
            },
            ..Default::default()
        };
        let t = Instant::now();
        let a = analyze_probe(&c, Some(&unigram), &settings, "all").unwrap();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "analyze_probe, bootstrap {replicates}: {secs:.2} s, {:.2} M rows/s ({} metrics, {} curve points)",
            rows as f64 / secs / 1e6,
            a.metrics.len(),
            a.curves.len()
        );
    }
}
