use std::path::PathBuf;

/// Everything that can go wrong reading prompts, tokenizers, model folders or chat templates.
///
/// Every message is lower-case and names the file (and, where there is one, the line
/// and key) at fault, so the CLI can print it as is.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (or one line of a JSON Lines file) is not valid JSON.
    #[error("{path}{}: invalid json: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Json {
        path: PathBuf,
        /// 1-based line, when the file is read line by line or the parser knows it.
        line: Option<usize>,
        message: String,
    },
    /// One record of a prompt file is wrong: a missing key, a value of the wrong type,
    /// a record of another format than the rest of the file, a duplicate id.
    #[error("{path}:{line}: {message}")]
    Prompt {
        path: PathBuf,
        /// 1-based line of the record (its first line in a JSON array file).
        line: usize,
        message: String,
    },
    /// A prompt file holds no prompt at all.
    #[error("{path}: no prompts in file")]
    NoPrompts { path: PathBuf },
    /// A prompt file's format could not be recognised from its extension and first record.
    #[error("{path}: {message}")]
    UnknownFormat { path: PathBuf, message: String },
    /// The tokenizers library could not load a `tokenizer.json`.
    #[error("{path}: cannot load tokenizer: {message}")]
    TokenizerLoad { path: PathBuf, message: String },
    /// The tokenizer failed to encode or decode (for example a word-level vocabulary
    /// without an unknown token meeting an unknown word).
    #[error("{path}: {message}")]
    Tokenize { path: PathBuf, message: String },
    /// A key of `config.json`, `generation_config.json` or `tokenizer_config.json` holds
    /// a value of the wrong type, or names a token the tokenizer does not know.
    #[error("{path}: key `{key}`: {message}")]
    Config {
        path: PathBuf,
        key: String,
        message: String,
    },
    /// Neither the model's configuration nor the tokenizer names a mask token.
    #[error("{path}: no mask token: {tried}; pass a tokenizer that has one or add `mask_token_id` to config.json")]
    NoMaskToken {
        /// The model folder (or tokenizer file) that was searched.
        path: PathBuf,
        /// What was looked for, in order.
        tried: String,
    },
    /// A chat template has a syntax error or failed while rendering.
    #[error("{origin}: chat template{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Template {
        /// Where the template came from (`tokenizer_config.json`, a file path).
        origin: String,
        line: Option<usize>,
        message: String,
    },
    /// A chat template called `raise_exception(message)`, as templates do to reject
    /// conversations they cannot format (for example a system turn they do not support).
    #[error("{origin}: chat template raised an exception: {message}")]
    TemplateRaised { origin: String, message: String },
    /// A command-line value (prompt format, template choice) is not one of the accepted ones.
    #[error("invalid {what} `{value}`: expected {expected}")]
    Parse {
        what: &'static str,
        value: String,
        expected: &'static str,
    },
}

impl TextError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TextError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn prompt(
        path: impl Into<PathBuf>,
        line: usize,
        message: impl Into<String>,
    ) -> Self {
        TextError::Prompt {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn config(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        TextError::Config {
            path: path.into(),
            key: key.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_key() {
        let json = |line| TextError::Json {
            path: "p.jsonl".into(),
            line,
            message: "eof".into(),
        };
        assert_eq!(json(Some(3)).to_string(), "p.jsonl:3: invalid json: eof");
        assert_eq!(json(None).to_string(), "p.jsonl: invalid json: eof");
        assert_eq!(
            TextError::prompt("p.jsonl", 7, "missing key `prompt`").to_string(),
            "p.jsonl:7: missing key `prompt`"
        );
        assert_eq!(
            TextError::config("config.json", "eos_token_id", "bad").to_string(),
            "config.json: key `eos_token_id`: bad"
        );
        let template = |line| TextError::Template {
            origin: "t.jinja".into(),
            line,
            message: "syntax error".into(),
        };
        assert_eq!(
            template(Some(2)).to_string(),
            "t.jinja: chat template line 2: syntax error"
        );
        assert_eq!(
            template(None).to_string(),
            "t.jinja: chat template: syntax error"
        );
    }
}
