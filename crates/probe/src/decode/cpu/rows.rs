//! Logit rows selected, guided and filtered in one pass, and new rows filled on the host.

use tch::{Device, Kind, Tensor};

use super::cpu_f32;
use super::sort::block_max;
use crate::error::ProbeError;

/// A new float32 CPU tensor `[n, v]`, filled row by row by `fill(row index, row)`.
///
/// Single-threaded on purpose: libtorch's OpenMP workers keep spinning on the other cores for a
/// while after each operation, and measured, a second host thread gained nothing.
pub(crate) fn build_rows(
    n: usize,
    v: usize,
    mut fill: impl FnMut(usize, &mut [f32]),
) -> Result<Tensor, ProbeError> {
    let out = Tensor::f_empty([n as i64, v as i64], (Kind::Float, Device::Cpu))?;
    if n == 0 || v == 0 {
        return Ok(out);
    }
    // SAFETY: `out` is a new contiguous float32 CPU tensor of `n * v` elements that nothing else
    // references until this function returns it.
    let data = unsafe { std::slice::from_raw_parts_mut(out.data_ptr() as *mut f32, n * v) };
    for (i, row) in data.chunks_mut(v).enumerate() {
        fill(i, row);
    }
    Ok(out)
}

/// [`select_rows`]' result: the rows, and their argmax when asked for and NaN-free.
pub(crate) type SelectedRows = (Tensor, Option<Vec<i64>>);

/// The logit rows `rows` of `flat` (`[N, V]`), as `index_select` followed by `index_fill_` of
/// `forbidden` with -inf would give them, and when `want_argmax` each row's `argmax` (the first
/// maximum), in one pass over memory. With `guided = Some((half, scale))`, `flat` holds the
/// conditional rows then the unconditional ones (`half` each) and each row is classifier-free
/// guidance's `un + (cond - un) * scale`, with the three float32 roundings of libtorch's `sub`,
/// `mul` and `add` (no fused multiply-add). The argmax is `None` when a row holds a NaN.
pub(crate) fn select_rows(
    flat: &Tensor,
    rows: &[i64],
    guided: Option<(usize, f64)>,
    forbidden: &[i64],
    want_argmax: bool,
) -> Result<Option<SelectedRows>, ProbeError> {
    // SAFETY: only read while this function runs, which writes to no tensor.
    let Some(all) = (unsafe { cpu_f32(flat) }) else {
        return Ok(None);
    };
    let v = flat.size()[1] as usize;
    let mut argmax = want_argmax.then(|| Vec::with_capacity(rows.len()));
    let out = build_rows(rows.len(), v, |i, out| {
        let r = rows[i] as usize;
        let cond = &all[r * v..(r + 1) * v];
        match guided {
            Some((half, scale)) => {
                let scale = scale as f32;
                let un = &all[(half + r) * v..(half + r + 1) * v];
                for ((o, &c), &u) in out.iter_mut().zip(cond).zip(un) {
                    *o = (c - u) * scale + u;
                }
            }
            None => out.copy_from_slice(cond),
        }
        for &id in forbidden {
            out[id as usize] = f32::NEG_INFINITY;
        }
        if let Some(found) = &mut argmax {
            match first_argmax(out) {
                Some(j) => found.push(j as i64),
                None => argmax = None,
            }
        }
    })?;
    Ok(Some((out, argmax)))
}

/// The index of the first maximum of `row` (as libtorch's `argmax`), `None` if it holds a NaN.
pub(super) fn first_argmax(row: &[f32]) -> Option<usize> {
    let lanes = row.chunks_exact(16);
    let tail = lanes.remainder();
    let mut nan = tail.iter().any(|x| x.is_nan());
    let mut max = tail
        .iter()
        .fold(f32::NEG_INFINITY, |a, &x| if x > a { x } else { a });
    let (block, has_nan) = block_max(&row[..row.len() - tail.len()]);
    nan |= has_nan;
    if nan {
        return None;
    }
    if block > max {
        max = block;
    }
    // `==` also finds a -0.0 that comes before a maximum of 0.0, as `argmax` does. Groups of 16
    // are tested whole (vectorised), then the first matching one element by element.
    let (g, group) = row
        .chunks(16)
        .enumerate()
        .find(|(_, c)| c.iter().fold(0u32, |a, &x| a | u32::from(x == max)) != 0)?;
    Some(g * 16 + group.iter().position(|&x| x == max)?)
}
