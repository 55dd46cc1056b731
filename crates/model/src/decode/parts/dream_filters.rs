//! Dream's logit filters and the tensor operations of its `sample_tokens` (`DreamGenerationMixin`):
//! top-k and top-p filtering to float32's lowest value, the first maximum of each row, and the
//! entropy confidence `(p * log(p + 1e-10)).sum(-1)`.

use tch::{Kind, Tensor};

use crate::error::ProbeError;

/// [`top_k_filter`]'s result: the filtered logits, and when known the support of their softmax
/// and the index of its maximum.
pub(crate) struct TopK {
    pub(crate) kept: Tensor,
    pub(crate) support: Option<Tensor>,
    pub(crate) first: Option<Tensor>,
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
pub(crate) fn top_k_filter(logits: &Tensor, k: i64) -> Result<TopK, ProbeError> {
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
pub(crate) fn top_p_filter(logits: &Tensor, top_p: f64) -> Result<Tensor, ProbeError> {
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

/// `x.argmax(-1)` of a `[n, V]` tensor, computed as the argmax of the chunk maxima, then the
/// argmax within the winning chunk: the same index (the first maximum, as `argmax` and
/// `max(dim)` return; NaN counts as the maximum in both), several times cheaper on CPU, where
/// `amax` is vectorised and `argmax` is not.
pub(crate) fn argmax_rows(x: &Tensor) -> Result<Tensor, ProbeError> {
    let (n, v) = (x.size()[0], x.size()[1]);
    let Some(c) = [64, 32, 16, 8]
        .into_iter()
        .find(|&c| v % c == 0 && v / c >= 2)
    else {
        return Ok(x.f_argmax(-1, false)?);
    };
    let chunks = x.f_reshape([n, v / c, c])?;
    let best = chunks
        .f_amax([-1i64].as_slice(), false)?
        .f_argmax(-1, true)?;
    let within = chunks
        .f_gather(1, &best.f_unsqueeze(-1)?.f_expand([n, 1, c], false)?, false)?
        .f_squeeze_dim(1)?
        .f_argmax(-1, false)?;
    Ok(best.f_squeeze_dim(-1)?.f_mul_scalar(c)?.f_add(&within)?)
}

/// `x[i, idx[i]]` for a `[n, V]` tensor and `[n]` indices.
pub(crate) fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor, ProbeError> {
    Ok(x.f_gather(-1, &idx.f_unsqueeze(-1)?, false)?
        .f_squeeze_dim(-1)?)
}

/// Dream's entropy confidence, `(probs * log(probs + 1e-10)).sum(-1)`. A zero probability gives
/// the term -0.0, so when `support` holds every nonzero entry only those terms are computed,
/// into a tensor of -0.0 that is then summed exactly as upstream's.
pub(crate) fn neg_entropy(probs: &Tensor, support: Option<&Tensor>) -> Result<Tensor, ProbeError> {
    let terms = match support {
        Some(idx) => {
            let kept = probs.f_gather(-1, idx, false)?;
            let mut t = kept.f_add_scalar(1e-10)?;
            let _ = t.f_log_()?.f_mul_(&kept)?;
            probs.f_full_like(-0.0)?.f_scatter(-1, idx, &t)?
        }
        None => {
            let mut t = probs.f_add_scalar(1e-10)?;
            let _ = t.f_log_()?.f_mul_(probs)?;
            t
        }
    };
    Ok(terms.f_sum_dim_intlist(-1, false, Kind::Float)?)
}

#[cfg(test)]
mod tests {
    use tch::Device;

    use super::*;

    #[test]
    fn chunked_argmax_is_argmax() {
        tch::manual_seed(3);
        for (n, v) in [(5, 320), (7, 8192), (3, 100), (4, 7), (0, 64)] {
            // Few distinct values, so that rows have many tied maxima across chunks.
            let x = Tensor::randint(6, [n, v], (Kind::Float, Device::Cpu));
            assert_eq!(argmax_rows(&x).unwrap(), x.argmax(-1, false), "{n}x{v}");
            let y = Tensor::randn([n, v], (Kind::Double, Device::Cpu));
            assert_eq!(argmax_rows(&y).unwrap(), y.argmax(-1, false), "{n}x{v}");
        }
    }

    #[test]
    fn top_p_filter_keeps_the_token_that_crosses_top_p() {
        // Probabilities 0.5, 0.2, 0.3 (in that index order): sorted 0.5, 0.3, 0.2 with cumulative
        // 0.5, 0.8, 1.0; with top_p 0.6 the second crosses it and is kept, the third is removed.
        let x = Tensor::from_slice(&[0.5f32.ln(), 0.2f32.ln(), 0.3f32.ln()]).view([1, 3]);
        let kept = Vec::<f32>::try_from(&top_p_filter(&x, 0.6).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(kept, [0.5f32.ln(), f32::MIN, 0.3f32.ln()]);
        // top_p below the largest probability keeps the largest alone.
        let kept = Vec::<f32>::try_from(&top_p_filter(&x, 0.1).unwrap().flatten(0, -1)).unwrap();
        assert_eq!(kept, [0.5f32.ln(), f32::MIN, f32::MIN]);
        // No rows at all: a Dream `origin` step in which no position is sampled.
        let none = Tensor::zeros([0, 320], (Kind::Float, Device::Cpu));
        assert_eq!(top_p_filter(&none, 0.9).unwrap().size(), [0, 320]);
    }

    #[test]
    fn top_k_filter_is_upstreams_masked_fill() {
        tch::manual_seed(4);
        let upstream = |x: &Tensor, k: i64| {
            let (vals, _) = x.topk(k, -1, true, true);
            x.masked_fill(&x.lt_tensor(&vals.narrow(-1, k - 1, 1)), f32::MIN as f64)
        };
        for k in [1, 3, 5, 40, 64] {
            // Distinct values (scatter path), many ties (masked_fill path), and -inf entries.
            let distinct = Tensor::randn([6, 64], (Kind::Float, Device::Cpu));
            let tied = Tensor::randint(4, [6, 64], (Kind::Float, Device::Cpu));
            let forbidden =
                distinct.index_fill(1, &Tensor::from_slice(&[0i64, 5, 9]), f64::NEG_INFINITY);
            for x in [distinct, tied, forbidden] {
                let TopK { kept, first, .. } = top_k_filter(&x, k).unwrap();
                assert!(kept.equal(&upstream(&x, k)), "k = {k}");
                if let Some(first) = first {
                    assert_eq!(
                        first,
                        upstream(&x, k).softmax(-1, Kind::Float).argmax(-1, false),
                        "k = {k}"
                    );
                }
            }
        }
        let long = Tensor::randn([3, 8192], (Kind::Float, Device::Cpu));
        for k in [1, 50, 500] {
            let TopK {
                kept,
                support,
                first,
            } = top_k_filter(&long, k).unwrap();
            assert!(kept.equal(&upstream(&long, k)), "k = {k}");
            let argmax = upstream(&long, k)
                .softmax(-1, Kind::Float)
                .argmax(-1, false);
            assert_eq!(first.unwrap(), argmax, "k = {k}");
            // Outside the support, the softmax is exactly 0.
            let probs = kept.softmax(-1, Kind::Float);
            let zeros = probs.scatter_value(-1, support.as_ref().unwrap(), 0.0);
            assert!(zeros.eq(0.0).all().int64_value(&[]) == 1, "k = {k}");
            let upstream_entropy =
                (&probs * (&probs + 1e-10).log()).sum_dim_intlist(-1, false, Kind::Float);
            assert!(
                neg_entropy(&probs, support.as_ref())
                    .unwrap()
                    .equal(&upstream_entropy),
                "k = {k}"
            );
        }
    }
}
