//! The one error type of the library, and its result alias.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::format::sniff::FileKind;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when reading, validating, slicing or writing
/// safetensors data. Header errors name the tensor they concern.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error from the operating system.
    Io(io::Error),
    /// An error about a specific file; `source` says what went wrong.
    File {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: Box<Error>,
    },
    /// The file is shorter than the 8-byte header length prefix.
    FileTooSmall {
        /// Length of the file in bytes.
        len: u64,
    },
    /// The file is another format altogether, as [`sniff`](crate::format::sniff::sniff)
    /// recognised it (never `Safetensors` or `Unknown`).
    ForeignFormat(FileKind),
    /// The declared header length is over the configured limit.
    HeaderTooLarge {
        /// Declared header length.
        len: u64,
        /// The limit in force.
        limit: u64,
    },
    /// The declared header length runs past the end of the file.
    HeaderBeyondFile {
        /// Declared header length.
        len: u64,
        /// Bytes available after the 8-byte prefix.
        available: u64,
    },
    /// The header is not valid UTF-8.
    HeaderNotUtf8 {
        /// Offset of the first invalid byte within the header.
        offset: usize,
    },
    /// The header is not valid JSON.
    InvalidJson {
        /// Offset within the header where parsing failed.
        offset: usize,
        /// What the parser expected.
        reason: String,
    },
    /// The header JSON is valid but is not an object.
    HeaderNotObject,
    /// Something other than whitespace follows the header object.
    TrailingCharacters {
        /// Offset of the first unexpected byte within the header.
        offset: usize,
    },
    /// The same key appears twice in the header or in one of its objects.
    DuplicateKey {
        /// The object containing the key (`"header"` for the top level).
        within: String,
        /// The repeated key.
        key: String,
    },
    /// Two tensors given to a writer share a name (the caller's mistake,
    /// unlike [`Error::DuplicateKey`] in a file's header).
    DuplicateTensorName {
        /// The repeated name.
        name: String,
    },
    /// A tensor entry lacks a required field.
    MissingField {
        /// Tensor name.
        tensor: String,
        /// Missing field name.
        field: &'static str,
    },
    /// A tensor entry has a field this format does not define.
    UnknownField {
        /// Tensor name.
        tensor: String,
        /// The unexpected field.
        field: String,
    },
    /// A tensor entry field has the wrong JSON type or arity.
    InvalidField {
        /// Tensor name.
        tensor: String,
        /// Field name.
        field: &'static str,
        /// What was wrong with it.
        reason: String,
    },
    /// The dtype string is not one of the format's dtypes.
    UnknownDtype {
        /// Tensor name.
        tensor: String,
        /// The dtype as written.
        dtype: String,
    },
    /// A dimension is negative, fractional or out of range.
    InvalidShape {
        /// Tensor name.
        tensor: String,
        /// What was wrong.
        reason: String,
    },
    /// The element count times the dtype size overflows.
    ShapeOverflow {
        /// Tensor name.
        tensor: String,
    },
    /// A sub-byte dtype tensor does not fill a whole number of bytes.
    PartialByte {
        /// Tensor name.
        tensor: String,
        /// Total number of bits the tensor would take.
        bits: u128,
    },
    /// `data_offsets` has its end before its begin.
    EndBeforeBegin {
        /// Tensor name.
        tensor: String,
        /// Begin offset.
        begin: u64,
        /// End offset.
        end: u64,
    },
    /// The byte range does not match shape times dtype size.
    LengthMismatch {
        /// Tensor name.
        tensor: String,
        /// Byte length implied by shape and dtype.
        expected: u64,
        /// Byte length given by `data_offsets`.
        actual: u64,
    },
    /// Two tensors share bytes.
    Overlap {
        /// Tensor name.
        tensor: String,
        /// The tensor it overlaps with.
        other: String,
    },
    /// Bytes between two tensors (or before the first) belong to no tensor.
    Hole {
        /// The tensor after the gap.
        tensor: String,
        /// Where the gap starts in the data section.
        expected_begin: u64,
        /// Where the tensor actually begins.
        begin: u64,
    },
    /// The data section is not exactly as long as the tensors need.
    DataLengthMismatch {
        /// Bytes the header describes.
        expected: u64,
        /// Bytes present after the header.
        actual: u64,
    },
    /// `__metadata__` is not an object of string values.
    InvalidMetadata {
        /// What was wrong.
        reason: String,
    },
    /// No tensor has this name.
    TensorNotFound {
        /// The name that was asked for.
        name: String,
    },
    /// A slice request does not fit the tensor.
    InvalidSlice {
        /// Tensor name.
        tensor: String,
        /// What was wrong.
        reason: String,
    },
    /// A tensor given to a writer is inconsistent or incomplete.
    InvalidTensor {
        /// Tensor name.
        tensor: String,
        /// What was wrong.
        reason: String,
    },
    /// A directory given as a checkpoint does not hold exactly one: no or
    /// several `*.safetensors.index.json` files, or, without an index, no
    /// or several `*.safetensors` files.
    CheckpointDirectory {
        /// How many index files the directory holds.
        index_files: usize,
        /// How many safetensors files the directory holds.
        safetensors_files: usize,
    },
    /// A worker thread panicked: a bug in safeweights, reported as an
    /// internal error instead of unwinding into the caller.
    WorkerPanicked {
        /// The panic's message.
        message: String,
    },
    /// A sharded checkpoint's index and shards disagree.
    Shard {
        /// What was wrong.
        reason: String,
    },
    /// Reading or writing an object over the network (`s3://`, `http(s)://`)
    /// failed; `kind` says how, so callers never parse the message.
    Remote {
        /// What went wrong.
        kind: RemoteErrorKind,
        /// The server's or the client's own words, for people.
        message: String,
    },
    /// A distributed checkpoint (`safeweights.dcp`) that cannot be used;
    /// `detail` names the file and the tensors concerned.
    DistributedCheckpoint {
        /// What is wrong.
        problem: DcpProblem,
        /// The message, with the file and tensors.
        detail: String,
    },
    /// A buffer passed by the caller has the wrong size.
    BufferSize {
        /// Tensor name.
        tensor: String,
        /// Bytes required.
        expected: usize,
        /// Bytes provided.
        actual: usize,
    },
}

