use std::path::PathBuf;

/// Everything that can go wrong building a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A record, metrics or manifest file could not be read.
    #[error(transparent)]
    Records(#[from] cp_records::Error),
    /// An input folder is not what the report expects (no metrics or curves, unknown kind).
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// The options contradict each other or the inputs (e.g. labels count, an unknown prompt).
    #[error("{0}")]
    Options(String),
    /// plotters failed to draw a figure.
    #[error("figure `{figure}`: drawing failed: {message}")]
    Draw { figure: String, message: String },
    /// The SVG plotters produced could not be parsed back (a bug in the report crate).
    #[error("figure `{figure}`: svg: {message}")]
    Svg { figure: String, message: String },
    /// The PDF or PNG of a figure could not be produced.
    #[error("figure `{figure}`: {format}: {message}")]
    Convert {
        figure: String,
        format: &'static str,
        message: String,
    },
    /// A file of the report could not be written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            source,
        }
    }
}
