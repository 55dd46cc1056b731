//! The mask probe: append N mask tokens to each prompt, run one forward pass, and record
//! the model's predictive distribution at every mask position.
//!
//! All per-position statistics are computed on the model's device from the full
//! distribution; only `[B, N, k]` top-k tensors and `[B, N]` statistics are copied to the
//! host, never the `[B, N, V]` logits.

use tch::{Device, Kind, Tensor};

use cp_records::ProbeRecord;

use crate::denoiser::MaskedDenoiser;
use crate::error::ProbeError;

/// One prompt, already templated and tokenized.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeInput {
    /// Index in the prompt file.
    pub prompt_index: u32,
    /// The prompt's id (the file's `id` field, or its index).
    pub prompt_id: String,
    /// Token ids of the templated prompt.
    pub ids: Vec<i64>,
}

/// Settings of one probe run.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Number of mask tokens appended to every prompt.
    pub masks: usize,
    /// Number of top predictions recorded per position.
    pub top_k: usize,
    /// Prompts per forward pass.
    pub batch_size: usize,
    /// Token ids whose probability mass is reported as `eot_mass`.
    pub eot_ids: Vec<u32>,
    /// Corpus unigram probabilities over the model's logit vocabulary; when present, the
    /// probe also records KL and cross-entropy to it and the JS divergence between
    /// adjacent positions.
    pub unigram: Option<Vec<f32>>,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            masks: 128,
            top_k: 3,
            batch_size: 8,
            eot_ids: Vec::new(),
            unigram: None,
        }
    }
}

impl ProbeSettings {
    /// Checks the settings against the model and the prompts before any work is done.
    pub fn validate(
        &self,
        model: &dyn MaskedDenoiser,
        prompts: &[ProbeInput],
    ) -> Result<(), ProbeError> {
        let vocab = model.vocab_size() as usize;
        if self.masks == 0 {
            return Err(ProbeError::Input("--masks must be at least 1".into()));
        }
        if self.top_k == 0 || self.top_k > vocab {
            return Err(ProbeError::Input(format!(
                "--top-k {} is outside 1..={vocab} (the model's vocabulary size)",
                self.top_k
            )));
        }
        if self.batch_size == 0 {
            return Err(ProbeError::Input("--batch-size must be at least 1".into()));
        }
        if let Some(&id) = self.eot_ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ProbeError::Input(format!(
                "end-of-text id {id} is outside the model's vocabulary ({vocab})"
            )));
        }
        if let Some(u) = &self.unigram {
            if u.len() != vocab {
                return Err(ProbeError::Input(format!(
                    "the unigram table has {} entries but the model has {vocab} logits per position",
                    u.len()
                )));
            }
        }
        if let Some(max) = model.max_len() {
            for p in prompts {
                let len = p.ids.len() + self.masks;
                if len > max {
                    return Err(ProbeError::Input(format!(
                        "prompt {} (index {}) has {} tokens; with {} masks that is {len}, longer than the model's context of {max}",
                        p.prompt_id, p.prompt_index, p.ids.len(), self.masks
                    )));
                }
            }
        }
        for p in prompts {
            if p.ids.is_empty() {
                return Err(ProbeError::Input(format!(
                    "prompt {} (index {}) is empty after tokenization",
                    p.prompt_id, p.prompt_index
                )));
            }
            if let Some(&id) = p.ids.iter().find(|&&id| id < 0 || id >= vocab as i64) {
                return Err(ProbeError::Input(format!(
                    "prompt {} (index {}) holds token id {id}, outside the model's vocabulary ({vocab})",
                    p.prompt_id, p.prompt_index
                )));
            }
        }
        Ok(())
    }
}

