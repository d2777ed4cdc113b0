//! The Python exception hierarchy and the one mapping from library errors
//! to Python exceptions.
//!
//! `SafetensorError` has the reference package's name, so code that catches
//! `safetensors.SafetensorError` keeps working after switching imports. Each
//! subclass narrows what went wrong; I/O failures become the built-in
//! `OSError` subclasses (`FileNotFoundError`, `PermissionError`, ...) with
//! `errno` and `filename` set, as the reference does for missing files.

use std::io;

use pyo3::exceptions::{
    PyFileExistsError, PyFileNotFoundError, PyIsADirectoryError, PyNotADirectoryError, PyOSError,
    PyPermissionError,
};
use pyo3::prelude::*;
use safeweights::Error;

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
    InvalidSliceError,
    SafetensorError,
    "A slice request does not fit the tensor."
);
pyo3::create_exception!(
    safeweights,
    InvalidTensorError,
    SafetensorError,
    "A tensor given to a writer is inconsistent (size, name or dtype)."
);
pyo3::create_exception!(
    safeweights,
    UnsupportedDtypeError,
    SafetensorError,
    "A dtype exists in the file or the framework but cannot be represented on the other side."
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

/// Converts a library error into the matching Python exception. The
/// message keeps the file name and says what is wrong.
pub fn to_py_err(error: Error) -> PyErr {
    let path = error.path().map(|p| p.display().to_string());
    if let Error::Io(io_error) = error.kind() {
        return io_to_py_err(io_error, path);
    }
    let message = error.to_string();
    match error.kind() {
        Error::ForeignFormat(_) => ForeignFormatError::new_err(message),
        Error::TensorNotFound { .. } => TensorNotFoundError::new_err(message),
        Error::InvalidSlice { .. } => InvalidSliceError::new_err(message),
        Error::InvalidTensor { .. } | Error::BufferSize { .. } => {
            InvalidTensorError::new_err(message)
        }
        Error::UnknownDtype { .. } => UnsupportedDtypeError::new_err(message),
        Error::Shard { .. } => ShardError::new_err(message),
        // Duplicate names given to a writer are the caller's mistake, not a corrupt file.
        Error::DuplicateKey { within, .. } if within.contains("to write") => {
            InvalidTensorError::new_err(message)
        }
        _ => InvalidHeaderError::new_err(message),
    }
}

/// An OS error as the built-in exception for its kind, with `errno`,
/// `strerror` and `filename` filled in.
pub fn io_to_py_err(error: &io::Error, filename: Option<String>) -> PyErr {
    let errno = error.raw_os_error().unwrap_or(0);
    let strerror = strip_os_suffix(&error.to_string());
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

/// `"No such file or directory (os error 2)"` -> `"No such file or directory"`:
/// Python prints errno itself.
fn strip_os_suffix(message: &str) -> String {
    match message.rfind(" (os error ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Registers the exception classes on the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SafetensorError", py.get_type::<SafetensorError>())?;
    m.add("InvalidHeaderError", py.get_type::<InvalidHeaderError>())?;
    m.add("ForeignFormatError", py.get_type::<ForeignFormatError>())?;
    m.add("TensorNotFoundError", py.get_type::<TensorNotFoundError>())?;
    m.add("InvalidSliceError", py.get_type::<InvalidSliceError>())?;
    m.add("InvalidTensorError", py.get_type::<InvalidTensorError>())?;
    m.add(
        "UnsupportedDtypeError",
        py.get_type::<UnsupportedDtypeError>(),
    )?;
    m.add("ShardError", py.get_type::<ShardError>())?;
    m.add("CheckpointError", py.get_type::<CheckpointError>())?;
    m.add(
        "UnsafeCheckpointError",
        py.get_type::<UnsafeCheckpointError>(),
    )?;
    m.add("ClosedFileError", py.get_type::<ClosedFileError>())?;
    Ok(())
}
