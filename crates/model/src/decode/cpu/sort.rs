//! Order-preserving integer keys of float32 values, for the top-k selection.

/// An order-reversing integer key of a non-NaN float: larger values get smaller keys (`-0.0`
/// sorts just after `0.0`, which compare equal as floats).
pub(super) fn desc_key(x: f32) -> u32 {
    let b = x.to_bits();
    if b >> 31 == 0 {
        !b & 0x7fff_ffff
    } else {
        b
    }
}

/// The inverse of [`desc_key`].
pub(crate) fn from_desc_key(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 0 { !k & 0x7fff_ffff } else { k })
}
