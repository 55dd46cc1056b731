//! The reference-corpus n-gram index: token ids with document separators, their suffix array
//! and the unigram table. Any n-gram's count is two binary searches inside the suffix-array
//! bucket of its first token.
//!
//! Folder layout (see METRICS.md, "Index format"):
//! - `index.json`: [`IndexHeader`];
//! - `tokens.bin`: the corpus as `u32` ids, each document followed by [`SEPARATOR`];
//! - `suffix.bin`: the `u32` start positions of every non-separator suffix, sorted by their
//!   tokens up to their document's end (see `suffix_order`);
//! - `unigram.bin`: `u64` counts by token id (see [`Unigram`]).
//!
//! Suffixes are ordered with the separator below every token id, so the suffixes that start
//! with token `t` form the bucket `[C(t), C(t) + count(t))`, `C(t)` being the number of corpus
//! tokens with a smaller id: the unigram table doubles as the first level of the search.
//! No suffix can match an n-gram across a separator, so no counted n-gram crosses a document.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AnalysisError, Result};
use crate::store::{read_words, write_words, Words, SUFFIX_MAGIC, TOKENS_MAGIC, UNIGRAM_MAGIC};
use crate::unigram::{check_total, Unigram, UNIGRAM_FILE};

/// Version of the index folder layout; bumped when a file changes meaning.
pub const INDEX_FORMAT_VERSION: u32 = 1;

/// The id that ends every document in `tokens.bin`. It is never a valid token id.
pub const SEPARATOR: u32 = u32::MAX;

/// Most text entries (tokens plus one separator per document) one index piece holds: suffix
/// positions have 31 bits, the suffix sort tagging entries with the 32nd. A larger corpus is
/// built in shards of at most this many.
pub const SHARD_LIMIT: u64 = (1 << 31) - 1;

/// File names inside an index folder.
pub mod index_files {
    /// The header ([`super::IndexHeader`]).
    pub const HEADER: &str = "index.json";
    /// Token ids with document separators.
    pub const TOKENS: &str = "tokens.bin";
    /// The suffix array.
    pub const SUFFIX: &str = "suffix.bin";
    /// The unigram table.
    pub const UNIGRAM: &str = super::UNIGRAM_FILE;
}

/// `index.json`: what an index holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHeader {
    /// [`INDEX_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// SHA-256 of the `tokenizer.json` used to tokenize the corpus (absent for id corpora).
    pub tokenizer_sha256: Option<String>,
    /// The tokenizer path as given.
    pub tokenizer: Option<String>,
    /// Length of the unigram table: the tokenizer's vocabulary size, or one past the largest id seen.
    pub vocab_size: u32,
    /// Corpus tokens, separators excluded.
    pub token_count: u64,
    /// Non-empty documents.
    pub doc_count: u64,
    /// Byte size of every binary file, by name.
    pub file_bytes: BTreeMap<String, u64>,
    /// The corpus files as given.
    pub sources: Vec<String>,
    /// How plain-text files were split into documents (`paragraph`, `line` or `file`).
    pub doc_split: String,
    /// Version of collapse-probe that wrote the index.
    pub tool_version: String,
    /// A sharded index: its shard folders, each a whole index of its documents (none: one
    /// piece). Counts and the unigram table at the top are the sums over them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<String>,
}

impl IndexHeader {
    /// Index bytes per corpus token (all binary files).
    pub fn bytes_per_token(&self) -> f64 {
        self.file_bytes.values().sum::<u64>() as f64 / self.token_count.max(1) as f64
    }
}

/// Accumulates documents and sorts their suffixes.
#[derive(Debug, Default)]
pub struct IndexBuilder {
    text: Vec<u32>,
    doc_count: u64,
    counts: Vec<u64>,
}

