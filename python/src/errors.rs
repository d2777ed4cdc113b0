//! The Python exception hierarchy and the one mapping from library errors
//! to Python exceptions.
//!
//! `SafetensorError` has the reference package's name, so code that catches
//! `safetensors.SafetensorError` keeps working after switching imports. Each
//! subclass narrows what went wrong.
//!
//! Where the reference raises a built-in exception instead, our class also
//! derives from that built-in, so `except` clauses written for either
//! package catch it:
//!
//! - reading: I/O failures are the built-in `OSError` subclasses
//!   (`FileNotFoundError`, ...) with `errno` and `filename` set, as the
//!   reference raises for missing files; a directory that holds no sharded
//!   checkpoint is a `ShardError` and an `IsADirectoryError` (the reference
//!   raises `OSError`);
//! - writing: the reference raises `SafetensorError` for I/O failures, so ours
//!   are both: `SafetensorFileNotFoundError(SafetensorOSError,
//!   FileNotFoundError)` and so on, with `errno` and `filename` set;
//! - `UnsupportedDtypeError` is also a `KeyError` (the reference's error for
//!   a torch dtype it cannot save) and a `ValueError`;
//! - `DeviceUnavailableError`, for a CUDA device torch cannot reach, is also
//!   a `RuntimeError` (what torch raises there);
//! - `InvalidSliceError` is also an `IndexError` (torch's error for an index
//!   out of range), and `UnsupportedIndexError`, for an index of the wrong
//!   type, also a `TypeError`.
//!
//! Classes with several bases are made at import with `type(...)`, since
//! `create_exception!` takes one base; [`new_err`] raises them.

use std::io;

use pyo3::exceptions::{
    PyBaseException, PyFileExistsError, PyFileNotFoundError, PyIndexError, PyIsADirectoryError,
    PyKeyError, PyNotADirectoryError, PyOSError, PyPermissionError, PyRuntimeError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::PyErrArguments;
use safeweights::{Error, RemoteErrorKind};
use safeweights_pickle::Error as PickleError;

pyo3::create_exception!(
    safeweights,
    SafetensorError,
    pyo3::exceptions::PyException,
    "Base class of every error safeweights raises about safetensors data (same name as the reference's)."
);
pyo3::create_exception!(
    safeweights,
    InvalidHeaderError,
    SafetensorError,
    "The data is not a valid safetensors file: corrupt, truncated, or breaking a rule of the format."
);
pyo3::create_exception!(
    safeweights,
    ForeignFormatError,
    InvalidHeaderError,
    "The file is another format (a pickle checkpoint, a git-lfs pointer, an HTML page, ...)."
);
pyo3::create_exception!(
    safeweights,
    TensorNotFoundError,
    SafetensorError,
    "No tensor has the requested name."
);
pyo3::create_exception!(
    safeweights,
    InvalidTensorError,
    SafetensorError,
    "A tensor given to a writer is inconsistent (size, name or dtype)."
);
pyo3::create_exception!(
    safeweights,
    ShardError,
    SafetensorError,
    "A sharded checkpoint's index and shards disagree."
);
pyo3::create_exception!(
    safeweights,
    CheckpointError,
    SafetensorError,
    "A checkpoint's structure is invalid or cannot be represented."
);
pyo3::create_exception!(
    safeweights,
    UnsafeCheckpointError,
    CheckpointError,
    "A pickle checkpoint was refused because loading it would run code or use a non-allowed global."
);
pyo3::create_exception!(
    safeweights,
    ClosedFileError,
    SafetensorError,
    "The safe_open handle was used after its `with` block ended."
);

/// Exception classes with several bases (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multi {
    /// `UnsupportedDtypeError(SafetensorError, KeyError, ValueError)`.
    UnsupportedDtype,
    /// `InvalidSliceError(SafetensorError, IndexError)`.
    InvalidSlice,
    /// `UnsupportedIndexError(InvalidSliceError, TypeError)`.
    UnsupportedIndex,
    /// `ShardDirectoryError(ShardError, IsADirectoryError)`.
    ShardDirectory,
    /// `DeviceUnavailableError(SafetensorError, RuntimeError)`.
    DeviceUnavailable,
    /// `SafetensorOSError(SafetensorError, OSError)`.
    WriteOs,
    /// `SafetensorFileNotFoundError(SafetensorOSError, FileNotFoundError)`.
    WriteNotFound,
    /// `SafetensorPermissionError(SafetensorOSError, PermissionError)`.
    WritePermission,
    /// `SafetensorFileExistsError(SafetensorOSError, FileExistsError)`.
    WriteExists,
    /// `SafetensorIsADirectoryError(SafetensorOSError, IsADirectoryError)`.
    WriteIsADirectory,
    /// `SafetensorNotADirectoryError(SafetensorOSError, NotADirectoryError)`.
    WriteNotADirectory,
}

