//! Suffix-array construction by induced sorting (SA-IS, Nong, Zhang & Chan 2009) over a `u32` alphabet.
//!
//! The layout follows the compact formulation popularised by the AtCoder Library: L/S types,
//! bucket starts for L- and S-suffixes, one `induce` routine used twice (first to sort the LMS
//! substrings, then, after the recursion has ranked them, to sort every suffix). Suffix
//! positions are `u32`, so the text must be shorter than `u32::MAX` symbols.
//!
//! Convention: a suffix that is a proper prefix of another sorts first (a virtual sentinel
//! smaller than every symbol ends the text).

use crate::hint::prefetch;

const EMPTY: u32 = u32::MAX;

/// Below this length a comparison sort is faster than the induced-sorting machinery.
const NAIVE_THRESHOLD: usize = 16;

/// The suffix array of `s`, whose symbols all lie in `0..=upper`.
///
/// # Panics
/// If `s` has `u32::MAX` symbols or more, or a symbol is larger than `upper`.
pub fn suffix_array(s: &[u32], upper: u32) -> Vec<u32> {
    assert!(s.len() < EMPTY as usize, "text too long for u32 suffix positions");
    let mut sa = vec![0u32; s.len()];
    sa_is(s, upper, &mut sa);
    sa
}

/// How many suffix-array slots ahead the induced sorts prefetch text symbols.
const PREFETCH: usize = 64;

/// A fixed-size bit set.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    #[inline(always)]
    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }
}

fn naive(s: &[u32], sa: &mut [u32]) {
    for (i, v) in sa.iter_mut().enumerate() {
        *v = i as u32;
    }
    sa.sort_unstable_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
}

