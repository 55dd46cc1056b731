use std::path::PathBuf;

/// Everything that can go wrong loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// A file or folder could not be read.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` (or another config) is malformed or lacks a key.
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// `model_type` names no supported architecture.
    #[error("{path}: unknown model_type `{model_type}`; supported: {supported}")]
    UnknownArchitecture {
        path: PathBuf,
        model_type: String,
        supported: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("{file}: missing tensor `{name}`")]
    MissingTensor { file: PathBuf, name: String },
    /// A tensor has another shape than the config implies.
    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    TensorShape {
        file: PathBuf,
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
    /// The model would not fit in the memory available.
    #[error("{0}")]
    OutOfMemory(String),
    /// A weight tensor is stored in a dtype that is not floating point.
    #[error(
        "{file}: tensor `{name}` has dtype {dtype}; model weights must be F32, BF16, F16 or F64"
    )]
    TensorDtype {
        file: PathBuf,
        name: String,
        dtype: &'static str,
    },
    /// A checkpoint's tensor names are not the architecture's: both lists.
    #[error("{file}: {message}")]
    TensorSet { file: PathBuf, message: String },
    /// A safetensors file is malformed.
    #[error("{path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A request the model cannot serve (sequence too long, top-k too large, bad option).
    #[error("{0}")]
    Input(String),
    /// Tokenizer, template or prompt-file error.
    #[error(transparent)]
    Text(#[from] cp_text::TextError),
    /// Reading or writing records failed.
    #[error(transparent)]
    Records(#[from] cp_records::Error),
    /// libtorch raised an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
