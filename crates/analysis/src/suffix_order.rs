//! The index's suffix order, sorted in pieces on every core.
//!
//! The index needs its suffixes in the order of their tokens up to the end of their document:
//! no query reaches past a separator, so how two suffixes that agree up to one compare does not
//! matter. That freedom lets a large text be sorted in pieces. The text is cut at a separator
//! near its middle, each half is sorted on its own core (libsais runs on one core here), and the two
//! sorted halves are merged, ties up to a separator going to the first half. Halves of a large
//! text are cut again, down to the sizes of [`PIECES`] or `MAX_DEPTH` cuts.
//!
//! The cuts depend on the text alone, never on the thread count, so an index's files are the
//! same whichever machine built them. A text without a separator near its middle (one huge
//! document), or whose halves copy each other (see [`MAX_SHARED`]), is sorted in one piece.

use rayon::prelude::*;

use crate::hint::prefetch;
use crate::sais::{self, Symbol};

/// How small pieces may get: a text is cut in two while each half would hold at least
/// `first` entries (the first cut) or `deeper` (every cut below it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pieces {
    pub first: usize,
    pub deeper: usize,
}

/// The first cut pays on any machine with two cores: the halves sort side by side and the merge
/// is one more pass over the text. A deeper cut adds another pass and pays only with more cores
/// than pieces: on two cores 20 M entries sorted in 1.95 s as one piece, 1.0 s as two, 1.15 s
/// as four and 1.4 s as eight (`index build` of the `index` bench's corpus). So deeper cuts
/// wait for pieces of 32 M entries, corpora that machines with more cores index.
pub(crate) const PIECES: Pieces = Pieces {
    first: 1 << 20,
    deeper: 1 << 25,
};

/// At most `2^MAX_DEPTH` pieces: each level of merges passes over the whole text once more.
const MAX_DEPTH: u32 = 3;

/// How many slots ahead the merge prefetches the text of the suffixes it will compare.
const AHEAD: usize = 24;

/// The suffix order of the index text `text` (ids below `upper`, every document ended by
/// [`SEPARATOR`](crate::index::SEPARATOR), the last entry too), sorted in pieces of at least
/// the sizes `pieces` allow (normally [`PIECES`]). `text` is left as it was.
pub(crate) fn index_suffix_order(text: &mut [u32], upper: u32, pieces: Pieces) -> Vec<u32> {
    // The sort wants a compact alphabet with the separator smallest: ids shifted up by one,
    // the separator wrapping to 0.
    if upper <= u16::MAX as u32 {
        // Half the bytes for the text, shifted as it is narrowed: the induced sorts and the
        // merge read it at random positions, and a text that fits the cache better is
        // markedly faster.
        let mut narrow: Vec<u16> = text
            .par_iter()
            .map(|&c| {
                let c = c.wrapping_add(1);
                assert!(c <= upper, "symbol {c} exceeds the alphabet bound {upper}");
                c as u16
            })
            .collect();
        sort_pieces(&mut narrow, upper, pieces, 0)
    } else {
        text.iter_mut().for_each(|t| *t = t.wrapping_add(1));
        let order = sort_pieces(text, upper, pieces, 0);
        text.iter_mut().for_each(|t| *t = t.wrapping_sub(1));
        order
    }
}

/// `text` is the same afterwards; it is mutable because libsais borrows a wide text as scratch.
fn sort_pieces<S: Symbol>(text: &mut [S], upper: u32, pieces: Pieces, depth: u32) -> Vec<u32> {
    let least = if depth == 0 {
        pieces.first
    } else {
        pieces.deeper
    };
    let cut = (depth < MAX_DEPTH && text.len() >= 2 * least)
        .then(|| separator_cut(text))
        .flatten();
    let Some(cut) = cut else {
        return sais::sort(text, upper);
    };
    let (first, second) = text.split_at(cut);
    if shared_share(first, second) > MAX_SHARED {
        // Merging compares a suffix with its copy in the other half up to their document's end;
        // with many copies that costs more than the second core saves.
        return sais::sort(text, upper);
    }
    let (first, second) = text.split_at_mut(cut);
    let (a, b) = rayon::join(
        || sort_pieces(first, upper, pieces, depth + 1),
        || sort_pieces(second, upper, pieces, depth + 1),
    );
    merge(text, &a, &b, cut as u32)
}

/// The length of the substrings [`shared_share`] looks for.
const SHARED_LEN: usize = 16;

/// Above this share of shared substrings a text is not cut. Copied documents make the merge
/// walk each copy to its end: four copies of the `index` bench's 20 M tokens sorted in 10.1 s
/// as one piece and 21.8 s as two. The halves of the bench's corpus share 0.17 % of their
/// substrings, those of the KJV text 0.2-0.3 %; the copies, all of them.
const MAX_SHARED: f64 = 0.02;

