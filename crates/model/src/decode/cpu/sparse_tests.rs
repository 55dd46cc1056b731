//! The support path against upstream's full rows, bit for bit.

use super::*;

fn random_rows(n: usize, v: usize, seed: u64, scale: f32) -> Vec<f32> {
    gaussians(seed, n * v, scale)
}

#[test]
fn cascade_sum_is_libtorchs_row_sum() {
    // Sparse rows of terms (the rest -0.0), of lengths around every boundary of the
    // cascade: vectors, rows of 4, chunks of 16 rows, 16 chunks, and a scalar tail.
    for v in [
        16usize, 31, 33, 100, 320, 2048, 2051, 4100, 32000, 70001, 152064,
    ] {
        for fill in [3usize, 50, 400] {
            // About `fill` entries, at random places, with random negative values.
            let u = uniforms((v * 1000 + fill) as u64, 2 * v);
            let mut row = vec![-0.0f32; v];
            let (mut idx, mut vals) = (Vec::new(), Vec::new());
            for (i, x) in row.iter_mut().enumerate() {
                if u[2 * i] * (v as f64) < fill as f64 {
                    *x = -(u[2 * i + 1] as f32 * 0.3);
                    idx.push(i as u32);
                    vals.push(*x);
                }
            }
            // Two rows: a single output longer than libtorch's grain is summed in parallel
            // pieces (see `cascade_sum`).
            let two = Tensor::from_slice(&row).view([1, v as i64]).repeat([2, 1]);
            let want = f32::try_from(&two.sum_dim_intlist(-1, false, Kind::Float).get(0)).unwrap();
            assert_eq!(
                cascade_sum(v, &idx, &vals).to_bits(),
                want.to_bits(),
                "v = {v}, {} entries",
                idx.len()
            );
        }
    }
}

#[test]
fn support_probabilities_and_entropy_are_the_full_rows_bits() {
    for (v, n, k, t) in [
        (2048usize, 40usize, 50usize, 0.0f64),
        (320, 9, 50, 0.5),
        (1000, 5, 7, 1.3),
        (40000, 3, 50, 0.0),
        (33, 6, 5, 0.0),
        (4100, 7, 1, 0.7),
    ] {
        let logits = random_rows(n, v, v as u64 * 31 + k as u64, 3.0);
        let rows: Vec<i64> = (0..n as i64).rev().collect();
        let s = top_k_support(&logits, v, &rows, k, t, &[], &mut []).expect("untied random rows");
        let (p, h) = probabilities(&s, v, true)
            .unwrap()
            .expect("a lane width reproduces libtorch here");
        // Upstream on the same rows: temperature, top-k fill, softmax, entropy terms, sum.
        let mut x = Tensor::from_slice(&logits)
            .view([n as i64, v as i64])
            .index_select(0, &Tensor::from_slice(&rows));
        if t > 0.0 {
            x /= t;
        }
        let (top, _) = x.topk(k as i64, -1, true, true);
        let filtered = x.masked_fill(
            &x.lt_tensor(&top.narrow(-1, k as i64 - 1, 1)),
            f32::MIN as f64,
        );
        let probs = filtered.softmax(-1, Kind::Float);
        let ent = (&probs * (&probs + 1e-10).log()).sum_dim_intlist(-1, false, Kind::Float);
        let probs = Vec::<f32>::try_from(&probs.flatten(0, -1)).unwrap();
        for (j, &i) in s.idx.iter().enumerate() {
            assert_eq!(
                p[j].to_bits(),
                probs[(j / k) * v + i as usize].to_bits(),
                "v {v} k {k} t {t} entry {j}"
            );
        }
        let mass: f32 = (0..v)
            .filter(|&i| !s.idx[..k].contains(&(i as u32)))
            .map(|i| probs[i])
            .sum();
        assert_eq!(mass, 0.0, "nothing off the support");
        let ent = Vec::<f32>::try_from(&ent).unwrap();
        assert_eq!(
            h.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            ent.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "v {v} k {k} t {t}"
        );
    }
}

#[test]
fn vector_log_is_libtorchs_log() {
    // Longer than one piece, and not a multiple of the vector width.
    let x: Vec<f32> = uniforms(3, 70_007)
        .iter()
        .map(|&u| (u * 0.9) as f32 + 1e-10)
        .collect();
    let mut got = x.clone();
    vector_log(&mut got).unwrap();
    let want =
        Vec::<f32>::try_from(&Tensor::from_slice(&x).view([7, -1]).log().flatten(0, -1)).unwrap();
    assert!(got
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}

#[test]
fn top_k_support_is_the_filters_support_or_none() {
    let (n, v, k) = (6usize, 3000usize, 50usize);
    let logits = random_rows(n, v, 5, 2.0);
    let rows: Vec<i64> = (0..n as i64).collect();
    let s = top_k_support(&logits, v, &rows, k, 0.0, &[], &mut []).unwrap();
    let (_, want) = Tensor::from_slice(&logits)
        .view([n as i64, v as i64])
        .topk(k as i64, -1, true, true);
    let want = Vec::<i64>::try_from(&want.sort(-1, false).0.flatten(0, -1)).unwrap();
    assert_eq!(s.idx.iter().map(|&i| i as i64).collect::<Vec<_>>(), want);
    assert_eq!(
        s.vals,
        s.idx
            .iter()
            .enumerate()
            .map(|(j, &i)| logits[(j / k) * v + i as usize])
            .collect::<Vec<_>>()
    );
    // A forbidden id is never kept, even the largest.
    let top = s.idx[..k]
        .iter()
        .copied()
        .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]))
        .unwrap();
    let f = top_k_support(&logits, v, &rows[..1], k, 0.0, &[top as i64], &mut []).unwrap();
    assert!(!f.idx.contains(&top));
    assert_eq!(f.idx.len(), k);
    // A tie at the k-th value, a NaN, or a row at the fill value: the full path.
    let mut tied = logits.clone();
    let kth = s.idx[..k]
        .iter()
        .map(|&i| logits[i as usize])
        .fold(f32::INFINITY, f32::min);
    tied[if s.idx[0] == 0 { 1 } else { 0 }] = kth;
    assert!(top_k_support(&tied, v, &rows[..1], k, 0.0, &[], &mut []).is_none());
    let mut nan = logits.clone();
    nan[v - 1] = f32::NAN;
    assert!(top_k_support(&nan, v, &rows[..1], k, 0.0, &[], &mut []).is_none());
    let low = vec![f32::MIN; v];
    assert!(top_k_support(&low, v, &[0], k, 0.0, &[], &mut []).is_none());
    assert!(top_k_support(&logits, v, &rows, v, 0.0, &[], &mut []).is_none());
}
