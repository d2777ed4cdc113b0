//! The error of GGUF conversions, both ways.

use std::fmt;
use std::path::PathBuf;

/// Why a GGUF conversion failed. The other conversions report
/// [`safeweights_pickle::Error`]; this enum wraps the two format crates a
/// GGUF conversion reads and writes through.
#[non_exhaustive]
#[derive(Debug)]
pub enum GgufError {
    /// The GGUF input is malformed, or a tensor cannot be encoded or
    /// decoded as asked.
    Gguf {
        /// The file.
        path: PathBuf,
        /// The tensor, when one is concerned.
        tensor: Option<String>,
        /// The reader's or codec's error.
        source: safeweights_gguf::Error,
    },
    /// Reading the safetensors input or writing the safetensors output failed.
    Safetensors {
        /// The core library's error (it names its file).
        source: safeweights::Error,
    },
    /// An I/O failure outside both format crates.
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The output already exists and overwriting was not asked for.
    OutputExists {
        /// The existing path.
        path: PathBuf,
    },
    /// The request cannot be carried out as given (an option that does not
    /// apply, a tensor the chosen mapping does not know).
    Usage {
        /// What is wrong.
        message: String,
    },
    /// The input is readable but not what the conversion needs (a
    /// `config.json` without a required field, a quantized layout record
    /// that disagrees with the tensors).
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl GgufError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        GgufError::Usage {
            message: message.into(),
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        GgufError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn gguf(path: impl Into<PathBuf>, source: safeweights_gguf::Error) -> Self {
        GgufError::Gguf {
            path: path.into(),
            tensor: None,
            source,
        }
    }

    pub(crate) fn in_tensor(self, name: &str) -> Self {
        match self {
            GgufError::Gguf { path, source, .. } => GgufError::Gguf {
                path,
                tensor: Some(name.to_owned()),
                source,
            },
            other => other,
        }
    }

    /// True when the input itself is the problem (malformed or not
    /// convertible as it is); false for I/O, usage and existing outputs.
    /// The command line maps true to exit status 1 and false to 2.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            GgufError::Gguf { source, .. } => !matches!(source, safeweights_gguf::Error::Io { .. }),
            GgufError::Safetensors { source } => source.is_invalid_data(),
            GgufError::Invalid { .. } => true,
            GgufError::Io { .. } | GgufError::OutputExists { .. } | GgufError::Usage { .. } => {
                false
            }
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::Gguf {
                path,
                tensor: Some(tensor),
                source,
            } => write!(f, "{}: tensor {tensor:?}: {source}", path.display()),
            GgufError::Gguf { path, source, .. } => write!(f, "{}: {source}", path.display()),
            GgufError::Safetensors { source } => write!(f, "{source}"),
            GgufError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            GgufError::OutputExists { path } => write!(
                f,
                "{} already exists; pass --force to replace it",
                path.display()
            ),
            GgufError::Usage { message } => f.write_str(message),
            GgufError::Invalid { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for GgufError {}

impl From<safeweights::Error> for GgufError {
    fn from(source: safeweights::Error) -> Self {
        GgufError::Safetensors { source }
    }
}
