//! Dream's top-k and top-p logit filters, with their CPU fast paths.

use super::*;

/// [`top_k_filter`]'s result: the filtered logits, and when known the support of their softmax
/// and the index of its maximum.
pub(super) struct TopK {
    pub(super) kept: Tensor,
    pub(super) support: Option<Tensor>,
    pub(super) first: Option<Tensor>,
}

/// Dream's `top_k_logits` on rows `[n, V]`: logits below the k-th largest are set to float32's
/// lowest value, so every logit tied with the k-th largest is kept.
///
/// When no row has a tie at the k-th value (the usual case), the kept logits are exactly the
/// top-k entries, so the result is built by scattering them into a filled tensor: the same
/// tensor as upstream's `masked_fill`, which is several times slower on CPU. That path also
/// returns the kept indices `[n, k]`; when every row's largest logit is above float32's lowest
/// value, the softmax of the result is exactly 0 everywhere else. If then each row's largest
/// logit also exceeds its second by at least 2^-20, its softmax probability is strictly the
/// largest (the second's is at most `1 - 2^-21` times it, several float32 ulps below), so the
/// argmax of the softmax is that logit's index, returned as `first`.
///
/// On CPU the top k + 1 entries are found on the host ([`cpu::top_m`]: `topk`'s values, and its
/// indices up to the order among equal values, which changes neither `kept` nor the tie test);
/// elsewhere, and for rows with NaNs, by `topk`.
pub(super) fn top_k_filter(logits: &Tensor, k: i64) -> Result<TopK, ProbeError> {
    let v = logits.size()[1];
    let m = (k + 1).min(v);
    let on_host = match cpu::enabled(FastPath::TopK) {
        true => cpu::top_m(logits, m as usize),
        false => None,
    };
    if on_host.is_some() {
        cpu::ran(FastPath::TopK);
    }
    let (vals, idx) = match &on_host {
        Some((vals, idx)) => {
            let n = vals.len() as i64 / m;
            (
                Tensor::f_from_slice(vals)?.f_view([n, m])?,
                Tensor::f_from_slice(idx)?.f_view([n, m])?,
            )
        }
        None => logits.f_topk(m, -1, true, true)?,
    };
    let (vals, idx) = (
        vals.f_to_device(logits.device())?,
        idx.f_to_device(logits.device())?,
    );
    let kth = vals.f_narrow(-1, k - 1, 1)?;
    if k < v {
        // `next < kth` is false for ties and NaNs: those rows take upstream's path.
        let next = vals.f_narrow(-1, k, 1)?;
        let untied = next.f_lt_tensor(&kth)?;
        if bool::try_from(&untied.f_all()?)? {
            let (vals, idx) = (vals.f_narrow(-1, 0, k)?, idx.f_narrow(-1, 0, k)?);
            let kept = match &on_host {
                // The same tensor, written in one pass.
                Some((hv, hi)) => {
                    let (m, k) = (m as usize, k as usize);
                    cpu::build_rows(hv.len() / m, v as usize, |r, row| {
                        row.fill(f32::MIN);
                        for j in r * m..r * m + k {
                            row[hi[j] as usize] = hv[j];
                        }
                    })?
                }
                None => logits
                    .f_full_like(f32::MIN as f64)?
                    .f_scatter(-1, &idx, &vals)?,
            };
            let top = vals.f_narrow(-1, 0, 1)?;
            if !bool::try_from(&top.f_gt(f32::MIN as f64)?.f_all()?)? {
                return Ok(TopK {
                    kept,
                    support: None,
                    first: None,
                });
            }
            let decisive = k == 1
                || bool::try_from(
                    &top.f_sub(&vals.f_narrow(-1, 1, 1)?)?
                        .f_ge(2f64.powi(-20))?
                        .f_all()?,
                )?;
            let first = decisive.then(|| idx.f_select(-1, 0)).transpose()?;
            return Ok(TopK {
                kept,
                support: Some(idx),
                first,
            });
        }
    }
    let kept = logits.f_masked_fill(&logits.f_lt_tensor(&kth)?, f32::MIN as f64)?;
    Ok(TopK {
        kept,
        support: None,
        first: None,
    })
}

/// Dream's `top_p_logits`: keep the smallest prefix of the sorted distribution whose mass
/// exceeds `top_p` (always the first token), fill the rest with float32's lowest value.
pub(super) fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    if let Some(thresholds) = host_top_p_thresholds(logits, top_p)? {
        // Keep the logits at or above each row's threshold, as upstream keeps that prefix:
        // `masked_fill(logits < threshold, lowest)`, in one host pass.
        if let Some(kept) = cpu::fill_below(logits, &thresholds, f32::MIN)? {
            cpu::ran(FastPath::TopP);
            return Ok(kept);
        }
        let thresholds = Tensor::f_from_slice(&thresholds)?.f_view([thresholds.len() as i64, 1])?;
        return Ok(logits.f_masked_fill(&logits.f_lt_tensor(&thresholds)?, f32::MIN as f64)?);
    }
    top_p_filter_by_sort(logits, top_p)
}

