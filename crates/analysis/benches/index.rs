//! Index benchmark: suffix-array build speed, bytes per token, lookups per second.
//!
//! `cargo bench -p cp-analysis --bench index` (tokens: `CP_BENCH_TOKENS`, default 20 M).
//! The corpus is synthetic text-like data: documents of Zipf-distributed phrases over a
//! 50k-token vocabulary, so it has the long repeats of real text. With `CP_BENCH_DUMP=FILE` the
//! bench only writes the corpus's tokens to FILE (raw little-endian u16, every document ended
//! by the id 50000) and exits: `scripts/bench-tokengrams.sh` indexes that file with collapse-probe and
//! with tokengrams.

use std::time::Instant;

use cp_analysis::{IndexBuilder, IndexHeader, NgramIndex, INDEX_FORMAT_VERSION};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

fn zipf(rng: &mut ChaCha8Rng, n: usize) -> usize {
    // Inverse-CDF sampling of a Zipf(1) law over 1..=n, via the harmonic approximation.
    let u: f64 = rng.gen();
    let h = (n as f64).ln() + 0.5772;
    ((u * h).exp() - 0.5).clamp(1.0, n as f64) as usize - 1
}

fn main() {
    let target: usize = std::env::var("CP_BENCH_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let vocab = 50_000usize;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let phrases: Vec<Vec<u32>> = (0..200_000)
        .map(|_| {
            let len = rng.gen_range(1..=6);
            (0..len).map(|_| zipf(&mut rng, vocab) as u32).collect()
        })
        .collect();
    let mut docs: Vec<Vec<u32>> = Vec::new();
    let mut total = 0;
    while total < target {
        let len = rng.gen_range(50..2000);
        let mut d = Vec::with_capacity(len + 8);
        while d.len() < len {
            d.extend_from_slice(&phrases[zipf(&mut rng, phrases.len())]);
        }
        total += d.len();
        docs.push(d);
    }
    println!(
        "corpus: {total} tokens, {} documents, vocabulary {vocab}",
        docs.len()
    );
    if let Ok(path) = std::env::var("CP_BENCH_DUMP") {
        // Documents end with an end-of-text id, as in the pre-tokenized corpora language
        // models train on; it lies outside the phrases' vocabulary.
        let eos = vocab as u16;
        let bytes: Vec<u8> = docs
            .iter()
            .flat_map(|d| d.iter().map(|&t| t as u16).chain([eos]))
            .flat_map(u16::to_le_bytes)
            .collect();
        std::fs::write(&path, bytes).unwrap();
        println!(
            "wrote {} u16 tokens to {path} (documents ended by id {eos})",
            total + docs.len()
        );
        return;
    }

    let mut builder = IndexBuilder::new();
    for d in &docs {
        builder
            .push_document(d, std::path::Path::new("<bench>"))
            .unwrap();
    }
    let t = Instant::now();
    let built = builder.finish(vocab as u32);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "suffix-array build: {secs:.2} s, {:.2} M tokens/s",
        total as f64 / secs / 1e6
    );

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let file_bytes = built.write_files(dir.path()).unwrap();
    let bytes: u64 = file_bytes.values().sum();
    println!(
        "write: {:.2} s; index size {bytes} bytes = {:.3} bytes/token",
        t.elapsed().as_secs_f64(),
        bytes as f64 / total as f64
    );
    let header = IndexHeader {
        format_version: INDEX_FORMAT_VERSION,
        tokenizer_sha256: None,
        tokenizer: None,
        vocab_size: vocab as u32,
        token_count: built.token_count(),
        doc_count: built.doc_count(),
        file_bytes,
        sources: vec![],
        doc_split: "bench".into(),
        tool_version: "bench".into(),
        shards: Vec::new(),
    };
    cp_records::write_json(&dir.path().join("index.json"), &header).unwrap();
    drop(built);
    let t = Instant::now();
    let index = NgramIndex::open(dir.path(), None).unwrap();
    println!(
        "open (mmap + validation): {:.3} s",
        t.elapsed().as_secs_f64()
    );

    // Queries: half copied from the corpus (present), half with a random last token (mostly absent).
    let queries: Vec<Vec<u32>> = (0..1_000_000)
        .map(|i| {
            let d = &docs[rng.gen_range(0..docs.len())];
            let n = 2 + i % 4;
            let s = rng.gen_range(0..d.len() - n);
            let mut q = d[s..s + n].to_vec();
            if i % 2 == 1 {
                *q.last_mut().unwrap() = rng.gen_range(0..vocab as u32);
            }
            q
        })
        .collect();
    let t = Instant::now();
    let found = queries.iter().filter(|q| index.contains(q)).count();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "existence lookups, 1 thread: {:.2} M/s ({found} of {} present)",
        queries.len() as f64 / secs / 1e6,
        queries.len()
    );
    let t = Instant::now();
    let found_par = queries.par_iter().filter(|q| index.contains(q)).count();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(found, found_par);
    println!(
        "existence lookups, {} threads: {:.2} M/s",
        rayon::current_num_threads(),
        queries.len() as f64 / secs / 1e6
    );
    let t = Instant::now();
    let sum: u64 = queries.iter().map(|q| index.count(q)).sum();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "count lookups, 1 thread: {:.2} M/s (total count {sum})",
        queries.len() as f64 / secs / 1e6
    );

    // The trap metrics' access pattern: match lengths (n ≤ 5) along generated sequences.
    let seqs: Vec<&[u32]> = queries.chunks(1000).map(|c| c[0].as_slice()).collect();
    let gen: Vec<u32> = (0..250_000).map(|_| zipf(&mut rng, vocab) as u32).collect();
    let t = Instant::now();
    let m = index.match_lengths(&gen, 5);
    let secs = t.elapsed().as_secs_f64();
    let lookups = m.len() * 4;
    println!(
        "match_lengths (n = 2..5 at every start, random Zipf text): {:.2} M n-gram lookups/s ({} starts; {} sequences sampled)",
        lookups as f64 / secs / 1e6,
        m.len(),
        seqs.len()
    );
}
