//! The crate's single error type.
//!
//! Every message says where the problem is (file, archive member, byte
//! offset) and, where there is one, what the user can do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, scanning or converting.
#[non_exhaustive]
#[derive(Debug)]
pub enum Error {
    /// The file could not be opened, mapped, read or written.
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A pickle opcode outside the allow-list (it could run code, or is
    /// not needed to rebuild tensors).
    RefusedOpcode {
        /// Opcode name as in Python's `pickletools`.
        name: &'static str,
        /// The opcode byte.
        byte: u8,
        /// Byte offset of the opcode inside the pickle.
        offset: u64,
    },
    /// A global outside the allow-list.
    RefusedGlobal {
        /// Module part, e.g. `os`.
        module: String,
        /// Attribute part, e.g. `system`.
        name: String,
        /// Byte offset of the GLOBAL / STACK_GLOBAL opcode.
        offset: u64,
    },
    /// The pickle stream is structurally invalid.
    Pickle {
        /// Byte offset of the failing opcode.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// A configured resource limit was hit (expansion or decompression bomb,
    /// or simply a larger file than the limits allow).
    LimitExceeded {
        /// Which limit, as named in [`crate::Limits`].
        limit: &'static str,
        /// The configured maximum.
        max: u64,
        /// Byte offset where it was hit (0 when not meaningful).
        offset: u64,
    },
    /// The zip container is malformed or unsafe.
    Zip {
        /// What is wrong.
        message: String,
    },
    /// The zip archive can be read as different members by different
    /// readers (torch's, Python's `zipfile`, a streaming reader): whatever
    /// we would read, another loader could run something else. Dangerous.
    AmbiguousArchive {
        /// How the readers could disagree.
        message: String,
    },
    /// The checkpoint's structure is not a plain tensor checkpoint.
    Checkpoint {
        /// What is wrong.
        message: String,
    },
    /// The `.npy` / `.npz` file is malformed or unsupported.
    Numpy {
        /// What is wrong.
        message: String,
    },
    /// The safetensors layer failed: writing the output, or reading an
    /// input index file.
    Safetensors {
        /// The core library's error.
        source: safeweights::Error,
    },
    /// A sharded checkpoint's index and its shard files disagree, or a
    /// shard is missing.
    Index {
        /// What is wrong.
        message: String,
    },
    /// The output already exists and overwriting was not asked for.
    OutputExists {
        /// The existing path.
        path: PathBuf,
    },
    /// The request cannot be carried out as given (wrong input kind,
    /// unsupported option value, output that would replace the input).
    Usage {
        /// What is wrong.
        message: String,
    },
    /// A written output does not match its input.
    Verify {
        /// The output file concerned.
        path: PathBuf,
        /// The first difference found.
        message: String,
    },
    /// An error with the location (file, member) it happened in.
    In {
        /// Where: a path, or `path: member`.
        location: String,
        /// The error itself.
        source: Box<Error>,
    },
}

impl Error {
    /// Wraps the error with a location such as a file path or zip member.
    pub fn within(self, location: impl Into<String>) -> Error {
        Error::In {
            location: location.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, skipping any location wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::In { source, .. } => source.root(),
            other => other,
        }
    }

    /// True when the input itself is the problem: it asks for code to run
    /// (refused opcode or global), breaks a resource limit, is malformed or
    /// is not a plain weights file (TorchScript, an inconsistent sharded
    /// index). False for I/O failures, usage mistakes (existing output,
    /// unsupported option) and a failed verification. The command line
    /// maps true to exit status 1 and false to 2.
    pub fn is_unsafe_or_invalid(&self) -> bool {
        match self.root() {
            Error::RefusedOpcode { .. }
            | Error::RefusedGlobal { .. }
            | Error::Pickle { .. }
            | Error::LimitExceeded { .. }
            | Error::Zip { .. }
            | Error::AmbiguousArchive { .. }
            | Error::Checkpoint { .. }
            | Error::Numpy { .. }
            | Error::Index { .. } => true,
            Error::Safetensors { source } => source.is_invalid_data(),
            Error::Io { .. } | Error::OutputExists { .. } | Error::Usage { .. } => false,
            Error::Verify { .. } | Error::In { .. } => false,
        }
    }

    /// True when the input was refused because loading it could run code
    /// (a refused pickle opcode or global, or an ambiguous archive whose
    /// other reading could hold anything).
    pub fn is_unsafe(&self) -> bool {
        matches!(
            self.root(),
            Error::RefusedOpcode { .. }
                | Error::RefusedGlobal { .. }
                | Error::AmbiguousArchive { .. }
        )
    }

    pub(crate) fn pickle(offset: usize, message: impl Into<String>) -> Error {
        Error::Pickle {
            offset: offset as u64,
            message: message.into(),
        }
    }

    pub(crate) fn limit(limit: &'static str, max: u64, offset: usize) -> Error {
        Error::LimitExceeded {
            limit,
            max,
            offset: offset as u64,
        }
    }

    pub(crate) fn zip(message: impl Into<String>) -> Error {
        Error::Zip {
            message: message.into(),
        }
    }

    pub(crate) fn ambiguous(message: impl Into<String>) -> Error {
        Error::AmbiguousArchive {
            message: message.into(),
        }
    }

    /// A checkpoint whose structure is not a plain tensor checkpoint.
    pub fn checkpoint(message: impl Into<String>) -> Error {
        Error::Checkpoint {
            message: message.into(),
        }
    }

    /// A malformed or unsupported `.npy` / `.npz` file.
    pub fn numpy(message: impl Into<String>) -> Error {
        Error::Numpy {
            message: message.into(),
        }
    }

    /// A sharded index that disagrees with its shards.
    pub fn index(message: impl Into<String>) -> Error {
        Error::Index {
            message: message.into(),
        }
    }

    /// A request that cannot be carried out as given.
    pub fn usage(message: impl Into<String>) -> Error {
        Error::Usage {
            message: message.into(),
        }
    }

    /// An I/O failure on `path`.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

const UNTRUSTED_HINT: &str =
    "plain weight files never need it; run `safeweights scan` on the file \
     and do not load it with pickle or torch.load unless you trust its source";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Error::RefusedOpcode { name, byte, offset } => write!(
                f,
                "refused pickle opcode {name} (0x{byte:02x}) at byte offset {offset}: \
                 {UNTRUSTED_HINT}"
            ),
            Error::RefusedGlobal {
                module,
                name,
                offset,
            } => write!(
                f,
                "refused pickle global `{module}.{name}` at byte offset {offset}: it is not \
                 on the allow-list of tensor-rebuilding functions; {UNTRUSTED_HINT}"
            ),
            Error::Pickle { offset, message } => {
                write!(
                    f,
                    "invalid pickle at byte offset {offset}: {message} (the file is truncated \
                     or corrupt)"
                )
            }
            Error::LimitExceeded { limit, max, offset } => write!(
                f,
                "limit `{limit}` ({max}) exceeded at byte offset {offset}: the file is either a \
                 resource-exhaustion bomb or larger than expected; raise the limit in `Limits` \
                 only if you trust the file"
            ),
            Error::Zip { message } => write!(f, "invalid or unsafe zip archive: {message}"),
            Error::AmbiguousArchive { message } => write!(
                f,
                "ambiguous zip archive, refused: {message}; other tools could load different \
                 content from this file than what safeweights would read, so it may hide a \
                 payload; do not load it with torch.load or np.load, and re-create it from a \
                 trusted source"
            ),
            Error::Checkpoint { message } => write!(f, "unsupported checkpoint: {message}"),
            Error::Numpy { message } => write!(f, "invalid or unsupported numpy file: {message}"),
            Error::Safetensors { source } => write!(f, "{source}"),
            Error::Index { message } => write!(f, "inconsistent sharded checkpoint: {message}"),
            Error::OutputExists { path } => write!(
                f,
                "{} already exists; nothing was written (allow overwriting with `force`, \
                 `--force` on the command line)",
                path.display()
            ),
            Error::Usage { message } => f.write_str(message),
            Error::Verify { path, message } => write!(
                f,
                "{}: verification failed: {message}; the output does not match the input, \
                 do not use it",
                path.display()
            ),
            Error::In { location, source } => write!(f, "{location}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::In { source, .. } => Some(source.as_ref()),
            Error::Safetensors { source } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_offset_and_location() {
        let e = Error::RefusedGlobal {
            module: "os".into(),
            name: "system".into(),
            offset: 7,
        }
        .within("model.pt: archive/data.pkl");
        let text = e.to_string();
        assert!(text.starts_with("model.pt: archive/data.pkl: "));
        assert!(text.contains("`os.system`"));
        assert!(text.contains("offset 7"));
        assert!(matches!(e.root(), Error::RefusedGlobal { .. }));
        assert!(e.is_unsafe() && e.is_unsafe_or_invalid());
    }

    #[test]
    fn classification_separates_bad_input_from_io_and_usage() {
        let io = Error::io("x", io::Error::other("disk full")).within("x");
        assert!(!io.is_unsafe_or_invalid());
        assert!(!Error::usage("bad dtype").is_unsafe_or_invalid());
        assert!(!Error::OutputExists { path: "o".into() }.is_unsafe_or_invalid());
        assert!(Error::checkpoint("TorchScript").is_unsafe_or_invalid());
        assert!(!Error::checkpoint("TorchScript").is_unsafe());
        assert!(Error::index("missing shard").is_unsafe_or_invalid());
        let core = Error::Safetensors {
            source: safeweights::Error::Shard {
                reason: "bad".into(),
            },
        };
        assert!(core.is_unsafe_or_invalid());
        let core_io = Error::Safetensors {
            source: safeweights::Error::Io(io::Error::other("full")),
        };
        assert!(!core_io.is_unsafe_or_invalid());
    }
}