impl Multi {
    const ALL: [Multi; 11] = [
        Multi::UnsupportedDtype,
        Multi::InvalidSlice,
        Multi::UnsupportedIndex,
        Multi::ShardDirectory,
        Multi::DeviceUnavailable,
        Multi::WriteOs,
        Multi::WriteNotFound,
        Multi::WritePermission,
        Multi::WriteExists,
        Multi::WriteIsADirectory,
        Multi::WriteNotADirectory,
    ];

    fn name(self) -> &'static str {
        match self {
            Multi::UnsupportedDtype => "UnsupportedDtypeError",
            Multi::InvalidSlice => "InvalidSliceError",
            Multi::UnsupportedIndex => "UnsupportedIndexError",
            Multi::ShardDirectory => "ShardDirectoryError",
            Multi::DeviceUnavailable => "DeviceUnavailableError",
            Multi::WriteOs => "SafetensorOSError",
            Multi::WriteNotFound => "SafetensorFileNotFoundError",
            Multi::WritePermission => "SafetensorPermissionError",
            Multi::WriteExists => "SafetensorFileExistsError",
            Multi::WriteIsADirectory => "SafetensorIsADirectoryError",
            Multi::WriteNotADirectory => "SafetensorNotADirectoryError",
        }
    }

    fn doc(self) -> &'static str {
        match self {
            Multi::UnsupportedDtype => {
                "A dtype exists in the file or the framework but cannot be represented on the other side. \
                 Also a KeyError (what the reference raises for a torch dtype it cannot save) and a ValueError."
            }
            Multi::InvalidSlice => {
                "A slice request does not fit the tensor. Also an IndexError, as torch raises."
            }
            Multi::UnsupportedIndex => {
                "An index of a type that slicing does not support. Also a TypeError."
            }
            Multi::ShardDirectory => {
                "A directory was opened that holds no valid sharded checkpoint. \
                 Also an IsADirectoryError (the reference raises OSError for any directory)."
            }
            Multi::DeviceUnavailable => {
                "The device asked for cannot be reached (CUDA without a GPU or without CUDA support in torch). \
                 Also a RuntimeError, as torch raises."
            }
            Multi::WriteOs => {
                "Writing a file failed, or a file became shorter while it was read. \
                 Both a SafetensorError (what the reference raises) and an OSError."
            }
            _ => "Writing a file failed. Both a SafetensorError (what the reference raises) and the OSError subclass for the failure.",
        }
    }

    fn bases<'py>(self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyType>>> {
        let os_pair = |builtin: Bound<'py, PyType>| -> PyResult<Vec<Bound<'py, PyType>>> {
            Ok(vec![class(py, Multi::WriteOs)?, builtin])
        };
        match self {
            Multi::UnsupportedDtype => Ok(vec![
                py.get_type::<SafetensorError>(),
                py.get_type::<PyKeyError>(),
                py.get_type::<PyValueError>(),
            ]),
            Multi::InvalidSlice => Ok(vec![
                py.get_type::<SafetensorError>(),
                py.get_type::<PyIndexError>(),
            ]),
            Multi::UnsupportedIndex => Ok(vec![
                class(py, Multi::InvalidSlice)?,
                py.get_type::<PyTypeError>(),
            ]),
            Multi::ShardDirectory => Ok(vec![
                py.get_type::<ShardError>(),
                py.get_type::<PyIsADirectoryError>(),
            ]),
            Multi::DeviceUnavailable => Ok(vec![
                py.get_type::<SafetensorError>(),
                py.get_type::<PyRuntimeError>(),
            ]),
            Multi::WriteOs => Ok(vec![
                py.get_type::<SafetensorError>(),
                py.get_type::<PyOSError>(),
            ]),
            Multi::WriteNotFound => os_pair(py.get_type::<PyFileNotFoundError>()),
            Multi::WritePermission => os_pair(py.get_type::<PyPermissionError>()),
            Multi::WriteExists => os_pair(py.get_type::<PyFileExistsError>()),
            Multi::WriteIsADirectory => os_pair(py.get_type::<PyIsADirectoryError>()),
            Multi::WriteNotADirectory => os_pair(py.get_type::<PyNotADirectoryError>()),
        }
    }

    fn cell(self) -> &'static PyOnceLock<Py<PyType>> {
        // Indexed by discriminant: the variants are declared in `ALL`'s order.
        static CELLS: [PyOnceLock<Py<PyType>>; 11] = [const { PyOnceLock::new() }; 11];
        &CELLS[self as usize]
    }
}

