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

/// The tag of an entry during the induced sorts (see `sa_is`); positions stay below it.
const S_BEFORE: u32 = 1 << 31;

/// Clears the induced sorts' tags.
fn untag(sa: &mut [u32]) {
    sa.iter_mut().for_each(|e| *e &= !S_BEFORE);
}

/// Below this length a comparison sort is faster than the induced-sorting machinery.
const NAIVE_THRESHOLD: usize = 16;

/// The suffix array of `s`, whose symbols all lie in `0..=upper`.
///
/// # Panics
/// If `s` has `u32::MAX` symbols or more, or a symbol is larger than `upper`.
pub fn suffix_array(s: &[u32], upper: u32) -> Vec<u32> {
    if upper <= u16::MAX as u32 && s.len() >= NAIVE_THRESHOLD {
        // Half the bytes for the text: the induced sorts read it at random positions, and a
        // text that fits the cache better makes the top level markedly faster.
        if let Some(i) = s.iter().position(|&c| c > upper) {
            panic!("symbol {} at {i} exceeds the alphabet bound {upper}", s[i]);
        }
        let narrow: Vec<u16> = s.iter().map(|&c| c as u16).collect();
        sort(&narrow, upper)
    } else {
        sort(s, upper)
    }
}

/// The suffix array of `s` (symbols of either width), whose symbols all lie in `0..=upper`.
pub(crate) fn sort<S: Symbol>(s: &[S], upper: u32) -> Vec<u32> {
    assert!(
        s.len() < S_BEFORE as usize,
        "text too long for 31-bit suffix positions"
    );
    let mut sa = vec![0u32; s.len()];
    sa_is(s, upper, &mut sa);
    sa
}

/// A text symbol: `u32` in general, `u16` for the top level of a small alphabet.
pub(crate) trait Symbol: Copy + Ord + std::fmt::Display + Send + Sync {
    fn idx(self) -> usize;
}

impl Symbol for u32 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

impl Symbol for u16 {
    #[inline(always)]
    fn idx(self) -> usize {
        self as usize
    }
}

/// How many suffix-array slots ahead the induced sorts prefetch text symbols; at `MID` slots
/// ahead they prefetch the symbol's bucket pointer, at `NEAR` the slot it points to.
const PREFETCH: usize = 64;
const MID: usize = 40;
const NEAR: usize = 20;

/// A fixed-size bit set.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }

    #[inline(always)]
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    /// The first set position at or after `from`, or `limit` if there is none before it.
    #[inline(always)]
    fn next_set(&self, from: usize, limit: usize) -> usize {
        let mut w = from / 64;
        let Some(&first) = self.0.get(w) else {
            return limit;
        };
        let mut word = first & (!0u64 << (from % 64));
        loop {
            if word != 0 {
                return (w * 64 + word.trailing_zeros() as usize).min(limit);
            }
            w += 1;
            match self.0.get(w) {
                Some(&next) => word = next,
                None => return limit,
            }
        }
    }
}

fn naive<S: Symbol>(s: &[S], sa: &mut [u32]) {
    for (i, v) in sa.iter_mut().enumerate() {
        *v = i as u32;
    }
    sa.sort_unstable_by(|&a, &b| s[a as usize..].cmp(&s[b as usize..]));
}