/// About what share of `second`'s substrings of [`SHARED_LEN`] symbols (within a document)
/// also occur in `first`: estimated on one substring in 128, chosen by its hash (by content, so
/// that a substring in both halves is sampled in both).
fn shared_share<S: Symbol>(first: &[S], second: &[S]) -> f64 {
    let mut seen = sampled_hashes(first);
    seen.par_sort_unstable();
    seen.dedup();
    let probes = sampled_hashes(second);
    if probes.is_empty() {
        return 0.0;
    }
    let hits = probes
        .par_iter()
        .filter(|h| seen.binary_search(h).is_ok())
        .count();
    hits as f64 / probes.len() as f64
}

/// The hashes of `text`'s substrings of [`SHARED_LEN`] symbols without a separator whose
/// scrambled hash has its top seven bits zero (a polynomial hash, so that the window rolls).
fn sampled_hashes<S: Symbol>(text: &[S]) -> Vec<u64> {
    const BASE: u64 = 0x9E37_79B9_7F4A_7C15;
    let top = BASE.wrapping_pow(SHARED_LEN as u32 - 1);
    let chunk = 1 << 16;
    (0..text.len().div_ceil(chunk))
        .into_par_iter()
        .flat_map_iter(|c| {
            // Windows starting in this chunk; the last ones read into the next.
            let (start, end) = (c * chunk, ((c + 1) * chunk).min(text.len()));
            let window_end = (end + SHARED_LEN - 1).min(text.len());
            let part = &text[start..window_end];
            let mut out = Vec::new();
            let (mut hash, mut clean) = (0u64, 0usize);
            for (i, &c) in part.iter().enumerate() {
                if i >= SHARED_LEN {
                    hash = hash.wrapping_sub((part[i - SHARED_LEN].idx() as u64).wrapping_mul(top));
                }
                hash = hash.wrapping_mul(BASE).wrapping_add(c.idx() as u64);
                // How many symbols since the last separator.
                clean = if c.idx() == 0 { 0 } else { clean + 1 };
                if clean >= SHARED_LEN && hash.wrapping_mul(BASE) >> 57 == 0 {
                    out.push(hash);
                }
            }
            out
        })
        .collect()
}

/// A cut just after a separator, the one nearest the middle within the middle half of the text.
fn separator_cut<S: Symbol>(text: &[S]) -> Option<usize> {
    let (mid, reach) = (text.len() / 2, text.len() / 4);
    let is_end = |cut: usize| text[cut - 1].idx() == 0;
    (0..reach)
        .flat_map(|d| [mid + d, mid - d])
        .find(|&cut| is_end(cut))
}

/// Whether the first half's suffix at `a` sorts before the second half's at `b` (positions in
/// the whole text): by their tokens up to a separator, ties to the first half.
#[inline(always)]
fn before<S: Symbol>(text: &[S], a: usize, b: usize) -> bool {
    for (&x, &y) in text[a..].iter().zip(&text[b..]) {
        if x != y {
            return x < y;
        }
        if x.idx() == 0 {
            return true;
        }
    }
    // Unreachable: both suffixes end with a separator, where a tie returns above.
    true
}

/// Merges the sorted halves `a` (positions in `text[..offset]`) and `b` (in `text[offset..]`)
/// into the order of the whole text, in parts on every core.
fn merge<S: Symbol>(text: &[S], a: &[u32], b: &[u32], offset: u32) -> Vec<u32> {
    let n = a.len() + b.len();
    let mut out = vec![0u32; n];
    // Parts by output position; each starts where the merge would be after its first slot's
    // predecessors, found by binary search (so the parts together write the sequential merge).
    let parts = (rayon::current_num_threads() * 4).min(n.max(1));
    let starts: Vec<(usize, usize)> = (0..=parts)
        .map(|p| {
            let k = n * p / parts;
            let i = taken_from_first(text, a, b, offset, k);
            (i, k - i)
        })
        .collect();
    let mut slices = Vec::with_capacity(parts);
    let mut rest = out.as_mut_slice();
    for w in starts.windows(2) {
        let len = (w[1].0 + w[1].1) - (w[0].0 + w[0].1);
        let (part, tail) = rest.split_at_mut(len);
        slices.push((w[0], w[1], part));
        rest = tail;
    }
    slices
        .into_par_iter()
        .for_each(|((i0, j0), (i1, j1), part)| {
            merge_part(text, &a[i0..i1], &b[j0..j1], offset, part);
        });
    out
}

