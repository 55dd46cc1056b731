use std::path::PathBuf;

/// Everything that can go wrong reading or writing collapse-probe files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Polars failed to encode or decode a Parquet file.
    #[error("{path}: parquet: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: polars::error::PolarsError,
    },
    /// A JSON or JSON Lines file is malformed.
    #[error("{path}{}: {source}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Json {
        path: PathBuf,
        line: Option<usize>,
        #[source]
        source: serde_json::Error,
    },
    /// A table lacks a column its schema requires, or stores it with another type.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    /// A line (or Parquet row) of a trajectories file breaks the format.
    #[error("{path}: {at}: {}{message}", field.as_ref().map(|f| format!("field `{f}`: ")).unwrap_or_default())]
    Trajectory {
        path: PathBuf,
        /// `line N` or `row N` (1-based).
        at: String,
        field: Option<String>,
        message: String,
    },
    /// A folder that should hold a run holds something else.
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
