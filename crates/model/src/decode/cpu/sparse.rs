//! Dream's top-k filtered distributions computed on their support only (CPU, float32).
//!
//! Upstream fills every logit below the k-th largest with float32's lowest value, takes the
//! softmax of the whole `[n, V]` rows and, for `alg = entropy`, sums `p * log(p + 1e-10)` over
//! them. Outside the top k every probability is exactly 0 and every entropy term exactly -0.0,
//! so the result depends only on the k kept logits, and on the order in which libtorch's
//! kernels add them up. This module gives the same bits from the k kept entries of each row:
//!
//! - **selection** ([`top_k_support`]): the k + 1 largest logits of each row, read straight
//!   from the model's output in vectorised passes (AVX-512 where the CPU has it), kept in
//!   index order without a sort; the same position's (k + 1)-th logit at the previous step
//!   usually saves the pass that bounds them from below;
//! - **softmax**: libtorch's CPU softmax keeps one running sum per vector lane (the element
//!   at index `i` goes to lane `i % W`, `W` = 16 with AVX-512, 8 otherwise), then adds the
//!   lanes pairwise. A *compact* row that places each lane's kept entries in the same lane, in
//!   the same order, and the lowest value everywhere else, has the same maximum, the same lane
//!   sums (adding an exact 0 changes nothing) and so the same probabilities: libtorch computes
//!   the softmax of `[n, C]` compact rows (`C` about 3W to 4W instead of V) with its own exp;
//! - **entropy**: the terms' addition and product round the same on the host; their log is
//!   libtorch's, on one dense vector of the kept probabilities ([`vector_log`]); the terms are
//!   summed on the host in the order of libtorch's cascade sum over a full row
//!   ([`cascade_sum`]).
//!
//! Which `W` libtorch uses depends on the CPU and on the libtorch build, so the layout is
//! *calibrated*: once per process and row shape, random rows go through both upstream's full
//! path and this one, for W = 16 and W = 8; the first W that gives every probability and every
//! entropy bit for bit is used, and when none does, callers take the full path.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use tch::{Device, Kind, Tensor};

use super::{cpu_f32, uniforms, TopSelect};
use crate::error::ProbeError;

/// The top-k support of `n` rows: per row the `k` kept indices in ascending order, and their
/// logits (divided by the temperature when there is one), row-major `[n, k]`.
pub(crate) struct Support {
    pub k: usize,
    pub idx: Vec<u32>,
    pub vals: Vec<f32>,
}

/// The top-`k` support of the rows `rows` of `flat` (`[N, V]` row-major) after division by
/// `temperature` (none when 0) and with the ids `forbidden` at -inf, as Dream's `top_k_logits`
/// keeps it. `None` when upstream's fill would not leave exactly k finite-probability entries
/// per row (a tie at the k-th value, a NaN, a largest logit at or below the fill value, k >= V)
/// or the k-th value is not finite: the caller then takes the full path.
///
/// `hints` is empty or holds one value per row of `flat`: the (k + 1)-th largest logit found
/// for that row last time (NaN for none). It guides the selection and is updated; it never
/// changes the result (see [`TopSelect::top_in_order`]).
///
/// The selection runs on the raw logits: dividing by a positive temperature keeps their order,
/// and a tie that the division creates between the k-th and the (k + 1)-th is caught by the
/// tie test, which compares the divided values.
pub(crate) fn top_k_support(
    flat: &[f32],
    v: usize,
    rows: &[i64],
    k: usize,
    temperature: f64,
    forbidden: &[i64],
    hints: &mut [f32],
) -> Option<Support> {
    if k == 0 || k + 1 > v || v > u32::MAX as usize {
        return None;
    }
    let t = (temperature > 0.0).then_some(temperature as f32);
    let mut banned = vec![false; if forbidden.is_empty() { 0 } else { v }];
    for &f in forbidden {
        *banned.get_mut(f as usize)? = true;
    }
    let (mut idx, mut vals) = (
        Vec::with_capacity(rows.len() * k),
        Vec::with_capacity(rows.len() * k),
    );
    let mut select = TopSelect::default();
    for &r in rows {
        let row = flat.get(r as usize * v..(r as usize + 1) * v)?;
        // Logits move a little between decoding steps; below last step's (k + 1)-th largest,
        // the floor usually still has k + 1 logits above it.
        let hint = hints.get(r as usize).map_or(f32::NAN, |&h| h - HINT_MARGIN);
        let top = select.top_in_order(row, k, &banned, hint)?;
        if let Some(h) = hints.get_mut(r as usize) {
            *h = top.next;
        }
        let scale = |x: f32| match t {
            Some(t) => x / t,
            None => x,
        };
        let (kth, next, largest) = (scale(top.kth), scale(top.next), scale(top.top));
        // `next < kth` is false for a tie (and NaN); the fill keeps every value tied with the k-th.
        let untied = next < kth;
        let above_fill = largest > f32::MIN;
        if !untied || !kth.is_finite() || !above_fill {
            return None;
        }
        idx.extend_from_slice(top.idx);
        vals.extend(top.idx.iter().map(|&i| scale(row[i as usize])));
    }
    Some(Support { k, idx, vals })
}