/// An index built in memory, ready to be written or queried.
#[derive(Debug)]
pub struct BuiltIndex {
    text: Vec<u32>,
    suffixes: Vec<u32>,
    unigram: Unigram,
    doc_count: u64,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one document; empty documents are skipped. `source` only names errors.
    pub fn push_document(&mut self, ids: &[u32], source: &Path) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let limit = SHARD_LIMIT;
        let total = self.text.len() as u64 + ids.len() as u64 + 1;
        if total > limit {
            return Err(AnalysisError::CorpusTooLarge {
                tokens: total,
                limit,
            });
        }
        for &t in ids {
            if t == SEPARATOR {
                return Err(AnalysisError::ReservedTokenId {
                    path: source.to_owned(),
                    id: t,
                });
            }
            let t = t as usize;
            if t >= self.counts.len() {
                self.counts.resize(t + 1, 0);
            }
            self.counts[t] += 1;
        }
        self.text.extend_from_slice(ids);
        self.text.push(SEPARATOR);
        self.doc_count += 1;
        Ok(())
    }

    /// Corpus tokens pushed so far (separators excluded).
    pub fn token_count(&self) -> u64 {
        self.text.len() as u64 - self.doc_count
    }

    /// Makes room for `entries` more text entries, up to [`SHARD_LIMIT`] in all, so that a
    /// large corpus read at once is copied in once.
    pub fn reserve(&mut self, entries: u64) {
        let room = SHARD_LIMIT.saturating_sub(self.text.len() as u64);
        self.text.reserve(entries.min(room) as usize);
    }

    /// Entries of the text so far: tokens plus one separator per document (what
    /// [`SHARD_LIMIT`] bounds).
    pub fn entries(&self) -> u64 {
        self.text.len() as u64
    }

    /// Sorts the suffixes. `vocab_size` pads the unigram table to the tokenizer's vocabulary.
    pub fn finish(self, vocab_size: u32) -> BuiltIndex {
        self.finish_in_pieces(vocab_size, crate::suffix_order::PIECES)
    }

    /// [`IndexBuilder::finish`], cutting the text into pieces as `pieces` allows.
    fn finish_in_pieces(self, vocab_size: u32, pieces: crate::suffix_order::Pieces) -> BuiltIndex {
        let IndexBuilder {
            mut text,
            doc_count,
            mut counts,
        } = self;
        if counts.len() < vocab_size as usize {
            counts.resize(vocab_size as usize, 0);
        }
        let upper = counts.len() as u32;
        let mut suffixes = crate::suffix_order::index_suffix_order(&mut text, upper, pieces);
        // The first `doc_count` suffixes start with a separator; no n-gram query can match them.
        suffixes.drain(..doc_count as usize);
        BuiltIndex {
            text,
            suffixes,
            unigram: Unigram::from_counts(counts),
            doc_count,
        }
    }
}

impl BuiltIndex {
    /// Writes the binary files into `dir` (an existing folder, normally a staging folder) and
    /// returns their byte sizes by name.
    pub fn write_files(&self, dir: &Path) -> Result<BTreeMap<String, u64>> {
        let mut sizes = BTreeMap::new();
        // The two large files side by side: each is a pass of encoding and copying.
        let (tokens, suffixes) = rayon::join(
            || write_words(&dir.join(index_files::TOKENS), TOKENS_MAGIC, &self.text),
            || write_words(&dir.join(index_files::SUFFIX), SUFFIX_MAGIC, &self.suffixes),
        );
        sizes.insert(index_files::TOKENS.to_owned(), tokens?);
        sizes.insert(index_files::SUFFIX.to_owned(), suffixes?);
        let p = dir.join(index_files::UNIGRAM);
        sizes.insert(
            index_files::UNIGRAM.to_owned(),
            write_words(&p, UNIGRAM_MAGIC, self.unigram.counts())?,
        );
        Ok(sizes)
    }

    /// Corpus tokens (separators excluded).
    pub fn token_count(&self) -> u64 {
        self.suffixes.len() as u64
    }

    /// Non-empty documents.
    pub fn doc_count(&self) -> u64 {
        self.doc_count
    }

    /// The unigram table.
    pub fn unigram(&self) -> &Unigram {
        &self.unigram
    }

    /// Turns the built index into a queryable one without touching the disk.
    pub fn into_index(self, header: IndexHeader) -> NgramIndex {
        NgramIndex::assemble(
            Words::Owned(self.text),
            Words::Owned(self.suffixes),
            self.unigram,
            header,
        )
    }
}