/// Splits prompts into forward-pass batches, in file order. Models that cannot mask padding
/// get batches of equal-length prompts only, so no row is ever padded for them.
pub fn plan_batches(prompts: &[ProbeInput], batch_size: usize, padding: bool) -> Vec<Vec<usize>> {
    if padding {
        return (0..prompts.len())
            .collect::<Vec<_>>()
            .chunks(batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect();
    }
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, p) in prompts.iter().enumerate() {
        by_len.entry(p.ids.len()).or_default().push(i);
    }
    let mut batches: Vec<Vec<usize>> = by_len
        .values()
        .flat_map(|idx| {
            idx.chunks(batch_size.max(1))
                .map(<[usize]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    batches.sort_by_key(|b| b[0]);
    batches
}

/// Runs the probe over every prompt. `token_text` renders one token id for the records;
/// `on_batch(prompts_done, tokens_processed)` is called after each forward pass.
pub fn mask_probe(
    model: &dyn MaskedDenoiser,
    prompts: &[ProbeInput],
    settings: &ProbeSettings,
    token_text: &dyn Fn(u32) -> String,
    on_batch: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ProbeRecord>, ProbeError> {
    settings.validate(model, prompts)?;
    let device = model.device();
    let unigram = settings.unigram.as_ref().map(|u| {
        Tensor::from_slice(u)
            .to_device(device)
            .clamp_min(1e-30)
            .log()
    });
    let eot = if settings.eot_ids.is_empty() {
        None
    } else {
        let ids: Vec<i64> = settings.eot_ids.iter().map(|&i| i as i64).collect();
        Some(Tensor::from_slice(&ids).to_device(device))
    };
    let mut records = Vec::with_capacity(prompts.len() * settings.masks);
    let mut done = 0;
    for batch in plan_batches(prompts, settings.batch_size, model.supports_padding()) {
        let rows: Vec<&ProbeInput> = batch.iter().map(|&i| &prompts[i]).collect();
        let stats = tch::no_grad(|| {
            probe_batch(
                model,
                &rows,
                settings,
                unigram.as_ref(),
                eot.as_ref(),
                device,
            )
        })?;
        stats.push_records(&rows, settings, token_text, &mut records);
        done += rows.len();
        on_batch(
            done,
            rows.iter().map(|r| r.ids.len() + settings.masks).sum(),
        );
    }
    Ok(records)
}

/// Host copies of one batch's statistics, `[B, N]` or `[B, N, k]`, row-major.
struct BatchStats {
    n: usize,
    k: usize,
    top_ids: Vec<i64>,
    top_probs: Vec<f32>,
    entropy: Vec<f32>,
    margin: Vec<f32>,
    eot_mass: Option<Vec<f32>>,
    kl: Option<Vec<f32>>,
    xent: Option<Vec<f32>>,
    js_prev: Option<Vec<f32>>,
}

fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>, ProbeError> {
    Ok(Vec::<f32>::try_from(
        t.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1),
    )?)
}

fn probe_batch(
    model: &dyn MaskedDenoiser,
    rows: &[&ProbeInput],
    settings: &ProbeSettings,
    log_unigram: Option<&Tensor>,
    eot: Option<&Tensor>,
    device: Device,
) -> Result<BatchStats, ProbeError> {
    let n = settings.masks;
    let max_prompt = rows.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let len = max_prompt + n;
    let mask = model.mask_id();
    // Left padding keeps every row's mask tail in the same columns, so one `from` serves the batch.
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut valid = Vec::with_capacity(rows.len() * len);
    let mut padded = false;
    for r in rows {
        let pad = max_prompt - r.ids.len();
        padded |= pad > 0;
        ids.extend(std::iter::repeat_n(mask, pad));
        ids.extend_from_slice(&r.ids);
        ids.extend(std::iter::repeat_n(mask, n));
        valid.extend(std::iter::repeat_n(false, pad));
        valid.extend(std::iter::repeat_n(true, r.ids.len() + n));
    }
    let b = rows.len() as i64;
    let ids = Tensor::from_slice(&ids)
        .view([b, len as i64])
        .to_device(device);
    let valid = padded.then(|| {
        Tensor::from_slice(&valid)
            .view([b, len as i64])
            .to_device(device)
    });
    let logits = model.logits(&ids, valid.as_ref(), max_prompt as i64)?;
    let logp = logits.log_softmax(-1, Kind::Float);
    drop(logits);
    let p = logp.exp();
    let entropy = -(&p * &logp).sum_dim_intlist(-1, false, Kind::Float);
    let k = settings.top_k.max(2).min(p.size()[2] as usize);
    let (top_p, top_i) = p.topk(k as i64, -1, true, true);
    let margin = if k >= 2 {
        top_p.select(-1, 0) - top_p.select(-1, 1)
    } else {
        top_p.select(-1, 0)
    };
    let eot_mass = eot.map(|e| {
        p.index_select(-1, e)
            .sum_dim_intlist(-1, false, Kind::Float)
    });
    let (kl, xent, js) = match log_unigram {
        Some(lq) => {
            let xent = -(&p * lq).sum_dim_intlist(-1, false, Kind::Float);
            let kl = (&p * (&logp - lq)).sum_dim_intlist(-1, false, Kind::Float);
            let js = if n > 1 {
                Some(js_adjacent(&p, &logp))
            } else {
                None
            };
            (Some(kl), Some(xent), js)
        }
        None => (None, None, None),
    };
    Ok(BatchStats {
        n,
        k,
        top_ids: Vec::<i64>::try_from(top_i.to_device(Device::Cpu).flatten(0, -1))?,
        top_probs: to_vec_f32(&top_p)?,
        entropy: to_vec_f32(&entropy)?,
        margin: to_vec_f32(&margin)?,
        eot_mass: eot_mass.as_ref().map(to_vec_f32).transpose()?,
        kl: kl.as_ref().map(to_vec_f32).transpose()?,
        xent: xent.as_ref().map(to_vec_f32).transpose()?,
        js_prev: js.as_ref().map(to_vec_f32).transpose()?,
    })
}

/// Jensen–Shannon divergence (nats) between each position and the one before it, `[B, N-1]`.
fn js_adjacent(p: &Tensor, logp: &Tensor) -> Tensor {
    let n = p.size()[1];
    let (pa, pb) = (p.narrow(1, 1, n - 1), p.narrow(1, 0, n - 1));
    let (la, lb) = (logp.narrow(1, 1, n - 1), logp.narrow(1, 0, n - 1));
    let lm = ((&pa + &pb) * 0.5).clamp_min(1e-30).log();
    let kl_a = (&pa * (&la - &lm)).sum_dim_intlist(-1, false, Kind::Float);
    let kl_b = (&pb * (&lb - &lm)).sum_dim_intlist(-1, false, Kind::Float);
    ((kl_a + kl_b) * 0.5).clamp_min(0.0)
}

impl BatchStats {
    fn push_records(
        &self,
        rows: &[&ProbeInput],
        settings: &ProbeSettings,
        token_text: &dyn Fn(u32) -> String,
        out: &mut Vec<ProbeRecord>,
    ) {
        let (n, k, top_k) = (self.n, self.k, settings.top_k);
        for (bi, r) in rows.iter().enumerate() {
            let prompt_len = r.ids.len() as u32;
            for j in 0..n {
                let at = bi * n + j;
                let ids: Vec<u32> = self.top_ids[at * k..at * k + top_k]
                    .iter()
                    .map(|&i| i as u32)
                    .collect();
                let probs = self.top_probs[at * k..at * k + top_k].to_vec();
                out.push(ProbeRecord {
                    prompt_index: r.prompt_index,
                    prompt_id: r.prompt_id.clone(),
                    prompt_len,
                    position: prompt_len + j as u32,
                    distance: j as u32 + 1,
                    top_tokens: ids.iter().map(|&i| token_text(i)).collect(),
                    top_ids: ids,
                    max_prob: probs[0],
                    top_probs: probs,
                    entropy: self.entropy[at],
                    margin: self.margin[at],
                    eot_mass: self.eot_mass.as_ref().map_or(0.0, |v| v[at]),
                    kl_unigram: self.kl.as_ref().map(|v| v[at]),
                    xent_unigram: self.xent.as_ref().map(|v| v[at]),
                    js_prev: self
                        .js_prev
                        .as_ref()
                        .and_then(|v| (j > 0).then(|| v[bi * (n - 1) + j - 1])),
                });
            }
        }
    }
}