/// What is wrong with a distributed checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DcpProblem {
    /// No global metadata: the save never finished.
    Incomplete,
    /// A shard file named by the metadata does not exist.
    MissingShard,
    /// A shard file is shorter than when it was saved.
    Truncated,
    /// A shard file belongs to another save (save id, rank or rank count).
    Mismatch,
    /// A tensor's bytes differ from the digest stored when saving.
    ChecksumMismatch,
    /// Torch's pickle-based DCP format, which this reader does not run.
    Pickled,
    /// The metadata is malformed or disagrees with the shards.
    Invalid,
}

/// How a remote read or write failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteErrorKind {
    /// The object or bucket does not exist (HTTP 404). Not retried.
    NotFound,
    /// The credentials are not allowed to do this (HTTP 403). Not retried.
    PermissionDenied,
    /// No credentials, or credentials the server does not accept (HTTP 401).
    Unauthenticated,
    /// The bucket lives in another region than the one configured.
    WrongRegion,
    /// The server did not answer within the timeout, retries included.
    TimedOut,
    /// The connection could not be made, or it broke in the middle of a
    /// response, and retries did not help.
    Connection,
    /// The server kept failing (5xx) after every retry.
    Server,
    /// The object changed between two reads of it (its ETag moved).
    Changed,
    /// The URL or the storage options cannot be used.
    Config,
    /// Anything else the client or server reported.
    Other,
}

impl RemoteErrorKind {
    fn advice(self) -> &'static str {
        match self {
            RemoteErrorKind::NotFound => "check the bucket, the key and the endpoint",
            RemoteErrorKind::PermissionDenied => {
                "the credentials were accepted but may not read or write this object"
            }
            RemoteErrorKind::Unauthenticated => {
                "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or storage_options"
            }
            RemoteErrorKind::WrongRegion => {
                "set AWS_REGION (or storage_options region) to the bucket's region"
            }
            RemoteErrorKind::TimedOut => "timed out waiting for the server; raise the timeout",
            RemoteErrorKind::Connection => "the connection failed or broke; retries did not help",
            RemoteErrorKind::Server => "the server kept failing after every retry",
            RemoteErrorKind::Changed => "the object was replaced while it was read; run again",
            RemoteErrorKind::Config => "fix the URL or the storage options",
            RemoteErrorKind::Other => "",
        }
    }
}

