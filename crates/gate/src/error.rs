use std::path::PathBuf;

/// Everything that can go wrong loading a spec or a baseline, or comparing a run with a baseline.
///
/// Every variant is an input error: the CLI maps all of them to exit code 2.
/// A regression is not an error; it is a [`crate::Verdict`].
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A TOML file does not parse or does not fit its schema (unknown key, missing key, wrong type).
    #[error("{path}:{line}:{column}: {message}{}", context_suffix(.context))]
    Toml {
        path: PathBuf,
        /// 1-based line of the offending text (0 when toml gave no position).
        line: usize,
        /// 1-based column.
        column: usize,
        message: String,
        /// The offending line of the file, trimmed, so that the message names the key.
        context: String,
    },
    /// A value parses but makes no sense (a negative tolerance, a duplicate name, two tolerances at once).
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        /// Dotted key path, e.g. `metric[2].tolerance` or `sweep.values[1]`.
        key: String,
        message: String,
    },
    /// The run's metrics file could not be read.
    #[error(transparent)]
    Records(#[from] cp_records::Error),
    /// No metrics file was found at or under the `--run` path.
    #[error("{path}: no metrics file here (looked for {})", .tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoMetrics { path: PathBuf, tried: Vec<PathBuf> },
    /// Metrics named by the baseline are absent from the run.
    #[error("{run}: {} named by baseline {baseline} missing from the run: {}", if .names.len() == 1 { "metric" } else { "metrics" }, .names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))]
    MissingMetrics {
        run: PathBuf,
        baseline: PathBuf,
        names: Vec<String>,
    },
    /// A tolerance in standard errors, but neither the baseline nor the run gives one for the metric.
    #[error("{baseline}: metric `{metric}` has a tolerance in standard errors, but neither the baseline nor the run {run} gives a standard error for it")]
    NoStderr {
        baseline: PathBuf,
        run: PathBuf,
        metric: String,
    },
}

fn context_suffix(context: &str) -> String {
    if context.is_empty() {
        String::new()
    } else {
        format!(" (in `{context}`)")
    }
}

/// Turns a toml error into [`GateError::Toml`] with a 1-based line and column and the offending line.
pub(crate) fn toml_error(path: &std::path::Path, text: &str, err: &toml::de::Error) -> GateError {
    let (line, column, context) = match err.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let line = text[..line_start].matches('\n').count() + 1;
            let column = text[line_start..start].chars().count() + 1;
            (line, column, text[line_start..line_end].trim().to_owned())
        }
        None => (0, 0, String::new()),
    };
    GateError::Toml {
        path: path.to_owned(),
        line,
        column,
        message: err.message().trim().to_owned(),
        context,
    }
}

pub(crate) fn read_text(path: &std::path::Path) -> Result<String, GateError> {
    std::fs::read_to_string(path).map_err(|source| GateError::Io {
        path: path.to_owned(),
        source,
    })
}