/// How far below last step's (k + 1)-th largest logit the selection's first floor is put.
const HINT_MARGIN: f32 = 0.25;

/// The compact rows of `support` for lane width `w` (a power of two, at most 16): a `[n, C]`
/// float32 tensor with each kept entry of index `i` in lane `i % w` of the next free slot of
/// that lane, float32's lowest value elsewhere; `C` is a multiple of 16 (whole vectors for
/// libtorch's softmax). Returns the tensor and the flat position of each kept entry in it.
fn compact(support: &Support, w: usize) -> Result<(Tensor, Vec<u32>), ProbeError> {
    const MAX_LANES: usize = 16;
    assert!(w.is_power_of_two() && w <= MAX_LANES);
    let k = support.k;
    let n = support.idx.len() / k.max(1);
    // `i & lane` is `i % w` without a division.
    let lane = w - 1;
    let mut slots = 1;
    for row in support.idx.chunks(k) {
        let mut count = [0usize; MAX_LANES];
        for &i in row {
            count[i as usize & lane] += 1;
        }
        slots = slots.max(count.iter().copied().max().unwrap_or(0));
    }
    let c = (w * slots).div_ceil(16) * 16;
    let mut pos = Vec::with_capacity(n * k);
    let rows = super::build_rows(n, c, |r, out| {
        out.fill(f32::MIN);
        let mut count = [0usize; MAX_LANES];
        for (&i, &x) in support.idx[r * k..(r + 1) * k]
            .iter()
            .zip(&support.vals[r * k..(r + 1) * k])
        {
            let l = i as usize & lane;
            let at = count[l] * w + l;
            count[l] += 1;
            out[at] = x;
            pos.push((r * c + at) as u32);
        }
    })?;
    Ok((rows, pos))
}

/// Per kept entry, its probability; per row, the entropy sum (empty when not asked for).
pub(crate) type Probabilities = (Vec<f32>, Vec<f32>);

/// Per kept entry of `support`, its softmax probability in the filtered row; and when
/// `entropy`, per row Dream's `(p * log(p + 1e-10)).sum(-1)`: the bits upstream's full-row
/// computation gives. `None` when the calibration found no layout that reproduces them.
pub(crate) fn probabilities(
    support: &Support,
    v: usize,
    entropy: bool,
) -> Result<Option<Probabilities>, ProbeError> {
    // Shorter rows take other paths in libtorch's softmax and sum.
    if v < 16 {
        return Ok(None);
    }
    let Some(w) = lanes(v, support.k)? else {
        return Ok(None);
    };
    Ok(Some(compact_softmax(support, v, w, entropy)?))
}

fn compact_softmax(
    support: &Support,
    v: usize,
    w: usize,
    entropy: bool,
) -> Result<Probabilities, ProbeError> {
    let k = support.k;
    let n = support.idx.len() / k;
    if n == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let (rows, pos) = compact(support, w)?;
    let p = rows.f_softmax(-1, Kind::Float)?;
    // SAFETY: `p` is this function's own softmax output; nothing writes to it.
    let p_host = unsafe { cpu_f32(&p) }.expect("softmax of a CPU float32 tensor");
    let probs: Vec<f32> = pos.iter().map(|&at| p_host[at as usize]).collect();
    let mut sums = Vec::new();
    if entropy {
        // Upstream's `probs * log(probs + 1e-10)`: the addition and the product round the same
        // on the host; the log is libtorch's, on its vector path for every element (see
        // `vector_log`).
        let mut terms: Vec<f32> = probs.iter().map(|&p| p + 1e-10f32).collect();
        vector_log(&mut terms)?;
        for (t, &p) in terms.iter_mut().zip(&probs) {
            *t *= p;
        }
        sums.extend((0..n).map(|r| {
            cascade_sum(
                v,
                &support.idx[r * k..(r + 1) * k],
                &terms[r * k..(r + 1) * k],
            )
        }));
    }
    Ok((probs, sums))
}

