//! The corpus unigram table (`unigram.bin` of an index folder).
//!
//! File format (little-endian): 8 bytes of magic `CPIXUNI1`, a `u64` entry count `V`, then `V`
//! `u64` counts, entry `t` being the number of times token id `t` occurs in the corpus.
//! Token ids at or beyond `V` never occur. The file is small (8 bytes per vocabulary entry)
//! and is read whole, so the probe can load it without the suffix array.

use std::path::Path;

use crate::error::{AnalysisError, Result};
use crate::store::{read_words, UNIGRAM_MAGIC};

/// File name of the unigram table inside an index folder.
pub const UNIGRAM_FILE: &str = "unigram.bin";

/// Corpus token counts, indexed by token id.
#[derive(Debug, Clone, PartialEq)]
pub struct Unigram {
    counts: Vec<u64>,
    total: u64,
}

impl Unigram {
    /// Reads `index_dir/unigram.bin`.
    pub fn load(index_dir: &Path) -> Result<Self> {
        let path = index_dir.join(UNIGRAM_FILE);
        let counts = read_words::<u64>(&path, UNIGRAM_MAGIC)?.to_vec();
        Ok(Unigram::from_counts(counts))
    }

    /// A table from counts indexed by token id.
    pub fn from_counts(counts: Vec<u64>) -> Self {
        let total = counts.iter().sum();
        Unigram { counts, total }
    }

    /// Counts indexed by token id.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Number of tokens in the corpus.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Length of the table (one past the largest token id it covers).
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether the table covers no token id.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The corpus count of `token` (0 beyond the table).
    pub fn count(&self, token: u32) -> u64 {
        self.counts.get(token as usize).copied().unwrap_or(0)
    }

    /// Add-`alpha` smoothed probabilities over a vocabulary of `vocab_size` ids:
    /// `p(t) = (count(t) + alpha) / (total + alpha * vocab_size)`.
    ///
    /// `alpha = 0` gives the maximum-likelihood table (zeros for unseen tokens); any `alpha > 0`
    /// keeps KL divergences to the table finite. The probe passes the model's vocabulary size,
    /// which may exceed the tokenizer's.
    pub fn probabilities(&self, vocab_size: usize, alpha: f64) -> Vec<f64> {
        let denom = self.total as f64 + alpha * vocab_size as f64;
        (0..vocab_size)
            .map(|t| {
                let c = self.counts.get(t).copied().unwrap_or(0) as f64;
                if denom > 0.0 {
                    (c + alpha) / denom
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// The `f` most frequent token ids, most frequent first; ties go to the smaller id.
    /// Tokens that never occur are not listed, so fewer than `f` ids may come back.
    pub fn most_frequent(&self, f: usize) -> Vec<u32> {
        let ranks = self.order();
        ranks
            .into_iter()
            .take(f)
            .filter(|&t| self.counts[t as usize] > 0)
            .collect()
    }

    /// Frequency rank of every token id: 1 for the most frequent token, ties broken by id.
    /// Token ids that never occur (and those beyond the table) share the rank
    /// `seen + 1`, where `seen` is the number of distinct tokens in the corpus.
    pub fn ranks(&self) -> FrequencyRanks {
        let order = self.order();
        let seen = self.counts.iter().filter(|&&c| c > 0).count() as u32;
        let mut rank = vec![seen + 1; self.counts.len()];
        for (r, &t) in order.iter().enumerate().take(seen as usize) {
            rank[t as usize] = r as u32 + 1;
        }
        FrequencyRanks {
            rank,
            unseen: seen + 1,
        }
    }

    fn order(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = (0..self.counts.len() as u32).collect();
        ids.sort_by(|&a, &b| {
            self.counts[b as usize]
                .cmp(&self.counts[a as usize])
                .then(a.cmp(&b))
        });
        ids
    }
}

/// Corpus frequency ranks by token id (see [`Unigram::ranks`]).
#[derive(Debug, Clone)]
pub struct FrequencyRanks {
    rank: Vec<u32>,
    unseen: u32,
}

impl FrequencyRanks {
    /// The rank of `token` (1 = most frequent).
    pub fn rank(&self, token: u32) -> u32 {
        self.rank
            .get(token as usize)
            .copied()
            .unwrap_or(self.unseen)
    }
}

impl From<Vec<u64>> for Unigram {
    fn from(counts: Vec<u64>) -> Self {
        Unigram::from_counts(counts)
    }
}

pub(crate) fn check_total(unigram: &Unigram, expected: u64, path: &Path) -> Result<()> {
    if unigram.total != expected {
        return Err(AnalysisError::corrupt(
            path,
            format!(
                "unigram counts sum to {} but index.json says {expected} tokens",
                unigram.total
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_most_frequent_break_ties_by_id() {
        let u = Unigram::from_counts(vec![5, 0, 9, 5, 1]);
        assert_eq!(u.most_frequent(3), vec![2, 0, 3]);
        assert_eq!(u.most_frequent(10), vec![2, 0, 3, 4]);
        let r = u.ranks();
        assert_eq!((r.rank(2), r.rank(0), r.rank(3), r.rank(4)), (1, 2, 3, 4));
        assert_eq!((r.rank(1), r.rank(99)), (5, 5));
    }

    #[test]
    fn smoothed_probabilities_sum_to_one() {
        let u = Unigram::from_counts(vec![3, 1]);
        let p = u.probabilities(4, 1.0);
        assert_eq!(p, vec![4.0 / 8.0, 2.0 / 8.0, 1.0 / 8.0, 1.0 / 8.0]);
        assert_eq!(u.probabilities(2, 0.0), vec![0.75, 0.25]);
    }
}
