//! Suffix arrays, built by libsais (Ilya Grebnov's induced-sorting suffix sorter, through
//! the `libsais-sys` crate, without its OpenMP threads: the index sorts pieces of its text on
//! rayon's threads instead, see `suffix_order`).
//!
//! libsais replaced the project's own SA-IS, which it outruns on every shape the index
//! sorts: the `index` bench's suffix-array build went from 13.1–13.8 to 19.0 M tokens/s, and
//! `index build` of its 20 M ids from 2.19–2.48 s to 1.16–1.41 s at two thirds of the peak
//! memory (docs/performance.md, docs/scale.md).
//! 16-bit texts go to `libsais16`, wider ones to `libsais_int` with the alphabet's size.
//! Suffix positions are `u32`, and libsais' are `i32`: a text must be shorter than 2^31.
//!
//! Convention: a suffix that is a proper prefix of another sorts first (a virtual sentinel
//! smaller than every symbol ends the text).

use std::ptr;

/// The suffix array of `s`, whose symbols all lie in `0..=upper`.
///
/// # Panics
/// If `s` has 2^31 symbols or more, or a symbol is larger than `upper`.
pub fn suffix_array(s: &[u32], upper: u32) -> Vec<u32> {
    if let Some(i) = s.iter().position(|&c| c > upper) {
        panic!("symbol {} at {i} exceeds the alphabet bound {upper}", s[i]);
    }
    if upper <= u16::MAX as u32 {
        let mut narrow: Vec<u16> = s.iter().map(|&c| c as u16).collect();
        sort(&mut narrow, upper)
    } else {
        sort(&mut s.to_vec(), upper)
    }
}

/// The suffix array of `s` (symbols of either width), whose symbols all lie in `0..=upper`.
/// `s` is the same afterwards (libsais borrows a wide text as scratch space and restores it).
pub(crate) fn sort<S: Symbol>(s: &mut [S], upper: u32) -> Vec<u32> {
    assert!(
        s.len() <= i32::MAX as usize,
        "a text of {} symbols is too long for 31-bit suffix positions",
        s.len()
    );
    if s.len() <= 1 {
        return (0..s.len() as u32).collect();
    }
    S::suffix_array(s, upper)
}

/// A text symbol: `u32` in general, `u16` for a small alphabet (half the bytes, and libsais'
/// 16-bit sorter).
pub(crate) trait Symbol: Copy + Ord + std::fmt::Display + Send + Sync {
    fn idx(self) -> usize;

    /// The suffix array of `text` (2 to 2^31 - 1 symbols, all at most `upper`).
    fn suffix_array(text: &mut [Self], upper: u32) -> Vec<u32>;
}

impl Symbol for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }

    fn suffix_array(text: &mut [u32], upper: u32) -> Vec<u32> {
        // libsais reads symbols as bucket indices: one past the alphabet would write out of
        // bounds, so the bound is checked here rather than trusted.
        assert!(
            upper < i32::MAX as u32 && text.iter().all(|&c| c <= upper),
            "a symbol exceeds the alphabet bound {upper}"
        );
        let alphabet = upper as usize + 1;
        // libsais asks for 6 slots per symbol of the alphabet past the array's end for its
        // buckets (it allocates them itself otherwise).
        let spare = (6 * alphabet).min(i32::MAX as usize - text.len());
        let mut sa = Vec::<u32>::with_capacity(text.len() + spare);
        // SAFETY: `text` holds `text.len()` symbols below `alphabet`, all below 2^31, and `sa`
        // has room for `text.len() + spare` entries; `u32` and `i32` share their layout.
        let status = unsafe {
            libsais_sys::libsais::libsais_int(
                text.as_mut_ptr().cast::<i32>(),
                sa.as_mut_ptr().cast::<i32>(),
                text.len() as i32,
                alphabet as i32,
                spare as i32,
            )
        };
        finish(sa, text.len(), status)
    }
}

impl Symbol for u16 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }

    fn suffix_array(text: &mut [u16], _upper: u32) -> Vec<u32> {
        let mut sa = Vec::<u32>::with_capacity(text.len());
        // SAFETY: `text` holds `text.len()` 16-bit symbols (every value is in libsais16's
        // alphabet) and `sa` has room for as many entries; no frequency table is asked for.
        let status = unsafe {
            libsais_sys::libsais16::libsais16(
                text.as_ptr(),
                sa.as_mut_ptr().cast::<i32>(),
                text.len() as i32,
                0,
                ptr::null_mut(),
            )
        };
        finish(sa, text.len(), status)
    }
}

/// The first `n` entries libsais wrote into `sa`'s spare capacity, once it reports success.
fn finish(mut sa: Vec<u32>, n: usize, status: i32) -> Vec<u32> {
    assert_eq!(status, 0, "libsais failed (status {status}) on {n} symbols");
    // SAFETY: on success libsais has written every one of the first `n` entries.
    unsafe { sa.set_len(n) };
    sa
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &[u32]) {
        let upper = s.iter().copied().max().unwrap_or(0);
        let mut expected: Vec<u32> = (0..s.len() as u32).collect();
        expected.sort_unstable_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
        assert_eq!(suffix_array(s, upper), expected, "text {s:?}");
    }

    #[test]
    fn matches_naive_sort() {
        check(&[]);
        check(&[5]);
        // "banana" with a=1, b=2, n=3: suffix array 5 3 1 0 4 2.
        assert_eq!(suffix_array(&[2, 1, 3, 1, 3, 1], 3), vec![5, 3, 1, 0, 4, 2]);
        check(&[0; 40]);
        check(&(0..50).rev().collect::<Vec<_>>());
        check(&(0..200u32).map(|i| (i * 7919 + 13) % 5).collect::<Vec<_>>());
        check(
            &(0..300u32)
                .map(|i| (i % 3 == 0) as u32 * (i % 11))
                .collect::<Vec<_>>(),
        );
        // A xorshift stream of symbols below `k`.
        let xorshift = |mut x: u64, k: u64| {
            std::iter::repeat_with(move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % k) as u32
            })
        };
        let random: Vec<u32> = xorshift(12345, 4).take(5000).collect();
        check(&random);
        // Larger alphabets (names all distinct after one level), periodic texts (deep
        // recursion with repeated names), and separator-like runs of the smallest symbol.
        let wide: Vec<u32> = random
            .iter()
            .enumerate()
            .map(|(i, &r)| (r * 977 + i as u32 * 31) % 3000)
            .collect();
        check(&wide);
        // Longer texts: several recursion levels, each with its own tagged induced sorts.
        let long: Vec<u32> = xorshift(99, 6)
            .take(40_000)
            .enumerate()
            .map(|(i, y)| if i % 500 < 40 { (i % 3) as u32 } else { y })
            .collect();
        check(&long);
        // Symbols above u16::MAX: the top level runs on u32 symbols too.
        check(&wide.iter().map(|&x| x * 101).collect::<Vec<_>>());
        check(
            &(0..3000u32)
                .map(|i| [3, 1, 2, 1, 3, 3, 1][i as usize % 7])
                .collect::<Vec<_>>(),
        );
        check(
            &(0..2000u32)
                .map(|i| if i % 97 == 0 { 0 } else { 1 + (i * i) % 13 })
                .collect::<Vec<_>>(),
        );
    }
}