/// The class for `which`, made on first use.
pub fn class(py: Python<'_>, which: Multi) -> PyResult<Bound<'_, PyType>> {
    let class = which.cell().get_or_try_init(py, || {
        let namespace = PyDict::new(py);
        namespace.set_item("__module__", "safeweights")?;
        namespace.set_item("__doc__", which.doc())?;
        if which == Multi::UnsupportedDtype {
            // KeyError quotes its message (`'msg'`); print it as other exceptions do.
            namespace.set_item(
                "__str__",
                py.get_type::<PyBaseException>().getattr("__str__")?,
            )?;
        }
        let bases = PyTuple::new(py, which.bases(py)?)?;
        let made = py
            .get_type::<PyType>()
            .call1((which.name(), bases, namespace))?
            .cast_into::<PyType>()?;
        Ok::<_, PyErr>(made.unbind())
    })?;
    Ok(class.bind(py).clone())
}

/// A new exception of class `which` with `args` (a message, or for the
/// OSError classes `(errno, strerror[, filename])`).
pub fn new_err<A>(which: Multi, args: A) -> PyErr
where
    A: PyErrArguments + Send + Sync + 'static,
{
    Python::attach(|py| match class(py, which) {
        Ok(class) => PyErr::from_type(class, args),
        Err(error) => error,
    })
}

/// An error of the Rust crates on its way to Python: the one place that
/// picks its exception class, by the error's kind (its variant), never by
/// its message. Call sites write `.map_err(CoreError::from)?` (reading,
/// pickle reader) or `.map_err(CoreError::Write)?` (writing a file).
#[derive(Debug)]
pub enum CoreError {
    /// A safeweights error while reading: I/O errors are the built-in
    /// `OSError` subclasses, as the reference raises when reading.
    Read(Error),
    /// A safeweights error while writing a file: I/O errors are also
    /// `SafetensorError`s, as the reference raises.
    Write(Error),
    /// An error of the pickle reader: refusals (a global or opcode that
    /// could run code) are `UnsafeCheckpointError` naming what was refused.
    Pickle(PickleError),
    /// An error of the GGUF reader or codec: a malformed file is an
    /// `InvalidHeaderError`, a missing tensor a `TensorNotFoundError`, a
    /// type without a dequantization rule an `InvalidTensorError`.
    Gguf(safeweights_gguf::Error),
}

impl From<Error> for CoreError {
    fn from(error: Error) -> Self {
        CoreError::Read(error)
    }
}

impl From<PickleError> for CoreError {
    fn from(error: PickleError) -> Self {
        CoreError::Pickle(error)
    }
}

impl From<CoreError> for PyErr {
    fn from(error: CoreError) -> PyErr {
        match error {
            CoreError::Read(error) => convert(error, false),
            CoreError::Write(error) => convert(error, true),
            CoreError::Pickle(error) => convert_pickle(error),
            CoreError::Gguf(error) => convert_gguf(error),
        }
    }
}

/// The message keeps the file name and says what is wrong.
fn convert(error: Error, writing: bool) -> PyErr {
    let path = error.path().map(|p| p.display().to_string());
    if let Error::Io(io_error) = error.kind() {
        return if writing {
            io_to_py_write_err(io_error, path)
        } else {
            io_to_py_err(io_error, path)
        };
    }
    let message = error.to_string();
    if let Error::Remote { kind, message } = error.kind() {
        return remote_to_py_err(*kind, message, path);
    }
    match error.kind() {
        Error::ForeignFormat(_) => ForeignFormatError::new_err(message),
        Error::TensorNotFound { .. } => TensorNotFoundError::new_err(message),
        Error::InvalidSlice { .. } => new_err(Multi::InvalidSlice, message),
        Error::InvalidTensor { .. } | Error::BufferSize { .. } => {
            InvalidTensorError::new_err(message)
        }
        Error::UnknownDtype { .. } => new_err(Multi::UnsupportedDtype, message),
        Error::Shard { .. } => ShardError::new_err(message),
        // Duplicate names given to a writer are the caller's mistake, not a corrupt file.
        Error::DuplicateTensorName { .. } => InvalidTensorError::new_err(message),
        // A panicking worker is a bug in safeweights, as Python's own internal errors are.
        Error::WorkerPanicked { .. } => pyo3::exceptions::PySystemError::new_err(message),
        _ => InvalidHeaderError::new_err(message),
    }
}

/// A failed remote read or write, as the built-in exception a local file
/// would raise for the same trouble (`FileNotFoundError` for 404,
/// `PermissionError` for 401/403, `TimeoutError`, `ConnectionError`),
/// with the URL as `filename`.
fn remote_to_py_err(kind: RemoteErrorKind, message: &str, url: Option<String>) -> PyErr {
    use pyo3::exceptions::{PyConnectionError, PyTimeoutError};
    let text = Error::Remote {
        kind,
        message: message.to_owned(),
    }
    .to_string();
    let url = url.unwrap_or_default();
    match kind {
        RemoteErrorKind::NotFound => PyFileNotFoundError::new_err((2, text, url)),
        RemoteErrorKind::PermissionDenied | RemoteErrorKind::Unauthenticated => {
            PyPermissionError::new_err((13, text, url))
        }
        RemoteErrorKind::TimedOut => PyTimeoutError::new_err((110, text, url)),
        RemoteErrorKind::Connection | RemoteErrorKind::Server => {
            PyConnectionError::new_err((104, text, url))
        }
        _ => PyOSError::new_err((5, text, url)),
    }
}

fn convert_gguf(error: safeweights_gguf::Error) -> PyErr {
    use safeweights_gguf::Error as G;
    let message = error.to_string();
    match error {
        G::Io {
            path,
            kind,
            message,
        } => io_to_py_err(&io::Error::new(kind, message), Some(path)),
        G::TensorNotFound { .. } => TensorNotFoundError::new_err(message),
        G::NotDequantizable { .. } | G::QuantLength { .. } => InvalidTensorError::new_err(message),
        _ => InvalidHeaderError::new_err(message),
    }
}

fn convert_pickle(error: PickleError) -> PyErr {
    match error.root() {
        // An ambiguous archive is refused like a payload: another reader
        // could load something else from it.
        PickleError::RefusedGlobal { .. }
        | PickleError::RefusedOpcode { .. }
        | PickleError::AmbiguousArchive { .. } => UnsafeCheckpointError::new_err(error.to_string()),
        PickleError::Io { path, source } => io_to_py_err(source, Some(path.display().to_string())),
        _ => CheckpointError::new_err(error.to_string()),
    }
}

/// An OS error while reading, as the built-in exception for its kind, with
/// `errno`, `strerror` and `filename` filled in.
pub fn io_to_py_err(error: &io::Error, filename: Option<String>) -> PyErr {
    let (errno, strerror) = errno_and_message(error);
    match error.kind() {
        // A buffer or map the machine cannot provide (ENOMEM included).
        io::ErrorKind::OutOfMemory => {
            let what = filename.map_or(strerror.clone(), |name| format!("{name}: {strerror}"));
            return pyo3::exceptions::PyMemoryError::new_err(what);
        }
        // A file that became shorter than its header says, seen by a
        // positioned read: corrupt data (a SafetensorError) and an I/O
        // failure (an OSError with errno EIO, as a failing disk reports).
        io::ErrorKind::UnexpectedEof => {
            let errno = if errno == 0 { EIO } else { errno };
            return match filename {
                Some(name) => new_err(Multi::WriteOs, (errno, strerror, name)),
                None => new_err(Multi::WriteOs, (errno, strerror)),
            };
        }
        _ => {}
    }
    macro_rules! build {
        ($exc:ty) => {
            match filename {
                Some(name) => <$exc>::new_err((errno, strerror, name)),
                None => <$exc>::new_err((errno, strerror)),
            }
        };
    }
    match error.kind() {
        io::ErrorKind::NotFound => build!(PyFileNotFoundError),
        io::ErrorKind::PermissionDenied => build!(PyPermissionError),
        io::ErrorKind::AlreadyExists => build!(PyFileExistsError),
        io::ErrorKind::IsADirectory => build!(PyIsADirectoryError),
        io::ErrorKind::NotADirectory => build!(PyNotADirectoryError),
        _ => build!(PyOSError),
    }
}

/// An OS error while writing: a `SafetensorError` (as the reference raises)
/// that is also the built-in `OSError` subclass for its kind.
pub fn io_to_py_write_err(error: &io::Error, filename: Option<String>) -> PyErr {
    let (errno, strerror) = errno_and_message(error);
    let which = match error.kind() {
        io::ErrorKind::NotFound => Multi::WriteNotFound,
        io::ErrorKind::PermissionDenied => Multi::WritePermission,
        io::ErrorKind::AlreadyExists => Multi::WriteExists,
        io::ErrorKind::IsADirectory => Multi::WriteIsADirectory,
        io::ErrorKind::NotADirectory => Multi::WriteNotADirectory,
        _ => Multi::WriteOs,
    };
    match filename {
        Some(name) => new_err(which, (errno, strerror, name)),
        None => new_err(which, (errno, strerror)),
    }
}

/// `EIO`, the same number on every platform Python runs on.
const EIO: i32 = 5;

/// `errno` and the message without its `" (os error N)"` suffix (Python
/// prints errno itself). Errors wrapped by other crates (tempfile adds the
/// path) lose `raw_os_error`; their message still carries the number.
fn errno_and_message(error: &io::Error) -> (i32, String) {
    let text = error.to_string();
    let Some(at) = text.rfind(" (os error ") else {
        return (
            error
                .raw_os_error()
                .unwrap_or_else(|| errno_of_kind(error.kind())),
            text,
        );
    };
    let parsed = text[at + " (os error ".len()..]
        .split(')')
        .next()
        .and_then(|n| n.parse().ok());
    let errno = error
        .raw_os_error()
        .or(parsed)
        .unwrap_or_else(|| errno_of_kind(error.kind()));
    (errno, text[..at].to_owned())
}

/// The errno of an error made by our own code (a refusal to overwrite, a
/// file that became shorter), which carries a kind but no OS number; the
/// values are the POSIX ones, the same on every platform Python runs on.
fn errno_of_kind(kind: io::ErrorKind) -> i32 {
    match kind {
        io::ErrorKind::NotFound => 2,
        io::ErrorKind::UnexpectedEof => EIO,
        io::ErrorKind::OutOfMemory => 12,
        io::ErrorKind::PermissionDenied => 13,
        io::ErrorKind::AlreadyExists => 17,
        _ => 0,
    }
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SafetensorError", py.get_type::<SafetensorError>())?;
    m.add("InvalidHeaderError", py.get_type::<InvalidHeaderError>())?;
    m.add("ForeignFormatError", py.get_type::<ForeignFormatError>())?;
    m.add("TensorNotFoundError", py.get_type::<TensorNotFoundError>())?;
    m.add("InvalidTensorError", py.get_type::<InvalidTensorError>())?;
    m.add("ShardError", py.get_type::<ShardError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add(
        "UnsafeCheckpointError",
        py.get_type::<UnsafeCheckpointError>(),
    )?;
    m.add("ClosedFileError", py.get_type::<ClosedFileError>())?;
    for which in Multi::ALL {
        m.add(which.name(), class(py, which)?)?;
    }
    Ok(())
}
