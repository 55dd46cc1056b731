//! The engine's pieces against the upstream tensor operations they reproduce.

use super::dream::neg_entropy;
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
fn unique_top_k_is_topks_set_or_none() {
    tch::manual_seed(11);
    for (g, k) in [(64usize, 10usize), (64, 64), (7, 1), (100, 0)] {
        let mut x =
            Vec::<f32>::try_from(&Tensor::randn([g as i64], (Kind::Float, Device::Cpu))).unwrap();
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