fn sa_is(s: &[u32], upper: u32, sa: &mut [u32]) {
    let n = s.len();
    if n < NAIVE_THRESHOLD {
        naive(s, sa);
        return;
    }
    let k = upper as usize + 1;
    // ls[i]: suffix i is S-type (smaller than suffix i + 1). The last suffix is L-type.
    // A bit set: the induced sorts read it at random positions, and an eighth of the size keeps
    // it in cache far longer than a `Vec<bool>`.
    let mut ls = Bits::new(n);
    let mut next_s = false;
    for i in (0..n - 1).rev() {
        next_s = if s[i] == s[i + 1] { next_s } else { s[i] < s[i + 1] };
        if next_s {
            ls.set(i);
        }
    }
    let ls = &ls;
    // sum_l[c]: first slot of bucket c (where its L-suffixes go);
    // sum_s[c]: first slot of the S-suffixes of bucket c.
    let mut sum_l = vec![0u32; k + 1];
    let mut sum_s = vec![0u32; k + 1];
    for i in 0..n {
        let c = s[i] as usize;
        assert!(c < k, "symbol {c} at {i} exceeds the alphabet bound {upper}");
        if ls.get(i) {
            sum_l[c + 1] += 1;
        } else {
            sum_s[c] += 1;
        }
    }
    for c in 0..k {
        sum_s[c] += sum_l[c];
        sum_l[c + 1] += sum_s[c];
    }

    let is_lms = |i: usize| i > 0 && !ls.get(i - 1) && ls.get(i);
    let mut buf = vec![0u32; k + 1];
    let induce = |sa: &mut [u32], lms: &[u32], buf: &mut [u32]| {
        sa.fill(EMPTY);
        buf.copy_from_slice(&sum_s);
        for (j, &d) in lms.iter().enumerate() {
            if let Some(&ahead) = lms.get(j + PREFETCH) {
                prefetch(sa, buf[s[ahead as usize] as usize] as usize);
            }
            let c = s[d as usize] as usize;
            sa[buf[c] as usize] = d;
            buf[c] += 1;
        }
        buf.copy_from_slice(&sum_l);
        let c = s[n - 1] as usize;
        sa[buf[c] as usize] = (n - 1) as u32;
        buf[c] += 1;
        for i in 0..n {
            // The symbol read below is a cache miss at a random position: ask for the one a
            // few slots ahead now (slots not yet induced just give a useless hint).
            if i + PREFETCH < n {
                let ahead = sa[i + PREFETCH].wrapping_sub(1) as usize;
                prefetch(s, ahead);
                prefetch(&ls.0, ahead / 64);
                // Half-way: that symbol has arrived; prefetch the slot it will be written to.
                let near = sa[i + PREFETCH / 2].wrapping_sub(1) as usize;
                if near < n {
                    prefetch(sa, buf[s[near] as usize] as usize);
                }
            }
            let v = sa[i];
            if v != EMPTY && v >= 1 && !ls.get(v as usize - 1) {
                let c = s[v as usize - 1] as usize;
                sa[buf[c] as usize] = v - 1;
                buf[c] += 1;
            }
        }
        buf.copy_from_slice(&sum_l);
        for i in (0..n).rev() {
            if i >= PREFETCH {
                let ahead = sa[i - PREFETCH].wrapping_sub(1) as usize;
                prefetch(s, ahead);
                prefetch(&ls.0, ahead / 64);
                let near = sa[i - PREFETCH / 2].wrapping_sub(1) as usize;
                if near < n {
                    prefetch(sa, (buf[s[near] as usize + 1] as usize).wrapping_sub(1));
                }
            }
            let v = sa[i];
            if v != EMPTY && v >= 1 && ls.get(v as usize - 1) {
                let c = s[v as usize - 1] as usize + 1;
                buf[c] -= 1;
                sa[buf[c] as usize] = v - 1;
            }
        }
    };

    // lms_map[i]: rank of LMS position i in text order, EMPTY for other positions.
    let mut lms_map = vec![EMPTY; n + 1];
    let mut lms: Vec<u32> = Vec::new();
    for i in 1..n {
        if is_lms(i) {
            lms_map[i] = lms.len() as u32;
            lms.push(i as u32);
        }
    }
    let m = lms.len();
    induce(sa, &lms, &mut buf);
    if m == 0 {
        return;
    }

    let mut sorted_lms: Vec<u32> = Vec::with_capacity(m);
    sorted_lms.extend(sa.iter().copied().filter(|&v| is_lms(v as usize)));
    // Name each LMS substring; equal substrings get equal names.
    let mut rec_s = vec![0u32; m];
    let mut rec_upper = 0u32;
    rec_s[lms_map[sorted_lms[0] as usize] as usize] = 0;
    let end_of = |p: usize| {
        let r = lms_map[p] as usize + 1;
        if r < m {
            lms[r] as usize
        } else {
            n
        }
    };
    for i in 1..m {
        if i + PREFETCH < m {
            let p = sorted_lms[i + PREFETCH] as usize;
            prefetch(s, p);
            prefetch(&lms_map, p);
            let near = lms_map[sorted_lms[i + PREFETCH / 2] as usize] as usize;
            prefetch(&lms, near + 1);
        }
        let (mut l, mut r) = (sorted_lms[i - 1] as usize, sorted_lms[i] as usize);
        let (end_l, end_r) = (end_of(l), end_of(r));
        let mut same = end_l - l == end_r - r;
        if same {
            while l < end_l && s[l] == s[r] {
                l += 1;
                r += 1;
            }
            if l == n || s[l] != s[r] {
                same = false;
            }
        }
        if !same {
            rec_upper += 1;
        }
        rec_s[lms_map[sorted_lms[i] as usize] as usize] = rec_upper;
    }
    drop(lms_map);
    let mut rec_sa = vec![0u32; m];
    sa_is(&rec_s, rec_upper, &mut rec_sa);
    drop(rec_s);
    for (slot, &r) in sorted_lms.iter_mut().zip(&rec_sa) {
        *slot = lms[r as usize];
    }
    drop(rec_sa);
    induce(sa, &sorted_lms, &mut buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &[u32]) {
        let upper = s.iter().copied().max().unwrap_or(0);
        let mut expected = vec![0u32; s.len()];
        naive(s, &mut expected);
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
        check(&(0..300u32).map(|i| (i % 3 == 0) as u32 * (i % 11)).collect::<Vec<_>>());
        let mut x = 12345u64;
        let random: Vec<u32> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 4) as u32
            })
            .collect();
        check(&random);
    }
}