/// A queryable n-gram index (memory-mapped when opened from a folder).
pub struct NgramIndex {
    text: Words<u32>,
    suffixes: Words<u32>,
    unigram: Unigram,
    /// `bucket[t]..bucket[t + 1]`: the suffix-array range of suffixes starting with token `t`.
    bucket: Vec<u64>,
    /// `samples[j]`: the [`KEY_TOKENS`] tokens after the first of suffix `SAMPLE * j`
    /// ([`sample_key`]), so most of a search runs over this array instead of chasing text
    /// positions.
    samples: Vec<u128>,
    /// `top[i] = samples[SAMPLE * i]`: small enough to stay in cache, it narrows the search
    /// over the samples to one block of `SAMPLE`.
    top: Vec<u128>,
    header: IndexHeader,
    /// The pieces of a sharded index (then the fields above hold no text of their own).
    shards: Vec<NgramIndex>,
}

/// Every `SAMPLE`-th suffix has its tokens 2 to 5 in [`NgramIndex::samples`] (built when the
/// index is opened: one byte of memory per token, nothing on disk).
const SAMPLE: usize = 16;

/// Tokens per sample key: with the first token's bucket, n-grams up to 5 tokens are decided
/// by the samples alone.
const KEY_TOKENS: usize = 4;

/// Order key of up to [`KEY_TOKENS`] tokens, the first in the highest 32 bits: ids shifted by
/// one so that the separator (and whatever follows it, or the end of a shorter sequence) is 0,
/// below every id.
#[inline]
fn sample_key(tokens: impl IntoIterator<Item = u32>) -> u128 {
    let mut key = 0u128;
    let mut ended = false;
    for (i, t) in tokens.into_iter().take(KEY_TOKENS).enumerate() {
        ended |= t == SEPARATOR;
        if !ended {
            key |= (t.wrapping_add(1) as u128) << (32 * (KEY_TOKENS - 1 - i));
        }
    }
    key
}

