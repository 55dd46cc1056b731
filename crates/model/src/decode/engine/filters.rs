//! Dream's top-k and top-p logit filters.

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
pub(super) fn top_k_filter(logits: &Tensor, k: i64) -> Result<TopK, ProbeError> {
    let v = logits.size()[1];
    let m = (k + 1).min(v);
    let (vals, idx) = logits.f_topk(m, -1, true, true)?;
    let kth = vals.f_narrow(-1, k - 1, 1)?;
    if k < v {
        // `next < kth` is false for ties and NaNs: those rows take upstream's path.
        let next = vals.f_narrow(-1, k, 1)?;
        let untied = next.f_lt_tensor(&kth)?;
        if bool::try_from(&untied.f_all()?)? {
            let (vals, idx) = (vals.f_narrow(-1, 0, k)?, idx.f_narrow(-1, 0, k)?);
            let kept = logits
                .f_full_like(f32::MIN as f64)?
                .f_scatter(-1, &idx, &vals)?;
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

/// Dream's `top_p_logits` as written: sort, cumulative softmax, shifted removal mask.
pub(super) fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
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