/// libtorch's elementwise `log` of `x`, in place, computed for every element by its vectorised
/// kernel (as for every element of upstream's `[n, V]` rows, whose length is a multiple of the
/// vector width): libtorch computes the last `len % 32` elements of a loop, and of each piece
/// that its threads take, with the scalar `logf` instead, which need not give the same bits. So
/// `x` goes in pieces shorter than libtorch's parallel grain (32768 elements, one thread
/// each), padded with 1.0 to a multiple of 64.
fn vector_log(x: &mut [f32]) -> Result<(), ProbeError> {
    const PIECE: usize = 32768 - 64;
    let mut buf = Vec::with_capacity(x.len().min(PIECE).div_ceil(64) * 64);
    for piece in x.chunks_mut(PIECE) {
        buf.clear();
        buf.extend_from_slice(piece);
        buf.resize(piece.len().div_ceil(64) * 64, 1.0);
        let t = Tensor::f_from_slice(&buf)?.f_log()?;
        piece.copy_from_slice(
            // SAFETY: `t` is this loop's own log output, read before the next piece.
            &unsafe { cpu_f32(&t) }.expect("log of a CPU float32 tensor")[..piece.len()],
        );
    }
    Ok(())
}

/// The float32 sum of a row of `v` elements that are 0 (or -0.0) except `vals` at the ascending
/// indices `idx`, added in the order of libtorch's CPU sum over a contiguous last dimension
/// (`vectorized_inner_sum`: 8-lane vectors, read as 4 interleaved rows, cascaded in chunks of
/// `2^level_power` vectors over 4 levels, then the leftover vectors, the 4 rows, the scalar
/// tail and the 8 lanes, in that order). Its vector width is 8 on every x86-64 build: the sum
/// kernel has no AVX-512 variant. Rows shorter than 8 take another path there, so `v >= 16`
/// is required here (as by [`probabilities`]).
///
/// This is the order of every row of a call with several rows. A call on a single row of
/// 32768 logits or more is summed in pieces on libtorch's threads instead, and its last bit
/// can differ: that happens upstream only when one position is left masked, whose confidence
/// then decides nothing.
// Indexed loops: the accumulators mirror libtorch's `acc[level][row]` vectors lane by lane.
#[allow(clippy::needless_range_loop)]
pub(crate) fn cascade_sum(v: usize, idx: &[u32], vals: &[f32]) -> f32 {
    const LANES: usize = 8;
    const ILP: usize = 4;
    let vecs = v / LANES;
    let rows = vecs / ILP;
    let level_power = 4.max(ceil_log2(rows) / 4);
    // Each of the ILP x LANES accumulator chains adds its own elements; with zeros elsewhere
    // only the additions of nonzero values and the cascade's moves between levels round.
    let mut acc = [[[0f32; LANES]; ILP]; 4];
    // Chunks of `2^level_power` rows end with the cascade: level 1 takes level 0, and every
    // 16 chunks (with level power 4) level 2 takes level 1, and so on.
    let cascade = |acc: &mut [[[f32; LANES]; ILP]; 4], chunk_end: usize| {
        let i = chunk_end << level_power;
        for j in 1..4 {
            for k in 0..ILP {
                for l in 0..LANES {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0;
                }
            }
            if i & (((1 << level_power) - 1) << (j * level_power)) != 0 {
                break;
            }
        }
    };
    let full_chunks = rows >> level_power;
    let mut done = 0; // chunks whose cascade has run
                      // Leftover vectors (after the last whole row of 4) and the scalar tail, in index order.
    let mut tail_vecs = Vec::new();
    let mut scalar_tail = Vec::new();
    for (&i, &x) in idx.iter().zip(vals) {
        let i = i as usize;
        let vi = i / LANES;
        if vi >= vecs {
            scalar_tail.push(x);
            continue;
        }
        let row = vi / ILP;
        if row >= rows {
            tail_vecs.push((i % LANES, x));
            continue;
        }
        let chunk = row >> level_power;
        // Run the cascades of the chunks before this one. A cascade only moves values, so
        // while nothing is buffered below level 3 the remaining ones are skipped.
        while done < chunk.min(full_chunks) {
            if acc[..3]
                .iter()
                .all(|a| a.iter().all(|r| r.iter().all(|&x| x == 0.0)))
            {
                done = chunk.min(full_chunks);
                break;
            }
            done += 1;
            cascade(&mut acc, done);
        }
        acc[0][vi % ILP][i % LANES] += x;
    }
    while done < full_chunks {
        done += 1;
        cascade(&mut acc, done);
    }
    let mut part = acc[0];
    for j in 1..4 {
        for k in 0..ILP {
            for l in 0..LANES {
                part[k][l] += acc[j][k][l];
            }
        }
    }
    for (l, x) in tail_vecs {
        part[0][l] += x;
    }
    for k in 1..ILP {
        for l in 0..LANES {
            part[0][l] += part[k][l];
        }
    }
    let mut total = 0f32;
    for x in scalar_tail {
        total += x;
    }
    for l in 0..LANES {
        total += part[0][l];
    }
    total
}