impl std::fmt::Debug for NgramIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NgramIndex")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl NgramIndex {
    /// Builds an in-memory index of `docs` (tests, small corpora).
    pub fn from_documents<D: AsRef<[u32]>>(docs: &[D]) -> Result<Self> {
        let mut b = IndexBuilder::new();
        for d in docs {
            b.push_document(d.as_ref(), Path::new("<memory>"))?;
        }
        let built = b.finish(0);
        let header = IndexHeader {
            format_version: INDEX_FORMAT_VERSION,
            tokenizer_sha256: None,
            tokenizer: None,
            vocab_size: built.unigram.len() as u32,
            token_count: built.token_count(),
            doc_count: built.doc_count,
            file_bytes: BTreeMap::new(),
            sources: Vec::new(),
            doc_split: "memory".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            shards: Vec::new(),
        };
        Ok(built.into_index(header))
    }

    /// Opens an index folder. When `tokenizer_sha256` is given it must equal the one recorded
    /// at build time. Every file is checked against `index.json` (magic, sizes, counts) and
    /// every suffix position is checked to lie inside the text.
    pub fn open(dir: &Path, tokenizer_sha256: Option<&str>) -> Result<Self> {
        let header_path = dir.join(index_files::HEADER);
        let header: IndexHeader = cp_records::read_json(&header_path)?;
        if header.format_version != INDEX_FORMAT_VERSION {
            return Err(AnalysisError::corrupt(
                &header_path,
                format!(
                    "format version {} is not the supported {INDEX_FORMAT_VERSION}",
                    header.format_version
                ),
            ));
        }
        if let (Some(expected), Some(found)) =
            (tokenizer_sha256, header.tokenizer_sha256.as_deref())
        {
            if expected != found {
                return Err(AnalysisError::TokenizerMismatch {
                    path: header_path,
                    expected: expected.to_owned(),
                    found: found.to_owned(),
                });
            }
        }
        if !header.shards.is_empty() {
            return Self::open_shards(dir, header, tokenizer_sha256);
        }
        for (name, &bytes) in &header.file_bytes {
            let p = dir.join(name);
            let size = std::fs::metadata(&p)
                .map_err(|e| AnalysisError::io(&p, e))?
                .len();
            if size != bytes {
                return Err(AnalysisError::corrupt(
                    &p,
                    format!("{size} bytes, index.json says {bytes}"),
                ));
            }
        }
        let tokens_path = dir.join(index_files::TOKENS);
        let text = read_words::<u32>(&tokens_path, TOKENS_MAGIC)?;
        let n_text = text.as_slice().len() as u64;
        if n_text != header.token_count + header.doc_count {
            return Err(AnalysisError::corrupt(
                &tokens_path,
                format!(
                    "{n_text} entries, expected {} tokens + {} separators",
                    header.token_count, header.doc_count
                ),
            ));
        }
        if n_text > 0 && text.as_slice()[n_text as usize - 1] != SEPARATOR {
            return Err(AnalysisError::corrupt(
                &tokens_path,
                "the last document lacks its separator",
            ));
        }
        let suffix_path = dir.join(index_files::SUFFIX);
        let suffixes = read_words::<u32>(&suffix_path, SUFFIX_MAGIC)?;
        if suffixes.as_slice().len() as u64 != header.token_count {
            return Err(AnalysisError::corrupt(
                &suffix_path,
                format!(
                    "{} suffixes, expected {}",
                    suffixes.as_slice().len(),
                    header.token_count
                ),
            ));
        }
        // A position outside the text would make queries panic; one linear scan rules it out.
        if let Some(bad) = suffixes.as_slice().iter().position(|&p| p as u64 >= n_text) {
            return Err(AnalysisError::corrupt(
                &suffix_path,
                format!("entry {bad} points past the end of the text"),
            ));
        }
        let unigram_path = dir.join(index_files::UNIGRAM);
        let unigram = Unigram::load(dir)?;
        check_total(&unigram, header.token_count, &unigram_path)?;
        Ok(Self::assemble(text, suffixes, unigram, header))
    }

    /// A sharded index: every shard opened and checked, the counts summed.
    fn open_shards(
        dir: &Path,
        header: IndexHeader,
        tokenizer_sha256: Option<&str>,
    ) -> Result<Self> {
        let header_path = dir.join(index_files::HEADER);
        let shards = header
            .shards
            .iter()
            .map(|s| NgramIndex::open(&dir.join(s), tokenizer_sha256))
            .collect::<Result<Vec<_>>>()?;
        let (tokens, docs) = shards.iter().fold((0, 0), |(t, d), s| {
            (t + s.header.token_count, d + s.header.doc_count)
        });
        if (tokens, docs) != (header.token_count, header.doc_count) {
            return Err(AnalysisError::corrupt(
                &header_path,
                format!(
                    "the shards hold {tokens} tokens in {docs} documents, index.json says {} in {}",
                    header.token_count, header.doc_count
                ),
            ));
        }
        let unigram = Unigram::load(dir)?;
        check_total(
            &unigram,
            header.token_count,
            &dir.join(index_files::UNIGRAM),
        )?;
        Ok(NgramIndex {
            text: Words::Owned(Vec::new()),
            suffixes: Words::Owned(Vec::new()),
            unigram,
            bucket: Vec::new(),
            samples: Vec::new(),
            top: Vec::new(),
            header,
            shards,
        })
    }

    fn assemble(
        text: Words<u32>,
        suffixes: Words<u32>,
        unigram: Unigram,
        header: IndexHeader,
    ) -> Self {
        let mut bucket = Vec::with_capacity(unigram.len() + 1);
        let mut acc = 0u64;
        bucket.push(0);
        for &c in unigram.counts() {
            acc += c;
            bucket.push(acc);
        }
        let samples = {
            use rayon::prelude::*;
            let (t, sa) = (text.as_slice(), suffixes.as_slice());
            (0..sa.len().div_ceil(SAMPLE))
                .into_par_iter()
                .with_min_len(1 << 12)
                .map(|j| {
                    let p = sa[j * SAMPLE] as usize;
                    // The text ends with a separator, where the key stops.
                    sample_key(t[p + 1..].iter().copied())
                })
                .collect::<Vec<u128>>()
        };
        let top = samples.iter().step_by(SAMPLE).copied().collect();
        NgramIndex {
            text,
            suffixes,
            unigram,
            bucket,
            samples,
            top,
            header,
            shards: Vec::new(),
        }
    }

    /// The header (`index.json`).
    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    /// The unigram table.
    pub fn unigram(&self) -> &Unigram {
        &self.unigram
    }

    /// Corpus tokens.
    pub fn token_count(&self) -> u64 {
        if !self.shards.is_empty() {
            return self.shards.iter().map(NgramIndex::token_count).sum();
        }
        self.suffixes.as_slice().len() as u64
    }

    /// How often `ngram` occurs inside a document. The empty n-gram occurs `token_count` times.
    pub fn count(&self, ngram: &[u32]) -> u64 {
        if !self.shards.is_empty() {
            // Shards cut at document boundaries, so no occurrence spans two.
            return self.shards.iter().map(|s| s.count(ngram)).sum();
        }
        match ngram.split_first() {
            None => self.token_count(),
            Some(_) => {
                let r = self.range(ngram);
                (r.end - r.start) as u64
            }
        }
    }

    /// Whether `ngram` occurs inside some document.
    pub fn contains(&self, ngram: &[u32]) -> bool {
        if !self.shards.is_empty() {
            return self.shards.iter().any(|s| s.contains(ngram));
        }
        let Some((&first, rest)) = ngram.split_first() else {
            return true;
        };
        let Some(b) = self.first_bucket(first) else {
            return false;
        };
        if rest.is_empty() {
            return !b.is_empty();
        }
        if rest.contains(&SEPARATOR) {
            return false;
        }
        let sa = self.suffixes.as_slice();
        // One lower-bound search suffices: the n-gram occurs iff the first suffix not smaller
        // than it starts with it.
        let (lo, hi) = if b.len() <= 2 * SAMPLE {
            (b.start, b.end)
        } else {
            let (q, mask) = Self::sample_query(rest);
            let (j0, j1) = (b.start.div_ceil(SAMPLE), b.end.div_ceil(SAMPLE));
            let a = self.first_sample(j0, j1, |k| k & mask < q);
            if a < j1 && self.samples[a] & mask == q {
                if rest.len() <= KEY_TOKENS {
                    // Sample `a` starts with the whole n-gram.
                    return true;
                }
                let z = self.first_sample(a, j1, |k| k & mask <= q);
                (
                    self.after_sample(a, j0, b.start),
                    if z < j1 { z * SAMPLE } else { b.end },
                )
            } else {
                // Sample `a` (if any) is larger: the lower bound lies within one sample block.
                (
                    self.after_sample(a, j0, b.start),
                    if a < j1 { a * SAMPLE } else { b.end },
                )
            }
        };
        let i = if hi - lo <= SAMPLE {
            // A short scan: its text reads are independent, so their cache misses overlap.
            (lo..hi)
                .find(|&i| self.cmp_suffix(sa[i] as usize + 1, rest) != Ordering::Less)
                .unwrap_or(hi)
        } else {
            lo + sa[lo..hi]
                .partition_point(|&p| self.cmp_suffix(p as usize + 1, rest) == Ordering::Less)
        };
        i < b.end && self.cmp_suffix(sa[i] as usize + 1, rest) == Ordering::Equal
    }

    /// The suffix-array range of suffixes starting with `ngram` (empty when it never occurs).
    fn range(&self, ngram: &[u32]) -> Range<usize> {
        let (&first, rest) = ngram.split_first().expect("non-empty n-gram");
        let Some(b) = self.first_bucket(first) else {
            return 0..0;
        };
        if rest.contains(&SEPARATOR) {
            return 0..0;
        }
        let (lo, hi) = if b.len() <= 2 * SAMPLE || rest.is_empty() {
            (b.start, b.end)
        } else {
            // Every suffix continuing with `rest` lies after the last sample smaller than it and
            // before the first sample larger than it.
            let (q, mask) = Self::sample_query(rest);
            let (j0, j1) = (b.start.div_ceil(SAMPLE), b.end.div_ceil(SAMPLE));
            let a = self.first_sample(j0, j1, |k| k & mask < q);
            let z = self.first_sample(a, j1, |k| k & mask <= q);
            (
                self.after_sample(a, j0, b.start),
                if z < j1 { z * SAMPLE } else { b.end },
            )
        };
        let sa = &self.suffixes.as_slice()[lo..hi];
        let l = sa.partition_point(|&p| self.cmp_suffix(p as usize + 1, rest) == Ordering::Less);
        let h = l + sa[l..]
            .partition_point(|&p| self.cmp_suffix(p as usize + 1, rest) == Ordering::Equal);
        lo + l..lo + h
    }

    /// The sample key of `rest` (the n-gram after its first token) and the mask that limits a
    /// comparison to the tokens `rest` has (up to [`KEY_TOKENS`]). A sample smaller than the key under
    /// the mask is a suffix smaller than the n-gram; a larger one, a larger suffix.
    #[inline]
    fn sample_query(rest: &[u32]) -> (u128, u128) {
        let len = rest.len().min(KEY_TOKENS);
        (
            sample_key(rest.iter().copied()),
            u128::MAX << (32 * (KEY_TOKENS - len)),
        )
    }

    /// The first suffix after sample `a - 1` (the bucket start when `a` is the bucket's first
    /// sample `j0`).
    #[inline]
    fn after_sample(&self, a: usize, j0: usize, start: usize) -> usize {
        if a == j0 {
            start
        } else {
            ((a - 1) * SAMPLE + 1).max(start)
        }
    }

    /// The first sample index in `j0..j1` where `smaller` is false (`smaller` holds on a prefix
    /// of the samples), or `j1`: a search over `top` (in cache), then over one block.
    #[inline]
    fn first_sample(&self, j0: usize, j1: usize, smaller: impl Fn(u128) -> bool) -> usize {
        let (t0, t1) = (j0.div_ceil(SAMPLE), j1.div_ceil(SAMPLE));
        let t = t0 + self.top[t0..t1].partition_point(|&k| smaller(k));
        // Samples up to top entry `t - 1` are smaller; top entry `t` (if any) is not.
        let lo = if t == t0 {
            j0
        } else {
            ((t - 1) * SAMPLE + 1).max(j0)
        };
        let hi = if t < t1 { t * SAMPLE } else { j1 };
        lo + self.samples[lo..hi]
            .iter()
            .take_while(|&&k| smaller(k))
            .count()
    }

    fn first_bucket(&self, t: u32) -> Option<Range<usize>> {
        let t = t as usize;
        if t + 1 >= self.bucket.len() {
            return None;
        }
        Some(self.bucket[t] as usize..self.bucket[t + 1] as usize)
    }

    /// Compares the text from `pos` with `pat`: `Equal` when the text starts with `pat`.
    /// The separator sorts below every id; `pat` holds no separator, so the scan stops at the
    /// end of the document and never leaves the text (which ends with a separator).
    #[inline]
    fn cmp_suffix(&self, pos: usize, pat: &[u32]) -> Ordering {
        let text = &self.text.as_slice()[pos..];
        for (&t, &p) in text.iter().zip(pat) {
            if t != p {
                return t.wrapping_add(1).cmp(&p.wrapping_add(1));
            }
        }
        if text.len() < pat.len() {
            Ordering::Less
        } else {
            Ordering::Equal
        }
    }

    /// For each start `i`, the length (at most `max_n`) of the longest n-gram starting at `i`
    /// that occurs in the corpus: the n-gram `tokens[i..i + n]` occurs iff `n <= result[i]`.
    /// Each start narrows one suffix-array range token by token, so this costs one pair of
    /// binary searches per matched token instead of one search per (start, n).
    pub fn match_lengths(&self, tokens: &[u32], max_n: usize) -> Vec<usize> {
        (0..tokens.len())
            .map(|i| {
                let end = (i + max_n).min(tokens.len());
                self.longest_prefix(&tokens[i..end])
            })
            .collect()
    }

    /// The length of the longest prefix of `tokens` that occurs in the corpus.
    pub fn longest_prefix(&self, tokens: &[u32]) -> usize {
        if !self.shards.is_empty() {
            return self
                .shards
                .iter()
                .map(|s| s.longest_prefix(tokens))
                .max()
                .unwrap_or(0);
        }
        let Some((&first, _)) = tokens.split_first() else {
            return 0;
        };
        let Some(b) = self.first_bucket(first) else {
            return 0;
        };
        if b.is_empty() {
            return 0;
        }
        let sa = self.suffixes.as_slice();
        let text = self.text.as_slice();
        let (mut lo, mut hi) = (b.start, b.end);
        for (depth, &t) in tokens.iter().enumerate().skip(1) {
            if t == SEPARATOR {
                return depth;
            }
            // Within [lo, hi) every suffix shares `depth` tokens; they are sorted by the next one.
            let key = t.wrapping_add(1);
            let next = |p: u32| text[p as usize + depth].wrapping_add(1);
            let range = &sa[lo..hi];
            let a = range.partition_point(|&p| next(p) < key);
            let z = a + range[a..].partition_point(|&p| next(p) == key);
            if a == z {
                return depth;
            }
            (lo, hi) = (lo + a, lo + z);
        }
        tokens.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_never_cross_documents() {
        let idx = NgramIndex::from_documents(&[vec![1, 2, 3], vec![3, 1, 2], vec![2, 3]]).unwrap();
        assert_eq!(idx.count(&[2, 3]), 2);
        assert_eq!(idx.count(&[1, 2]), 2);
        assert_eq!(idx.count(&[3, 3]), 0, "3 | 3 spans a document boundary");
        assert_eq!(idx.count(&[1, 2, 3]), 1);
        assert_eq!(idx.count(&[3]), 3);
        assert_eq!(idx.count(&[9]), 0);
        assert_eq!(idx.count(&[]), 8);
        assert!(idx.contains(&[3, 1, 2]) && !idx.contains(&[2, 3, 1]));
        assert_eq!(idx.longest_prefix(&[3, 1, 2, 3]), 3);
        assert_eq!(idx.match_lengths(&[1, 2, 3, 3], 5), vec![3, 2, 1, 1]);
    }

    #[test]
    fn an_index_sorted_in_pieces_answers_like_one_sorted_whole() {
        // Documents of a small alphabet (many repeats, long shared prefixes), sorted whole and
        // in pieces of 200 entries (three levels of cuts); ids scaled past u16 for the wide
        // path.
        for scale in [1, 20_000] {
            pieces_answer_like_whole(scale);
        }
    }

    fn pieces_answer_like_whole(scale: u32) {
        let mut x = 42u64;
        let mut next = move |k: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % k) as u32
        };
        let docs: Vec<Vec<u32>> = (0..300)
            .map(|_| (0..1 + next(30)).map(|_| next(6) * scale).collect())
            .collect();
        let vocab = 6 * scale;
        let built = |first: usize| {
            let mut b = IndexBuilder::new();
            for d in &docs {
                b.push_document(d, Path::new("<test>")).unwrap();
            }
            let header = IndexHeader {
                format_version: INDEX_FORMAT_VERSION,
                tokenizer_sha256: None,
                tokenizer: None,
                vocab_size: vocab,
                token_count: b.token_count(),
                doc_count: 300,
                file_bytes: BTreeMap::new(),
                sources: Vec::new(),
                doc_split: "test".into(),
                tool_version: "test".into(),
                shards: Vec::new(),
            };
            let pieces = crate::suffix_order::Pieces {
                first,
                deeper: first,
            };
            b.finish_in_pieces(vocab, pieces).into_index(header)
        };
        let (whole, pieces) = (built(usize::MAX / 2), built(200));
        let brute = |q: &[u32]| -> u64 {
            docs.iter()
                .map(|d| d.windows(q.len()).filter(|w| *w == q).count() as u64)
                .sum()
        };
        for _ in 0..2000 {
            let q: Vec<u32> = (0..1 + next(5)).map(|_| next(6) * scale).collect();
            assert_eq!(pieces.count(&q), brute(&q), "{q:?}");
            assert_eq!(pieces.count(&q), whole.count(&q), "{q:?}");
            assert_eq!(pieces.contains(&q), whole.contains(&q), "{q:?}");
            assert_eq!(pieces.match_lengths(&q, 5), whole.match_lengths(&q, 5));
        }
    }
}
