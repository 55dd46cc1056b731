//! Each host pass against the tensor operations it replaces.

use super::draw::*;
use super::top::simd;
use super::top::*;
use super::*;

/// Runs `test` with the AVX-512 loops (where the CPU has them) and with the portable ones.
fn each_path(test: fn()) {
    test();
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::Ordering;
        simd::ALLOWED.store(false, Ordering::Relaxed);
        let result = std::panic::catch_unwind(test);
        simd::ALLOWED.store(true, Ordering::Relaxed);
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}

#[test]
fn top_in_order_is_topk_by_index() {
    each_path(top_in_order_on_this_path);
}

fn top_in_order_on_this_path() {
    tch::manual_seed(9);
    let mut select = TopSelect::default();
    for (n, v, k) in [
        (3usize, 2048usize, 50usize),
        (2, 300, 7),
        (2, 17, 1),
        (3, 4100, 50),
        (2, 40000, 50),
        (4, 64, 40),
    ] {
        let x = Tensor::randn([n as i64, v as i64], (Kind::Float, Device::Cpu)) * 3.0;
        let (tv, ti) = x.topk(k as i64 + 1, -1, true, true);
        let (tv, ti) = (
            Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap(),
            Vec::<i64>::try_from(&ti.flatten(0, -1)).unwrap(),
        );
        let rows = Vec::<f32>::try_from(&x.flatten(0, -1)).unwrap();
        for r in 0..n {
            let at = |j: usize| tv[r * (k + 1) + j];
            let mut want: Vec<u32> = ti[r * (k + 1)..r * (k + 1) + k]
                .iter()
                .map(|&i| i as u32)
                .collect();
            want.sort_unstable();
            // No floor hint, an exact one, one too high (fewer than k + 1 above it: the
            // computed floor is used), and one far too low (the candidates are cut back).
            for hint in [f32::NAN, at(k), at(k - 1), at(0) + 1.0, at(k) - 100.0] {
                let top = select
                    .top_in_order(&rows[r * v..(r + 1) * v], k, &[], hint)
                    .expect("untied random rows");
                assert_eq!(top.idx, want, "{v} top {k}, hint {hint}");
                assert_eq!(
                    (top.top, top.kth, top.next),
                    (at(0), at(k - 1), at(k)),
                    "{v} top {k}, hint {hint}"
                );
            }
        }
    }
    // A banned element is never kept; a tie with the (k + 1)-th or a NaN gives None.
    let x =
        Vec::<f32>::try_from(&(Tensor::randn([3000], (Kind::Float, Device::Cpu)) * 2.0)).unwrap();
    let best = (0..x.len()).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap();
    let mut banned = vec![false; x.len()];
    banned[best] = true;
    let top = select.top_in_order(&x, 10, &banned, f32::NAN).unwrap();
    assert!(!top.idx.contains(&(best as u32)) && top.idx.len() == 10);
    let kth = select.top_in_order(&x, 10, &[], f32::NAN).unwrap().kth;
    let mut tied = x.clone();
    let other = (0..x.len()).find(|&i| x[i] < kth).unwrap();
    tied[other] = kth;
    assert!(select.top_in_order(&tied, 10, &[], f32::NAN).is_none());
    let mut nan = x.clone();
    nan[40] = f32::NAN;
    assert!(select.top_in_order(&nan, 10, &[], f32::NAN).is_none());
    // Also when a floor hint skips the pass that otherwise finds NaNs.
    assert!(select.top_in_order(&nan, 10, &[], kth - 1.0).is_none());
}

#[test]
fn inverse_cdf_is_the_tensor_count() {
    tch::manual_seed(9);
    let logits = Tensor::randn([30, 500], (Kind::Float, Device::Cpu)) * 3.0;
    // Zero-probability entries (as after a top-k or top-p fill) and an all-in-one row.
    let filled = logits.masked_fill(&logits.lt(1.0), f32::MIN as f64);
    let one = logits.index_fill(1, &Tensor::from_slice(&[499i64]), 1e4);
    for x in [&logits, &filled, &one] {
        let probs = x.softmax(-1, Kind::Float);
        let u = Tensor::rand([30, 1], (Kind::Double, Device::Cpu));
        let cum = probs.cumsum(-1, Kind::Double);
        let target = u.neg().f_add_scalar(1.0).unwrap() * cum.narrow(-1, 499, 1);
        let want = cum
            .lt_tensor(&target)
            .sum_dim_intlist(-1, false, Kind::Int64)
            .clamp_max(499);
        let got = inverse_cdf(&probs, &Vec::<f64>::try_from(&u.flatten(0, -1)).unwrap()).unwrap();
        assert_eq!(got, Vec::<i64>::try_from(&want).unwrap());
    }
    // Draws at the ends of [0, 1): the first and the last token of nonzero mass.
    let probs = filled.softmax(-1, Kind::Float);
    let p = Vec::<f32>::try_from(&probs.get(0)).unwrap();
    let got = inverse_cdf(&probs.narrow(0, 0, 1), &[0.0]).unwrap()[0] as usize;
    assert_eq!(got, p.iter().rposition(|&q| q > 0.0).unwrap());
    let nan = probs.index_fill(1, &Tensor::from_slice(&[3i64]), f64::NAN);
    assert!(inverse_cdf(&nan, &[0.5; 30]).is_none());
}

#[test]
fn uniforms_are_in_range_and_seeded() {
    let a = uniforms(5, 10_000);
    assert!(a.iter().all(|&u| (0.0..1.0).contains(&u)));
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    assert!((mean - 0.5).abs() < 0.02, "{mean}");
    assert_eq!(a, uniforms(5, 10_000));
    assert_ne!(a, uniforms(6, 10_000));
}
