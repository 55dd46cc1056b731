//! The corruption probe: mask a share of a clean text's positions under a scheme, run one
//! forward pass, and record what the model lost at every masked position.
//!
//! Masking corrupts every position alike, but information is not spread alike: a rare content
//! token carries more than a frequent one. This probe measures how much the model loses, by
//! the token's corpus frequency and by how much context is left, under uniform masking and
//! under schemes that mask the rarest, the most frequent, or one contiguous span.
//!
//! Every (text, ratio, sample) is one masked sequence, drawn from a generator seeded by the
//! run's seed and those three indices (the text's index in the whole run), so a record can be
//! rebuilt from `texts.parquet` and the seed, and the draws do not depend on the batch size.
//! A batch holds the sequences of one text only: a text's statistics then come from the same
//! forward passes whichever other texts the run (or its shard) holds, to the last bit (libtorch's
//! matrix products may round differently for other batch shapes). Only the masked rows'
//! statistics leave the device.

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

use cp_records::CorruptRecord;

use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;
use crate::mask_probe::ProbeInput;

/// Which positions a ratio masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptScheme {
    /// A uniformly random subset, as masked diffusion training corrupts.
    Uniform,
    /// The rarest tokens first (highest corpus frequency rank), ties in random order.
    RareFirst,
    /// The most frequent tokens first, ties in random order.
    FrequentFirst,
    /// One contiguous run of eligible positions at a uniformly random start.
    Span,
}

impl CorruptScheme {
    pub const NAMES: &'static [&'static str] = &["uniform", "rare-first", "frequent-first", "span"];

    pub fn name(self) -> &'static str {
        match self {
            CorruptScheme::Uniform => "uniform",
            CorruptScheme::RareFirst => "rare-first",
            CorruptScheme::FrequentFirst => "frequent-first",
            CorruptScheme::Span => "span",
        }
    }
}