/// How many of `a`'s entries are among the first `k` of the merge.
fn taken_from_first<S: Symbol>(text: &[S], a: &[u32], b: &[u32], offset: u32, k: usize) -> usize {
    let (mut lo, mut hi) = (k.saturating_sub(b.len()), k.min(a.len()));
    while lo < hi {
        // Then `k - mid - 1` indexes `b`: `mid >= k - b.len()`.
        let mid = (lo + hi) / 2;
        let j = k - mid - 1;
        if before(text, a[mid] as usize, (b[j] + offset) as usize) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn merge_part<S: Symbol>(text: &[S], a: &[u32], b: &[u32], offset: u32, out: &mut [u32]) {
    let (mut i, mut j) = (0, 0);
    for slot in out.iter_mut() {
        if let Some(&p) = a.get(i + AHEAD) {
            prefetch(text, p as usize);
        }
        if let Some(&p) = b.get(j + AHEAD) {
            prefetch(text, (p + offset) as usize);
        }
        let first = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => before(text, x as usize, (y + offset) as usize),
            (Some(_), None) => true,
            _ => false,
        };
        if first {
            *slot = a[i];
            i += 1;
        } else {
            *slot = b[j] + offset;
            j += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of 64 entries: texts of a few hundred documents get three levels of cuts.
    const SMALL: Pieces = Pieces {
        first: 64,
        deeper: 64,
    };

    /// A text of `docs` documents of random lengths over a small alphabet (long repeats),
    /// each ended by the separator 0.
    fn documents(seed: u64, docs: usize, alphabet: u32) -> Vec<u32> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut text = Vec::new();
        for _ in 0..docs {
            let len = 1 + next() % 40;
            text.extend((0..len).map(|_| 1 + (next() % alphabet as u64) as u32));
            text.push(0);
        }
        text
    }

    /// A suffix's tokens up to and including its document's end.
    fn key(text: &[u32], p: u32) -> &[u32] {
        let p = p as usize;
        let end = p + text[p..].iter().position(|&c| c == 0).unwrap();
        &text[p..=end]
    }

    fn check_order(text: &[u32], order: &[u32]) {
        let mut seen = order.to_vec();
        seen.sort_unstable();
        assert!(
            seen.iter().copied().eq(0..text.len() as u32),
            "not a permutation"
        );
        for w in order.windows(2) {
            assert!(key(text, w[0]) <= key(text, w[1]), "{w:?} out of order");
        }
    }

    #[test]
    fn pieces_sort_like_one_piece_up_to_separators() {
        for (seed, alphabet) in [(1, 3), (2, 50), (3, 1000), (4, 70_000)] {
            let text = documents(seed, 400, alphabet);
            let upper = alphabet;
            // Pieces of 64 entries: three levels of cuts and merges (the halves share little).
            let (first, second) = text.split_at(separator_cut(&text).unwrap());
            assert!(shared_share(first, second) < MAX_SHARED);
            let pieces = if upper <= u16::MAX as u32 {
                let mut narrow: Vec<u16> = text.iter().map(|&c| c as u16).collect();
                sort_pieces(&mut narrow, upper, SMALL, 0)
            } else {
                // libsais borrows a wide text as scratch space; it must come back unchanged.
                let mut wide = text.clone();
                let order = sort_pieces(&mut wide, upper, SMALL, 0);
                assert_eq!(wide, text);
                order
            };
            check_order(&text, &pieces);
            let whole = sais::suffix_array(&text, upper);
            assert!(whole
                .iter()
                .zip(&pieces)
                .all(|(&x, &y)| key(&text, x) == key(&text, y)));
        }
    }

    #[test]
    fn the_cut_is_a_document_end_near_the_middle_or_none() {
        let text = documents(7, 100, 20);
        let cut = separator_cut(&text).unwrap();
        assert_eq!(text[cut - 1], 0);
        assert!(cut.abs_diff(text.len() / 2) <= text.len() / 4);
        let one_document: Vec<u32> = (1..1000).chain([0]).collect();
        assert_eq!(separator_cut(&one_document), None);
        // Small texts are one piece: exactly the suffix array (of the shifted ids).
        let mut unshifted: Vec<u32> = text.iter().map(|&c| c.wrapping_sub(1)).collect();
        assert_eq!(
            index_suffix_order(&mut unshifted, 20, PIECES),
            sais::suffix_array(&text, 20)
        );
        assert!(unshifted
            .iter()
            .zip(&text)
            .all(|(&u, &t)| u.wrapping_add(1) == t));
    }

    #[test]
    fn halves_that_copy_each_other_are_not_cut() {
        let text = documents(5, 4000, 1000);
        let cut = separator_cut(&text).unwrap();
        let (first, second) = text.split_at(cut);
        assert!(shared_share(first, second) < 0.01);
        // The second half a copy of the first: everything is shared, and the text is sorted
        // in one piece, which is the suffix array itself.
        let copied: Vec<u32> = first.iter().chain(first).copied().collect();
        let (a, b) = copied.split_at(first.len());
        assert!(shared_share(a, b) > 0.99);
        assert_eq!(
            sort_pieces(&mut copied.clone(), 1000, SMALL, 0),
            sais::suffix_array(&copied, 1000)
        );
        // A tenth copied: above the limit too.
        let mut some: Vec<u32> = second.to_vec();
        let tenth = some.len() / 10;
        some[..tenth].copy_from_slice(&first[..tenth]);
        assert!(shared_share(first, &some) > MAX_SHARED);
    }

    #[test]
    fn the_order_does_not_depend_on_the_thread_count() {
        let text = documents(11, 300, 7);
        let narrow: Vec<u16> = text.iter().map(|&c| c as u16).collect();
        let run = |threads| {
            let mut narrow = narrow.clone();
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| sort_pieces(&mut narrow, 7, SMALL, 0))
        };
        assert_eq!(run(1), run(3));
    }
}
