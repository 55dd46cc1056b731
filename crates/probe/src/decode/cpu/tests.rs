//! Each host pass against the tensor operations it replaces.

use super::draw::*;
use super::rows::*;
use super::sort::*;
use super::top::simd;
use super::top::*;
use super::*;

#[test]
fn top_m_is_topk() {
    each_path(top_m_is_topk_on_this_path);
}

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

fn top_m_is_topk_on_this_path() {
    tch::manual_seed(7);
    for (n, v, m) in [
        (4, 100, 1),
        (3, 8192, 51),
        (5, 64, 64),
        (2, 17, 5),
        (3, 2048, 51),
        (2, 20000, 51),
    ] {
        let x = Tensor::randn([n, v], (Kind::Float, Device::Cpu));
        let (vals, idx) = top_m(&x, m as usize).unwrap();
        let (tv, ti) = x.topk(m, -1, true, true);
        assert_eq!(
            vals,
            Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap(),
            "{n}x{v} top {m}"
        );
        assert_eq!(
            idx,
            Vec::<i64>::try_from(&ti.flatten(0, -1)).unwrap(),
            "{n}x{v} top {m}"
        );
    }
    // Ties: the values match topk's, and equal values come lowest index first.
    let tied = Tensor::randint(4, [6, 300], (Kind::Float, Device::Cpu));
    let (vals, idx) = top_m(&tied, 20).unwrap();
    let (tv, _) = tied.topk(20, -1, true, true);
    assert_eq!(vals, Vec::<f32>::try_from(&tv.flatten(0, -1)).unwrap());
    let rows = Vec::<f32>::try_from(&tied.flatten(0, -1)).unwrap();
    for (r, (vs, is)) in vals.chunks(20).zip(idx.chunks(20)).enumerate() {
        for j in 0..20 {
            assert_eq!(rows[r * 300 + is[j] as usize], vs[j]);
            if j > 0 && vs[j] == vs[j - 1] {
                assert!(is[j] > is[j - 1]);
            }
        }
    }
    let with_inf = tied.index_fill(1, &Tensor::from_slice(&[3i64, 250]), f64::INFINITY);
    assert_eq!(top_m(&with_inf, 2).unwrap().1[..2], [3, 250]);
    // A NaN in the tail after the last whole group, and one inside the groups.
    for at in [299i64, 5] {
        let with_nan = tied.index_fill(1, &Tensor::from_slice(&[at]), f64::NAN);
        assert!(top_m(&with_nan, 3).is_none());
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
fn select_rows_is_index_select_fill_and_argmax() {
    tch::manual_seed(8);
    let flat = Tensor::randn([2 * 6, 333], (Kind::Float, Device::Cpu)) * 7.0;
    let rows = [0i64, 2, 5, 3];
    let idx = Tensor::from_slice(&rows);
    let forbidden = [4i64, 300];
    let fill = |x: Tensor| x.index_fill(1, &Tensor::from_slice(&forbidden), f64::NEG_INFINITY);
    for scale in [2.0, 1.7, 0.3] {
        let (host, argmax) = select_rows(&flat, &rows, Some((6, scale)), &forbidden, true)
            .unwrap()
            .unwrap();
        let cond = flat.index_select(0, &idx);
        let un = flat.index_select(0, &(&idx + 6));
        let expected = fill((cond - &un) * scale + un);
        assert!(host.equal(&expected), "scale {scale}");
        assert_eq!(
            Tensor::from_slice(&argmax.unwrap()),
            expected.argmax(-1, false)
        );
    }
    // Ties, a row of -inf, and a 0.0 maximum after a -0.0: the first maximum, as argmax.
    let tied = Tensor::randint(3, [6, 333], (Kind::Float, Device::Cpu)).index_fill(
        0,
        &Tensor::from_slice(&[1i64]),
        f64::NEG_INFINITY,
    );
    let signed = Tensor::from_slice(&[-1.0f32, -0.0, 0.0, -2.0]).view([1, 4]);
    for x in [&tied, &signed] {
        let all: Vec<i64> = (0..x.size()[0]).collect();
        let (host, argmax) = select_rows(x, &all, None, &[], true).unwrap().unwrap();
        assert!(host.equal(x));
        assert_eq!(Tensor::from_slice(&argmax.unwrap()), x.argmax(-1, false));
    }
    let nan = flat.index_fill(1, &Tensor::from_slice(&[7i64]), f64::NAN);
    assert!(select_rows(&nan, &rows, None, &[], true)
        .unwrap()
        .unwrap()
        .1
        .is_none());
}

#[test]
fn radix_sort_sorts_descending() {
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut row = vec![
        1.5f32,
        -0.0,
        0.0,
        f32::NEG_INFINITY,
        -3.25,
        7.0,
        f32::INFINITY,
        1e-30,
        -1e-30,
        1.5,
        f32::MIN,
    ];
    let mut expected = row.clone();
    expected.sort_by(|a, b| b.total_cmp(a));
    sort_descending(&mut row, &mut Vec::new(), &mut Vec::new());
    assert_eq!(bits(&row), bits(&expected));
    let mut big =
        Vec::<f32>::try_from(&(Tensor::randn([5000], (Kind::Float, Device::Cpu)) * 100.0)).unwrap();
    let mut expected = big.clone();
    expected.sort_by(|a, b| b.total_cmp(a));
    sort_descending(&mut big, &mut Vec::new(), &mut Vec::new());
    assert_eq!(big, expected);
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