impl fmt::Display for CorruptScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CorruptScheme {
    type Err = ProbeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "uniform" => Ok(CorruptScheme::Uniform),
            "rare-first" => Ok(CorruptScheme::RareFirst),
            "frequent-first" => Ok(CorruptScheme::FrequentFirst),
            "span" => Ok(CorruptScheme::Span),
            _ => Err(ProbeError::Input(format!(
                "unknown scheme `{s}`; expected one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }
}

/// Settings of one corruption run.
#[derive(Debug, Clone)]
pub struct CorruptSettings {
    /// Shares of each text's eligible positions to mask, each in (0, 1).
    pub ratios: Vec<f64>,
    /// Masking draws per text and ratio.
    pub samples: usize,
    pub scheme: CorruptScheme,
    pub seed: u64,
    /// Predictions recorded per masked position.
    pub top_k: usize,
    /// Masked sequences per forward pass.
    pub batch_size: usize,
    /// Per token id of the model's vocabulary: its 1-based corpus frequency rank.
    pub freq_rank: Vec<u32>,
    /// Per token id: `ln p_unigram`, the corpus unigram the context gain is measured against.
    pub log_unigram: Vec<f32>,
    /// Ids never masked (the tokenizer's special tokens: BOS, end of text, template markers).
    pub keep: Vec<u32>,
}

impl CorruptSettings {
    /// Checks the settings against the model and the texts before any work is done.
    pub fn validate(
        &self,
        model: &dyn MaskedDenoiser,
        texts: &[ProbeInput],
    ) -> Result<(), ProbeError> {
        if self.ratios.is_empty() {
            return Err(ProbeError::Input("give at least one ratio".into()));
        }
        if let Some(r) = self.ratios.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
            return Err(ProbeError::Input(format!("ratio {r} is outside (0, 1)")));
        }
        if self.samples == 0 || self.batch_size == 0 || self.top_k == 0 {
            return Err(ProbeError::Input(
                "samples, batch size and top-k must be at least 1".into(),
            ));
        }
        let v = model.vocab_size() as usize;
        if self.freq_rank.len() != v || self.log_unigram.len() != v {
            return Err(ProbeError::Input(format!(
                "the frequency tables have {} and {} entries, the model's vocabulary {v}",
                self.freq_rank.len(),
                self.log_unigram.len()
            )));
        }
        if self.top_k > v {
            return Err(ProbeError::Input(format!(
                "top-k {} is larger than the vocabulary ({v})",
                self.top_k
            )));
        }
        for t in texts {
            if eligible(&t.ids, &self.keep).is_empty() {
                return Err(ProbeError::Input(format!(
                    "text `{}` has no token to mask ({} tokens, all special)",
                    t.prompt_id,
                    t.ids.len()
                )));
            }
            if let Some(max) = model.max_len() {
                if t.ids.len() > max {
                    return Err(ProbeError::Input(format!(
                        "text `{}` has {} tokens, more than the model's {max}",
                        t.prompt_id,
                        t.ids.len()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Positions that may be masked: those not holding a kept (special) id.
fn eligible(ids: &[i64], keep: &[u32]) -> Vec<usize> {
    (0..ids.len())
        .filter(|&i| !keep.iter().any(|&k| i64::from(k) == ids[i]))
        .collect()
}

/// The number of positions a ratio masks among `eligible`: `round(ratio · eligible)`, at
/// least one.
pub fn masked_count(ratio: f64, eligible: usize) -> usize {
    ((ratio * eligible as f64).round() as usize).clamp(1, eligible)
}

/// The seed of one masked sequence, from the run's seed and its indices.
fn job_seed(seed: u64, text: usize, ratio: usize, sample: usize) -> u64 {
    let mut h = seed ^ 0x6a09_e667_f3bc_c908;
    for x in [text as u64, ratio as u64, sample as u64] {
        h = (h ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    h
}

/// The positions one (text, ratio, sample) masks, sorted.
pub fn masked_positions(
    ids: &[i64],
    ratio: f64,
    scheme: CorruptScheme,
    freq_rank: &[u32],
    keep: &[u32],
    seed: u64,
) -> Vec<usize> {
    let pool = eligible(ids, keep);
    let m = masked_count(ratio, pool.len());
    let keys = uniforms(seed, pool.len());
    let rank = |i: usize| freq_rank.get(ids[i] as usize).copied().unwrap_or(u32::MAX);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    let mut chosen: Vec<usize> = match scheme {
        CorruptScheme::Uniform => {
            order.sort_by(|&a, &b| keys[a].total_cmp(&keys[b]));
            order[..m].iter().map(|&j| pool[j]).collect()
        }
        CorruptScheme::RareFirst | CorruptScheme::FrequentFirst => {
            let rare = scheme == CorruptScheme::RareFirst;
            order.sort_by(|&a, &b| {
                let (ra, rb) = (rank(pool[a]), rank(pool[b]));
                let by_rank = if rare { rb.cmp(&ra) } else { ra.cmp(&rb) };
                by_rank.then(keys[a].total_cmp(&keys[b]))
            });
            order[..m].iter().map(|&j| pool[j]).collect()
        }
        CorruptScheme::Span => {
            let starts = pool.len() - m + 1;
            let start = ((keys[0] * starts as f64) as usize).min(starts - 1);
            pool[start..start + m].to_vec()
        }
    };
    chosen.sort_unstable();
    chosen
}

/// One masked sequence waiting for its forward pass.
struct Job {
    text: usize,
    ratio: usize,
    sample: usize,
    masked: Vec<usize>,
}

/// Runs the corruption probe over every text, ratio and sample. `on_batch(sequences_done,
/// tokens_processed)` is called after each forward pass.
pub fn corrupt(
    model: &dyn MaskedDenoiser,
    texts: &[ProbeInput],
    settings: &CorruptSettings,
    on_batch: &mut dyn FnMut(usize, usize),
) -> Result<Vec<CorruptRecord>, ProbeError> {
    settings.validate(model, texts)?;
    let device = model.device();
    let log_unigram = Tensor::from_slice(&settings.log_unigram).to_device(device);
    // The jobs of a text share forward passes, in batches of their own.
    let mut by_text: Vec<Vec<Job>> = Vec::with_capacity(texts.len());
    for (t, text) in texts.iter().enumerate() {
        let mut jobs = Vec::with_capacity(settings.ratios.len() * settings.samples);
        for (r, &ratio) in settings.ratios.iter().enumerate() {
            for s in 0..settings.samples {
                let masked = masked_positions(
                    &text.ids,
                    ratio,
                    settings.scheme,
                    &settings.freq_rank,
                    &settings.keep,
                    // The text's index in the whole run, so that a shard of the texts draws
                    // what the whole run draws for them.
                    job_seed(settings.seed, text.prompt_index as usize, r, s),
                );
                jobs.push(Job {
                    text: t,
                    ratio: r,
                    sample: s,
                    masked,
                });
            }
        }
        by_text.push(jobs);
    }
    let mut records = Vec::new();
    let mut done = 0;
    for jobs in &by_text {
        for batch in jobs.chunks(settings.batch_size) {
            let stats = tch::no_grad(|| {
                corrupt_batch(model, texts, batch, settings, &log_unigram, device)
            })?;
            let mut row = 0;
            for job in batch {
                let ids = &texts[job.text].ids;
                for &p in &job.masked {
                    let k = settings.top_k;
                    records.push(CorruptRecord {
                        text_index: texts[job.text].prompt_index,
                        ratio: settings.ratios[job.ratio] as f32,
                        sample: job.sample as u32,
                        position: p as u32,
                        token_id: ids[p] as u32,
                        freq_rank: settings.freq_rank[ids[p] as usize],
                        nll: stats.nll[row],
                        true_rank: stats.true_rank[row] as u32,
                        entropy: stats.entropy[row],
                        top_ids: stats.top_ids[row * k..(row + 1) * k]
                            .iter()
                            .map(|&i| i as u32)
                            .collect(),
                        top_probs: stats.top_probs[row * k..(row + 1) * k].to_vec(),
                        context_distance: context_distance(ids.len(), &job.masked, p),
                        context_gain: stats.gain[row],
                    });
                    row += 1;
                }
            }
            done += batch.len();
            on_batch(done, batch.len() * texts[batch[0].text].ids.len());
        }
    }
    records.sort_by_key(|r| {
        (
            r.text_index,
            order_of(settings, r.ratio),
            r.sample,
            r.position,
        )
    });
    Ok(records)
}

/// Index of a recorded ratio among the settings' ratios (records are ordered by it).
fn order_of(settings: &CorruptSettings, ratio: f32) -> usize {
    settings
        .ratios
        .iter()
        .position(|&r| r as f32 == ratio)
        .unwrap_or(usize::MAX)
}

/// Distance from `p` to the nearest unmasked position of a sequence of `len` (0: none).
fn context_distance(len: usize, masked: &[usize], p: usize) -> u32 {
    let is_masked = |i: usize| masked.binary_search(&i).is_ok();
    (1..len)
        .find(|&d| (p >= d && !is_masked(p - d)) || (p + d < len && !is_masked(p + d)))
        .unwrap_or(0) as u32
}

/// Host copies of one batch's per-masked-row statistics, in job order.
struct BatchStats {
    nll: Vec<f32>,
    true_rank: Vec<i64>,
    entropy: Vec<f32>,
    top_ids: Vec<i64>,
    top_probs: Vec<f32>,
    gain: Vec<f32>,
}

fn host_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        t.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1),
    )?)
}

fn host_i64(t: &Tensor) -> Result<Vec<i64>, ProbeError> {
    Ok(Vec::<i64>::try_from(
        t.to_device(Device::Cpu).flatten(0, -1),
    )?)
}

fn corrupt_batch(
    model: &dyn MaskedDenoiser,
    texts: &[ProbeInput],
    batch: &[Job],
    settings: &CorruptSettings,
    log_unigram: &Tensor,
    device: Device,
) -> Result<BatchStats, ProbeError> {
    let len = texts[batch[0].text].ids.len();
    let mask = model.mask_id();
    let mut ids = Vec::with_capacity(batch.len() * len);
    let mut rows = Vec::new();
    let mut truth = Vec::new();
    for (b, job) in batch.iter().enumerate() {
        let clean = &texts[job.text].ids;
        let start = ids.len();
        ids.extend_from_slice(clean);
        for &p in &job.masked {
            ids[start + p] = mask;
            rows.push((b * len + p) as i64);
            truth.push(clean[p]);
        }
    }
    let ids = Tensor::from_slice(&ids)
        .view([batch.len() as i64, len as i64])
        .to_device(device);
    let rows = Tensor::from_slice(&rows).to_device(device);
    let truth = Tensor::from_slice(&truth).to_device(device).unsqueeze(1);
    let logp = model.logits_at(&ids, &rows)?.log_softmax(-1, Kind::Float);
    let true_logp = logp.gather(1, &truth, false);
    let true_rank = logp
        .gt_tensor(&true_logp)
        .sum_dim_intlist(1, false, Kind::Int64)
        + 1;
    let p = logp.exp();
    let entropy = -(&p * &logp).sum_dim_intlist(-1, false, Kind::Float);
    let (top_p, top_i) = p.topk(settings.top_k as i64, -1, true, true);
    let true_logp = true_logp.squeeze_dim(1);
    let gain = &true_logp - log_unigram.index_select(0, &truth.squeeze_dim(1));
    Ok(BatchStats {
        nll: host_f32(&-&true_logp)?,
        true_rank: host_i64(&true_rank)?,
        entropy: host_f32(&entropy)?,
        top_ids: host_i64(&top_i)?,
        top_probs: host_f32(&top_p)?,
        gain: host_f32(&gain)?,
    })
}

/// `n` uniform float64 draws in `[0, 1)` with 53 random bits each, from a generator seeded by
/// `seed` (SplitMix64: fast, and statistically ample for sampling).
fn uniforms(seed: u64, n: usize) -> Vec<f64> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64))
        .collect()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_pick_what_they_say() {
        // Ids 0..8; id 0 is special (kept); rank = 10 - id (id 9 most frequent... id 1 rarest).
        let ids: Vec<i64> = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let rank: Vec<u32> = (0..10).map(|i| 10 - i).collect();
        let keep = [0];
        let pick = |s, r| masked_positions(&ids, r, s, &rank, &keep, 7);
        // 9 eligible positions; 0.34 of them rounds to 3.
        assert_eq!(pick(CorruptScheme::RareFirst, 0.34), [1, 2, 3]);
        assert_eq!(pick(CorruptScheme::FrequentFirst, 0.34), [7, 8, 9]);
        let span = pick(CorruptScheme::Span, 0.34);
        assert_eq!(span.len(), 3);
        assert!(span.windows(2).all(|w| w[1] == w[0] + 1), "{span:?}");
        let uniform = pick(CorruptScheme::Uniform, 0.5);
        assert_eq!(uniform.len(), 5);
        assert!(!uniform.contains(&0));
        // Seeded: the same draw twice, another seed another draw (almost surely).
        assert_eq!(uniform, pick(CorruptScheme::Uniform, 0.5));
        let other = masked_positions(&ids, 0.5, CorruptScheme::Uniform, &rank, &keep, 8);
        assert_ne!(uniform, other);
        // At least one position, never more than there are.
        assert_eq!(masked_count(0.01, 9), 1);
        assert_eq!(masked_count(0.99, 9), 9);
    }

    #[test]
    fn context_distance_is_to_the_nearest_clean_position() {
        let masked = [2, 3, 4];
        assert_eq!(context_distance(8, &masked, 2), 1);
        assert_eq!(context_distance(8, &masked, 3), 2);
        assert_eq!(context_distance(3, &[0, 1, 2], 1), 0);
    }
}
