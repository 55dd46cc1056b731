//! Which positions commit, decided on the host, and row-wise argmax and gather.

use super::*;

/// The flags of a `[B, G]` bool tensor, row-major on the host.
pub(super) fn host_flags(x: &Tensor) -> Result<Vec<bool>, ProbeError> {
    Ok(Vec::<bool>::try_from(
        &x.f_flatten(0, -1)?.f_to_device(Device::Cpu)?,
    )?)
}

/// The positions of the `k` largest values of `row` (in no particular order), when that set is
/// the same whatever order `topk` gives equal values: `None` when the k-th and the (k + 1)-th
/// largest are equal, or for a NaN or `k > row.len()`.
pub(super) fn unique_top_k(row: &[f32], k: usize) -> Option<Vec<usize>> {
    if k > row.len() || row.iter().any(|c| c.is_nan()) {
        return None;
    }
    if k == 0 {
        return Some(Vec::new());
    }
    let mut order: Vec<(f32, usize)> = row.iter().enumerate().map(|(j, &c)| (c, j)).collect();
    order.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    let kth = order[..k].iter().map(|e| e.0).fold(f32::INFINITY, f32::min);
    // `>=` also catches -0.0 against 0.0, which `total_cmp` orders but `topk` does not.
    if order[k..].iter().any(|e| e.0 >= kth) {
        return None;
    }
    Some(order[..k].iter().map(|e| e.1).collect())
}

/// `x.argmax(-1)` of a `[n, V]` tensor, computed as the argmax of the chunk maxima, then the
/// argmax within the winning chunk: the same index (the first maximum, as `argmax` and
/// `max(dim)` return; NaN counts as the maximum in both), several times cheaper on CPU, where
/// `amax` is vectorised and `argmax` is not.
pub(super) fn argmax_rows(x: &Tensor) -> Result<Tensor, ProbeError> {
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
pub(super) fn gather_rows(x: &Tensor, idx: &Tensor) -> Result<Tensor, ProbeError> {
    Ok(x.f_gather(-1, &idx.f_unsqueeze(-1)?, false)?
        .f_squeeze_dim(-1)?)
}
