//! New float32 rows filled on the host.

use tch::{Device, Kind, Tensor};

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
