//! Reference-corpus n-gram index and the frequency-collapse, marginal-trap and information-loss
//! metrics.
//! Pure Rust: this crate never links libtorch.
//!
//! - [`NgramIndex`]: a suffix array over a tokenized corpus (built by [`build_index`] or
//!   [`IndexBuilder`], memory-mapped by [`NgramIndex::open`]); any n-gram's count is a binary
//!   search. [`Unigram`] reads just its unigram table (the probe uses it for KL to unigram).
//! - [`analyze_probe`]: frequency-collapse metrics and curves from probe records.
//! - [`analyze_decode`]: marginal-trap metrics and curves from decode generations.
//! - [`analyze_corrupt`]: information-loss metrics and curves from corrupt records (by ratio,
//!   frequency decile and distance to the nearest clean token).
//! - [`analyze_folders`] / [`write_analysis`]: the `collapse-probe analyze` pipeline.
//!
//! Metric definitions live in `METRICS.md` next to this crate's `Cargo.toml`.
//!
//! ```
//! use cp_analysis::NgramIndex;
//! let index = NgramIndex::from_documents(&[vec![1, 2, 3], vec![2, 3]])?;
//! assert_eq!(index.count(&[2, 3]), 2);
//! assert_eq!(index.count(&[3, 2]), 0); // never across a document boundary
//! # Ok::<(), cp_analysis::AnalysisError>(())
//! ```

mod agg;
mod analyze;
mod collapse;
mod corpus;
mod corrupt;
mod error;
mod hint;
mod index;
mod memory;
mod merge;
mod sais;
mod stats;
mod store;
mod suffix_order;
mod sweep;
mod tokens;
mod trap;
mod unigram;

pub use crate::analyze::{
    analyze_folders, detect, detect_all, read_probe_columns, recorded_end_ids, write_analysis,
    AnalysisOutput, AnalyzeSettings, EndIdsUsed, RecordsFolder, RecordsKind,
};
pub use crate::collapse::{analyze_probe, bands, onset, Analysis, CollapseSettings, ProbeColumns};
pub use crate::corpus::{
    build_index, build_index_from_tokens, read_documents, BuildProgress, BuildSettings, DocSplit,
};
pub use crate::corrupt::{analyze_corrupt, DecileBoundaries, DECILES};
pub use crate::error::{AnalysisError, Result};
pub use crate::index::{
    index_files, BuiltIndex, IndexBuilder, IndexHeader, NgramIndex, INDEX_FORMAT_VERSION, SEPARATOR,
};
pub use crate::merge::merge_indexes;
pub use crate::sais::suffix_array;
pub use crate::stats::{entropy_nats, mean, quantile, Bootstrap};
pub use crate::sweep::{combine_sweep, SweptValue};
pub use crate::tokens::{read_token_documents, TokenDocuments, TokenSettings, TokenWidth};
pub use crate::trap::{analysed_tokens, analyze_decode, ngram_counts, TrapSettings};
pub use crate::unigram::{FrequencyRanks, Unigram, UNIGRAM_FILE};

/// Sets the number of threads used for tokenizing corpora and computing metrics
/// (default: one per core). Only the first call has an effect.
pub fn set_threads(n: usize) {
    // Building the global pool fails only when it already exists; the first setting wins.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n.max(1))
        .build_global();
}
