//! The positions of a row's `k` largest scores when `topk` would give the same set whatever
//! order it gives equal values, so that the host can decide without calling it.

/// The positions of the `k` largest values of `row` (in no particular order), when that set is
/// the same whatever order `topk` gives equal values: `None` when the k-th and the (k + 1)-th
/// largest are equal, or for a NaN or `k > row.len()`.
pub(crate) fn unique_top_k(row: &[f32], k: usize) -> Option<Vec<usize>> {
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

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    #[test]
    fn unique_top_k_is_topks_set_or_none() {
        tch::manual_seed(11);
        for (g, k) in [(64usize, 10usize), (64, 64), (7, 1), (100, 0)] {
            let mut x =
                Vec::<f32>::try_from(&Tensor::randn([g as i64], (Kind::Float, Device::Cpu)))
                    .unwrap();
            x[g / 2] = f32::NEG_INFINITY;
            let mut got = unique_top_k(&x, k).unwrap();
            got.sort_unstable();
            let (_, idx) = Tensor::from_slice(&x).topk(k as i64, -1, true, true);
            let mut want: Vec<usize> = Vec::<i64>::try_from(&idx)
                .unwrap()
                .into_iter()
                .map(|i| i as usize)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "{g} top {k}");
        }
        // A tie across the boundary, -0.0 against 0.0, a NaN, k past the row: no unique set.
        assert!(unique_top_k(&[3.0, 1.0, 2.0, 2.0], 2).is_none());
        assert!(unique_top_k(&[3.0, 0.0, -0.0, -1.0], 2).is_none());
        assert!(unique_top_k(&[3.0, f32::NAN, 1.0], 1).is_none());
        assert!(unique_top_k(&[3.0, 1.0], 3).is_none());
        // Ties inside the set are fine.
        let mut both = unique_top_k(&[2.0, 1.0, 2.0, 0.5], 2).unwrap();
        both.sort_unstable();
        assert_eq!(both, [0, 2]);
    }
}