fn sa_is<S: Symbol>(s: &[S], upper: u32, sa: &mut [u32]) {
    let n = s.len();
    if n < NAIVE_THRESHOLD {
        naive(s, sa);
        return;
    }
    let k = upper as usize + 1;
    // ls[i]: suffix i is S-type (smaller than suffix i + 1). The last suffix is L-type.
    // A bit set: the induced sorts read it at random positions, and an eighth of the size keeps
    // it in cache far longer than a `Vec<bool>`.
    // Word by word from the end: `lt` and `eq` (symbol below / equal to the next) are plain
    // comparisons; i is S-type if lt, or if eq and i + 1 is S-type, resolved by repeating
    // `lt | eq & (types >> 1)` until it settles (runs of equal symbols are short in text).
    let mut ls = Bits::new(n);
    let mut carry = 0u64; // type of the first position of the next word
    for w in (0..ls.0.len()).rev() {
        let (lo, hi) = (w * 64, ((w + 1) * 64).min(n - 1));
        let (mut lt, mut eq) = (0u64, 0u64);
        if lo < hi {
            for (j, pair) in s[lo..=hi].windows(2).enumerate() {
                lt |= u64::from(pair[0] < pair[1]) << j;
                eq |= u64::from(pair[0] == pair[1]) << j;
            }
        }
        let mut t = lt;
        loop {
            let next = lt | eq & ((t >> 1) | carry << 63);
            if next == t {
                break;
            }
            t = next;
        }
        ls.0[w] = t;
        carry = t & 1;
    }
    let ls = &ls;
    // sum_l[c]: first slot of bucket c (where its L-suffixes go);
    // sum_s[c]: first slot of the S-suffixes of bucket c.
    let mut sum_l = vec![0u32; k + 1];
    let mut sum_s = vec![0u32; k + 1];
    if let Some(i) = s.iter().position(|&c| c.idx() > upper as usize) {
        panic!("symbol {} at {i} exceeds the alphabet bound {upper}", s[i]);
    }
    // Per symbol, its L- and S-type counts side by side: one cache line per text position even
    // when the alphabet is large (the recursion's names).
    let mut counts = vec![[0u32; 2]; k];
    for (i, &c) in s.iter().enumerate() {
        counts[c.idx()][(ls.0[i / 64] >> (i % 64) & 1) as usize] += 1;
    }
    for (c, &[l, s_type]) in counts.iter().enumerate() {
        sum_s[c] = sum_l[c] + l;
        sum_l[c + 1] = sum_s[c] + s_type;
    }
    drop(counts);

    // During the induced sorts an entry `p` carries `S_BEFORE` when suffix `p - 1` is S-type.
    let tag = |p: usize| p as u32 | if p >= 1 && ls.get(p - 1) { S_BEFORE } else { 0 };
    let mut buf = vec![0u32; k + 1];
    let induce = |sa: &mut [u32], lms: &[u32], buf: &mut [u32]| {
        sa.fill(EMPTY);
        buf.copy_from_slice(&sum_s);
        for (j, &d) in lms.iter().enumerate() {
            // The same three stages as the scans below (the final induce visits the LMS
            // positions in sorted order, so their symbols are at random places too).
            if let Some(&ahead) = lms.get(j + PREFETCH) {
                prefetch(s, ahead as usize);
            }
            if let Some(&mid) = lms.get(j + MID) {
                prefetch(buf, s[mid as usize].idx());
            }
            if let Some(&near) = lms.get(j + NEAR) {
                prefetch(sa, buf[s[near as usize].idx()] as usize);
            }
            let c = s[d as usize].idx();
            // An LMS position's predecessor is L-type: no tag.
            sa[buf[c] as usize] = d;
            buf[c] += 1;
        }
        buf.copy_from_slice(&sum_l);
        let c = s[n - 1].idx();
        sa[buf[c] as usize] = tag(n - 1);
        buf[c] += 1;
        // An entry is induced from when its predecessor's type matches the scan (L in this one):
        // the tag says so without a look at the type bits, so only those entries' symbols,
        // type words and slots are prefetched.
        let l_next = |e: u32| e != EMPTY && e & S_BEFORE == 0 && e >= 1;
        for i in 0..n {
            if i + PREFETCH < n {
                let ahead = sa[i + PREFETCH];
                if l_next(ahead) {
                    let p = ahead as usize - 1;
                    prefetch(s, p);
                    prefetch(&ls.0, p.wrapping_sub(1) / 64);
                }
                let mid = sa[i + MID];
                if l_next(mid) {
                    prefetch(buf, s[mid as usize - 1].idx());
                }
                let near = sa[i + NEAR];
                if l_next(near) {
                    prefetch(sa, buf[s[near as usize - 1].idx()] as usize);
                }
            }
            let e = sa[i];
            if l_next(e) {
                let p = e as usize - 1;
                let c = s[p].idx();
                sa[buf[c] as usize] = tag(p);
                buf[c] += 1;
            }
        }
        buf.copy_from_slice(&sum_l);
        let s_next = |e: u32| e != EMPTY && e & S_BEFORE != 0;
        for i in (0..n).rev() {
            if i >= PREFETCH {
                let ahead = sa[i - PREFETCH];
                if s_next(ahead) {
                    let p = (ahead & !S_BEFORE) as usize - 1;
                    prefetch(s, p);
                    prefetch(&ls.0, p.wrapping_sub(1) / 64);
                }
                let mid = sa[i - MID];
                if s_next(mid) {
                    prefetch(buf, s[(mid & !S_BEFORE) as usize - 1].idx() + 1);
                }
                let near = sa[i - NEAR];
                if s_next(near) {
                    prefetch(
                        sa,
                        (buf[s[(near & !S_BEFORE) as usize - 1].idx() + 1] as usize)
                            .wrapping_sub(1),
                    );
                }
            }
            let e = sa[i];
            if s_next(e) {
                let p = (e & !S_BEFORE) as usize - 1;
                let c = s[p].idx() + 1;
                buf[c] -= 1;
                sa[buf[c] as usize] = tag(p);
            }
        }
    };

    // The LMS positions in text order, and as a bit set (to find the next one after a position).
    // Word by word: S-type positions whose predecessor is L-type (position 0 never is).
    let mut lms: Vec<u32> = Vec::new();
    let mut lms_bits = Bits::new(n);
    let mut prev_top = 1u64; // type of the position before the word's first
    for (w, &t) in ls.0.iter().enumerate() {
        let mut word = t & !(t << 1 | prev_top);
        prev_top = t >> 63;
        lms_bits.0[w] = word;
        while word != 0 {
            lms.push((w * 64 + word.trailing_zeros() as usize) as u32);
            word &= word - 1;
        }
    }
    let m = lms.len();
    induce(sa, &lms, &mut buf);
    if m == 0 {
        untag(sa);
        return;
    }

    let mut sorted_lms: Vec<u32> = Vec::with_capacity(m);
    sorted_lms.extend(
        sa.iter()
            .map(|&e| e & !S_BEFORE)
            .filter(|&v| lms_bits.get(v as usize)),
    );
    // Name each LMS substring (from its position to the next LMS position, or the end); equal
    // substrings get equal names. First whether each differs from the one before it in sorted
    // order (random reads of the text, prefetched ahead).
    let end_of = |p: usize| lms_bits.next_set(p + 1, n);
    let differs = |i: usize| {
        if i + PREFETCH < m {
            let p = sorted_lms[i + PREFETCH] as usize;
            prefetch(s, p);
            prefetch(&lms_bits.0, (p + 1) / 64);
        }
        let (mut l, mut r) = (sorted_lms[i - 1] as usize, sorted_lms[i] as usize);
        let (end_l, end_r) = (end_of(l), end_of(r));
        if end_l - l != end_r - r {
            return true;
        }
        while l < end_l && s[l] == s[r] {
            l += 1;
            r += 1;
        }
        l == n || s[l] != s[r]
    };
    let new_name: Vec<bool> = (1..m).map(differs).collect();
    // The names in text order: LMS positions are at least two apart, so position p can park
    // its name at p / 2 of the (now free) suffix-array buffer, which is then read in order.
    let parked = &mut sa[..n / 2 + 1];
    parked.fill(EMPTY);
    let mut rec_upper = 0u32;
    parked[sorted_lms[0] as usize / 2] = 0;
    for (i, &new) in (1..m).zip(&new_name) {
        if i + PREFETCH < m {
            prefetch(parked, sorted_lms[i + PREFETCH] as usize / 2);
        }
        rec_upper += u32::from(new);
        parked[sorted_lms[i] as usize / 2] = rec_upper;
    }
    drop(new_name);
    let rec_s: Vec<u32> = parked.iter().copied().filter(|&x| x != EMPTY).collect();
    debug_assert_eq!(rec_s.len(), m);
    let mut rec_sa = vec![0u32; m];
    if rec_upper as usize + 1 == m {
        // Every name is distinct: the reduced text's suffix order is the order of its names.
        for (i, &name) in rec_s.iter().enumerate() {
            rec_sa[name as usize] = i as u32;
        }
    } else {
        sa_is(&rec_s, rec_upper, &mut rec_sa);
    }
    drop(rec_s);
    for (slot, &r) in sorted_lms.iter_mut().zip(&rec_sa) {
        *slot = lms[r as usize];
    }
    drop(rec_sa);
    induce(sa, &sorted_lms, &mut buf);
    untag(sa);
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
