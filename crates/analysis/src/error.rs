use std::path::PathBuf;

/// Everything that can go wrong building or reading an index, or analysing records.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// A file or folder could not be read, written or mapped.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing a record table, JSON file or output folder failed.
    #[error(transparent)]
    Records(#[from] cp_records::Error),
    /// Polars failed while reading a table or aggregating curves.
    #[error("{context}: {source}")]
    Polars {
        context: String,
        #[source]
        source: polars::error::PolarsError,
    },
    /// An index file is truncated, has a bad magic number or disagrees with `index.json`.
    #[error("{path}: corrupt index file: {message}")]
    CorruptIndex { path: PathBuf, message: String },
    /// The index was built with another tokenizer than the one given.
    #[error("{path}: index was built with tokenizer sha256 {found}, but the given tokenizer has sha256 {expected}")]
    TokenizerMismatch {
        path: PathBuf,
        expected: String,
        found: String,
    },
    /// A corpus file is malformed (bad JSON line, missing text field, wrong column type).
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Corpus {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// The tokenizer callback failed on a document.
    #[error("{path}: document {doc}: tokenizer failed: {message}")]
    Tokenize {
        path: PathBuf,
        doc: usize,
        message: String,
    },
    /// The corpus has more tokens than 31-bit suffix positions can address.
    #[error("corpus too large: {tokens} tokens plus separators exceed the limit of {limit} (31-bit suffix positions)")]
    CorpusTooLarge { tokens: u64, limit: u64 },
    /// A token id cannot be stored (it collides with the document separator).
    #[error("{path}: token id {id} is reserved for the document separator")]
    ReservedTokenId { path: PathBuf, id: u32 },
    /// A records folder holds neither probe, decode nor corrupt records, or holds inconsistent rows.
    #[error("{path}: {message}")]
    BadRecords { path: PathBuf, message: String },
    /// A setting is out of range.
    #[error("invalid setting `{name}`: {message}")]
    Setting { name: &'static str, message: String },
}

impl AnalysisError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AnalysisError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        AnalysisError::CorruptIndex {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = AnalysisError> = std::result::Result<T, E>;