/// Upstream's `top_p_logits` as written: sort, cumulative softmax, shifted removal mask.
pub(super) fn top_p_filter_by_sort(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
    let (sorted, order) = logits.f_sort(-1, true)?;
    let cum = sorted
        .f_softmax(-1, Kind::Float)?
        .f_cumsum(-1, Kind::Float)?;
    let remove = cum.f_gt(top_p)?;
    let last = remove.size().last().copied().unwrap_or(0);
    // Shift right by one so that the token crossing the threshold is kept.
    let shifted = Tensor::f_cat(
        &[
            &remove.f_narrow(-1, 0, 1)?.f_zeros_like()?,
            &remove.f_narrow(-1, 0, last - 1)?,
        ],
        -1,
    )?;
    let drop = shifted.f_zeros_like()?.f_scatter(-1, &order, &shifted)?;
    Ok(logits.f_masked_fill(&drop, f32::MIN as f64)?)
}

/// Per row, the smallest logit [`top_p_filter_by_sort`] keeps, on the host; `None` (the caller
/// then takes the sort path for the whole batch) off CPU/float32, for rows shorter than 16 or
/// with NaNs, and where a tie at the threshold would make upstream's choice depend on its sort.
///
/// Upstream sorts the whole row, takes its softmax and the cumulative sum. Only a head of the
/// sorted row is needed for the same bits: libtorch's softmax sums the exponentials in 16 (or
/// 8) lane sums over the sorted positions, each lane starting with one of the 16 largest
/// logits `s_0 >= ... >= s_15`. A logit below `s_15 - 18` has an exponential under
/// `e^-18 < 2^-25` times every lane sum, less than half its float32 ulp, so adding it changes
/// nothing; and it comes after every larger logit in the sorted row. The head (every logit at
/// or above `s_15 - 18`), sorted and padded with float32's lowest value (exponential 0), thus
/// has the same softmax and cumulative sum as the full sorted row on its positions. When the
/// mass reaches `top_p` within the head (the usual case), the threshold is found there; else
/// the whole row is sorted.
pub(super) fn host_top_p_thresholds(
    logits: &Tensor,
    top_p: f64,
) -> Result<Option<Vec<f32>>, ProbeError> {
    const LANES: usize = 16;
    let v = logits.size()[1] as usize;
    if !cpu::enabled(FastPath::TopP) {
        return Ok(None);
    }
    // SAFETY: the caller's logits, only read while the thresholds are computed.
    let Some(rows) = (unsafe { cpu::cpu_f32(logits) }) else {
        return Ok(None);
    };
    if v < LANES || rows.iter().any(|x| x.is_nan()) {
        return Ok(None);
    }
    let n = rows.len() / v;
    if n == 0 {
        // A step that samples no position (Dream `origin` when no draw passes).
        return Ok(Some(Vec::new()));
    }
    let mut select = cpu::TopSelect::default();
    let (mut keys, mut scratch) = (Vec::new(), Vec::new());
    for full in [false, true] {
        // Each row's sorted head (the whole row when `full`), padded to a common multiple of 16.
        let mut heads: Vec<Vec<f32>> = Vec::with_capacity(n);
        for row in rows.chunks(v) {
            let cut = if full {
                f32::NEG_INFINITY
            } else {
                // The 16th largest logit: the selection's last key.
                let top = select.select(row, LANES, &[]).expect("NaN-free rows");
                cpu::from_desc_key((top[LANES - 1] >> 32) as u32) - 18.0
            };
            let mut head = row.to_vec();
            if cut.is_finite() {
                // Branch-free: most of a row can be in the head, with the rest scattered.
                let mut kept = 0;
                for j in 0..head.len() {
                    let x = head[j];
                    head[kept] = x;
                    kept += usize::from(x >= cut);
                }
                head.truncate(kept);
            }
            cpu::sort_descending(&mut head, &mut keys, &mut scratch);
            heads.push(head);
        }
        let width = heads
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .div_ceil(LANES)
            * LANES;
        let mut padded = vec![f32::MIN; n * width];
        for (r, head) in heads.iter().enumerate() {
            padded[r * width..r * width + head.len()].copy_from_slice(head);
        }
        let sorted_t = Tensor::f_from_slice(&padded)?.f_view([n as i64, width as i64])?;
        let probs = sorted_t.f_softmax(-1, Kind::Float)?;
        // SAFETY: `probs` is this loop's own softmax output; nothing writes to it.
        let probs = unsafe { cpu::cpu_f32(&probs) }.expect("a new CPU float32 tensor");
        // Upstream's `cumsum(-1) > top_p` up to its first true entry: libtorch's float32
        // `cumsum` adds sequentially in float64 and rounds each sum to float32, and the
        // comparison rounds `top_p` to float32.
        let top_p32 = top_p as f32;
        let mut thresholds = Vec::with_capacity(n);
        for (head, probs) in heads.iter().zip(probs.chunks(width)) {
            let mut cum = 0f64;
            let first_over = probs[..head.len()].iter().position(|&p| {
                cum += p as f64;
                cum as f32 > top_p32
            });
            // Kept: sorted positions up to the first whose cumulative mass exceeds top_p (all of
            // them when none does, which for a head means: sort the whole rows).
            let last = match first_over {
                Some(last) => last,
                None if full || head.len() == v => head.len() - 1,
                None => break,
            };
            if last + 1 < head.len() && head[last + 1] == head[last] {
                return Ok(None);
            }
            thresholds.push(head[last]);
        }
        if thresholds.len() == n {
            return Ok(Some(thresholds));
        }
    }
    unreachable!("the full rows give every threshold")
}