/// `ceil(log2(x))` as libtorch's `CeilLog2` (0 for x <= 1).
fn ceil_log2(x: usize) -> usize {
    if x <= 1 {
        0
    } else {
        (usize::BITS - (x - 1).leading_zeros()) as usize
    }
}

/// The lane width whose compact layout reproduces libtorch's full-row results for rows of `v`
/// logits and top-`k` filtering, found once per process and `(v, k)` (see the module docs).
fn lanes(v: usize, k: usize) -> Result<Option<usize>, ProbeError> {
    type Found = HashMap<(usize, usize), Option<usize>>;
    static FOUND: OnceLock<Mutex<Found>> = OnceLock::new();
    let cache = FOUND.get_or_init(Default::default);
    if let Some(&w) = cache.lock().expect("lane cache").get(&(v, k)) {
        return Ok(w);
    }
    let w = calibrate(v, k)?;
    cache.lock().expect("lane cache").insert((v, k), w);
    Ok(w)
}

/// Runs random rows through upstream's full path and the compact one (see [`lanes`]). Uses
/// its own generator, so libtorch's global stream is left as it was.
fn calibrate(v: usize, k: usize) -> Result<Option<usize>, ProbeError> {
    let n = 24;
    let logits = gaussians(0x5eed_u64 ^ (v as u64) << 20 ^ k as u64, n * v, 3.0);
    let rows: Vec<i64> = (0..n as i64).collect();
    let Some(support) = top_k_support(&logits, v, &rows, k, 0.0, &[], &mut []) else {
        return Ok(None);
    };
    let (want_p, want_h) = full_path(&logits, n, v, k, &support)?;
    for w in [16, 8] {
        let (p, h) = compact_softmax(&support, v, w, true)?;
        let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        if same(&p, &want_p) && same(&h, &want_h) {
            return Ok(Some(w));
        }
    }
    Ok(None)
}

/// Upstream's computation on full rows: `masked_fill(logits < kth, lowest)`, softmax, and
/// `(p * log(p + 1e-10)).sum(-1)`; returns the probabilities at the support and the sums.
fn full_path(
    logits: &[f32],
    n: usize,
    v: usize,
    k: usize,
    support: &Support,
) -> Result<Probabilities, ProbeError> {
    let x = Tensor::f_from_slice(logits)?.f_view([n as i64, v as i64])?;
    let (top, _) = x.f_topk(k as i64, -1, true, true)?;
    let kth = top.f_narrow(-1, k as i64 - 1, 1)?;
    let filtered = x.f_masked_fill(&x.f_lt_tensor(&kth)?, f32::MIN as f64)?;
    let p = filtered.f_softmax(-1, Kind::Float)?;
    let h = (&p * p.f_add_scalar(1e-10)?.f_log()?).f_sum_dim_intlist(-1, false, Kind::Float)?;
    let p_host = Vec::<f32>::try_from(&p.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
    let at: Vec<f32> = support
        .idx
        .iter()
        .enumerate()
        .map(|(j, &i)| p_host[(j / k) * v + i as usize])
        .collect();
    Ok((at, Vec::<f32>::try_from(&h)?))
}

/// `n` normal draws of standard deviation `scale` (Box-Muller on [`uniforms`]).
fn gaussians(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let u = uniforms(seed, 2 * n);
    u.chunks(2)
        .map(|p| {
            ((-2.0 * p[0].max(f64::MIN_POSITIVE).ln()).sqrt()
                * (std::f64::consts::TAU * p[1]).cos()) as f32
                * scale
        })
        .collect()
}

#[cfg(test)]
#[path = "sparse_tests.rs"]
mod tests;