impl Error {
    /// Wraps the error with the file it concerns (unless it already names one).
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        match self {
            Error::File { .. } => self,
            other => Error::File {
                path: path.into(),
                source: Box::new(other),
            },
        }
    }

    /// The error without its file context.
    pub fn kind(&self) -> &Error {
        match self {
            Error::File { source, .. } => source.kind(),
            other => other,
        }
    }

    /// The file the error concerns, if known.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// True when the error means the data is not a valid safetensors file (as
    /// opposed to an I/O failure or a caller mistake).
    pub fn is_invalid_data(&self) -> bool {
        !matches!(
            self.kind(),
            Error::Io(_)
                | Error::CheckpointDirectory { .. }
                | Error::DuplicateTensorName { .. }
                | Error::WorkerPanicked { .. }
                | Error::TensorNotFound { .. }
                | Error::InvalidSlice { .. }
                | Error::InvalidTensor { .. }
                | Error::BufferSize { .. }
                | Error::Remote { .. }
        )
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Error::Io(error)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(error) => Some(error),
            Error::File { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::File { path, source } => write!(f, "{}: {source}", path.display()),
            Error::Remote { kind, message } => {
                let advice = kind.advice();
                if advice.is_empty() {
                    write!(f, "{message}")
                } else {
                    write!(f, "{message} ({advice})")
                }
            }
            Error::FileTooSmall { len } => write!(
                f,
                "file is {len} bytes, too short for a safetensors file (at least 8 bytes); it is probably truncated"
            ),
            Error::ForeignFormat(format) => {
                write!(f, "not a safetensors file: {}", format.advice())
            }
            Error::HeaderTooLarge { len, limit } => write!(
                f,
                "header length {len} is over the limit of {limit} bytes; the file is corrupt, or raise the limit if you trust it"
            ),
            Error::HeaderBeyondFile { len, available } => write!(
                f,
                "header length {len} runs past the end of the file ({available} bytes after the length prefix); the file is truncated or corrupt"
            ),
            Error::HeaderNotUtf8 { offset } => {
                write!(f, "header is not valid UTF-8 (byte {offset} of the header)")
            }
            Error::InvalidJson { offset, reason } => {
                write!(f, "header is not valid JSON at byte {offset}: {reason}")
            }
            Error::HeaderNotObject => write!(f, "header JSON is not an object"),
            Error::TrailingCharacters { offset } => write!(
                f,
                "unexpected characters after the header object at byte {offset}; only whitespace padding may follow it"
            ),
            Error::DuplicateKey { within, key } => write!(
                f,
                "key {key:?} appears twice in {within}; duplicate keys are ambiguous and rejected"
            ),
            Error::DuplicateTensorName { name } => write!(
                f,
                "two tensors to write are named {name:?}; names must be unique"
            ),
            Error::MissingField { tensor, field } => {
                write!(f, "tensor {tensor:?}: missing field {field:?}")
            }
            Error::UnknownField { tensor, field } => write!(
                f,
                "tensor {tensor:?}: unknown field {field:?}; entries may only have dtype, shape and data_offsets"
            ),
            Error::InvalidField {
                tensor,
                field,
                reason,
            } => write!(f, "tensor {tensor:?}: field {field:?} {reason}"),
            Error::UnknownDtype { tensor, dtype } => write!(
                f,
                "tensor {tensor:?}: unknown dtype {dtype:?} (dtypes are upper case, e.g. \"F32\", \"BF16\")"
            ),
            Error::InvalidShape { tensor, reason } => {
                write!(f, "tensor {tensor:?}: invalid shape: {reason}")
            }
            Error::ShapeOverflow { tensor } => write!(
                f,
                "tensor {tensor:?}: shape times dtype size overflows; the header is corrupt"
            ),
            Error::PartialByte { tensor, bits } => write!(
                f,
                "tensor {tensor:?}: takes {bits} bits, which is not a whole number of bytes"
            ),
            Error::EndBeforeBegin { tensor, begin, end } => write!(
                f,
                "tensor {tensor:?}: data_offsets end {end} is before begin {begin}"
            ),
            Error::LengthMismatch {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "tensor {tensor:?}: data_offsets span {actual} bytes but shape and dtype need {expected}"
            ),
            Error::Overlap { tensor, other } => {
                write!(f, "tensor {tensor:?} overlaps tensor {other:?}")
            }
            Error::Hole {
                tensor,
                expected_begin,
                begin,
            } => write!(
                f,
                "tensor {tensor:?} begins at {begin} but the previous tensor ends at {expected_begin}; bytes in between belong to no tensor"
            ),
            Error::DataLengthMismatch { expected, actual } => {
                let hint = if actual < expected {
                    "the file is truncated; download it again"
                } else {
                    "extra bytes follow the last tensor"
                };
                write!(
                    f,
                    "the header describes {expected} data bytes but the file has {actual}: {hint}"
                )
            }
            Error::InvalidMetadata { reason } => write!(f, "invalid __metadata__: {reason}"),
            Error::TensorNotFound { name } => write!(f, "no tensor named {name:?}"),
            Error::InvalidSlice { tensor, reason } => {
                write!(f, "tensor {tensor:?}: invalid slice: {reason}")
            }
            Error::InvalidTensor { tensor, reason } => write!(f, "tensor {tensor:?}: {reason}"),
            Error::CheckpointDirectory {
                index_files,
                safetensors_files,
            } => write!(
                f,
                "the directory holds {index_files} index files and {safetensors_files} safetensors files; point at one index file or file"
            ),
            Error::WorkerPanicked { message } => write!(
                f,
                "internal error: a worker thread panicked ({message}); this is a bug in safeweights, please report it"
            ),
            Error::Shard { reason } => write!(f, "sharded checkpoint: {reason}"),
            Error::DistributedCheckpoint { detail, .. } => write!(f, "{detail}"),
            Error::BufferSize {
                tensor,
                expected,
                actual,
            } => write!(
                f,
                "tensor {tensor:?}: buffer holds {actual} bytes but the tensor needs {expected}"
            ),
        }
    }
}
