//! `safe_open`: lazy, zero-copy access to the tensors of a file, a sharded
//! checkpoint or a buffer, and the slice objects of `get_slice`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use safeweights::read::Backend;
use safeweights::slice;
use safeweights::{Metadata, TensorInfo};

use crate::errors::{new_err, to_py_err, ClosedFileError, Multi, SafetensorError};
use crate::slicing::parse_index;
use crate::source::{Bytes, Opened};
use crate::storage::{Backing, Storage};

/// Calls a function of the pure-Python helper module `safeweights._convert`.
fn convert_fn<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "safeweights._convert", name)
}

static MAKE_BUFFER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static MAKE_CONVERTER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static PIN_BUFFER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A Python buffer object (a ctypes array) over `backing`.
pub fn python_buffer(py: Python<'_>, backing: Arc<Backing>) -> PyResult<Py<PyAny>> {
    let storage = Py::new(py, Storage::new(backing))?;
    Ok(convert_fn(py, &MAKE_BUFFER, "make_buffer")?
        .call1((storage,))?
        .unbind())
}

/// A file's metadata as a dict (empty for none).
fn metadata_dict<'py>(
    py: Python<'py>,
    metadata: Option<&Metadata>,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, value) in metadata.into_iter().flatten() {
        dict.set_item(key, value)?;
    }
    Ok(dict)
}

/// Opened files plus, per file, the Python buffer tensors are views of.
pub struct Handle {
    pub opened: Opened,
    buffers: Vec<PyOnceLock<Py<PyAny>>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl Handle {
    pub fn new(opened: Opened) -> Self {
        let buffers = opened.files.iter().map(|_| PyOnceLock::new()).collect();
        Handle { opened, buffers }
    }

    /// Converts one tensor with `converter(buffer, offset, nbytes, dtype, shape, writable)`.
    fn tensor_args<'py>(
        &self,
        py: Python<'py>,
        file: usize,
        info: &TensorInfo,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let (buffer, offset, writable) = match &self.opened.files[file].bytes {
            Bytes::Memory {
                backing,
                data_start,
            } => {
                let buffer = self.buffers[file]
                    .get_or_try_init(py, || python_buffer(py, backing.clone()))?;
                (
                    buffer.clone_ref(py),
                    data_start + info.begin as usize,
                    backing.writable(),
                )
            }
            Bytes::Pread(reader) => {
                let backing = py.detach(|| {
                    let mut backing = Backing::zeroed(info.byte_len());
                    reader
                        .read_into(&info.name, backing.as_mut_slice())
                        .map(|_| backing)
                });
                (
                    python_buffer(py, Arc::new(backing.map_err(to_py_err)?))?,
                    0,
                    true,
                )
            }
        };
        let shape = PyTuple::new(py, &info.shape)?;
        (
            buffer,
            offset,
            info.byte_len(),
            info.dtype.name(),
            shape,
            writable,
        )
            .into_pyobject(py)
    }
}

/// Opens a safetensors file lazily: the header is read and validated at
/// once, tensor data only when asked for.
///
/// `filename` may be a path (`str` or `os.PathLike`), a sharded checkpoint
/// (its `*.index.json` or its directory), a binary file object, or a
/// buffer (`bytes`, `bytearray`, `memoryview`: an extension over the
/// reference).
///
/// `framework` is `"pt"`/`"torch"` or `"np"`/`"numpy"`; `device` is `"cpu"`
/// (default), `"cuda"`, `"cuda:N"` or an integer GPU index (torch only).
/// `backend="pread"` reads with positioned reads instead of a memory map,
/// for network filesystems.
///
/// Memory semantics: with the default mmap backend the file is mapped
/// privately (copy-on-write) and tensors are zero-copy views of the map.
/// They are writable; a write copies the touched page in memory and never
/// reaches the file. Tensors stay valid after the handle is closed. For a
/// writable buffer input (`bytearray`, writable `memoryview`) tensors are
/// views of the caller's buffer; for `bytes` numpy arrays are read-only
/// views and torch tensors copies (torch has no read-only tensors).
///
/// Example:
///
/// ```python
/// from safeweights import safe_open
///
/// with safe_open("model.safetensors", framework="pt") as f:
///     for name in f.keys():
///         tensor = f.get_tensor(name)
///     rows = f.get_slice("embedding")[:128, ::2]
/// ```
#[pyclass(module = "safeweights._safeweights_rust", name = "safe_open", frozen)]
#[derive(Debug)]
pub struct SafeOpen {
    state: RwLock<Option<Arc<Handle>>>,
    converter: Py<PyAny>,
}

impl SafeOpen {
    fn handle(&self) -> PyResult<Arc<Handle>> {
        let state = self
            .state
            .read()
            .map_err(|_| SafetensorError::new_err("safe_open lock poisoned"))?;
        state
            .clone()
            .ok_or_else(|| ClosedFileError::new_err("File is closed"))
    }
}

/// Parses the `backend` argument.
fn parse_backend(backend: &str) -> PyResult<Backend> {
    match backend {
        "mmap" => Ok(Backend::Mmap),
        "pread" => Ok(Backend::Pread),
        other => Err(SafetensorError::new_err(format!(
            "backend {other:?} is invalid: use \"mmap\" or \"pread\""
        ))),
    }
}

/// Opens `source` (path, buffer or file object) into a handle.
pub fn open_source(
    py: Python<'_>,
    source: &Bound<'_, PyAny>,
    backend: Backend,
) -> PyResult<Handle> {
    let os = py.import("os")?;
    let is_path = source.is_instance_of::<PyString>() || source.hasattr("__fspath__")?;
    if is_path {
        let path: PathBuf = os.call_method1("fspath", (source,))?.extract()?;
        let opened = py
            .detach(|| Opened::open_path(&path, backend))
            .map_err(|error| {
                // The reference raises OSError for any directory; ours reads
                // sharded checkpoints from one, and says why it cannot.
                if matches!(
                    error.kind(),
                    safeweights::Error::Shard { .. }
                        | safeweights::Error::CheckpointDirectory { .. }
                ) && path.is_dir()
                {
                    new_err(Multi::ShardDirectory, error.to_string())
                } else {
                    to_py_err(error)
                }
            })?;
        return Ok(Handle::new(opened));
    }
    let backing = if let Ok(bytes) = source.cast::<PyBytes>() {
        let data = bytes.as_bytes();
        Backing::Borrowed {
            address: data.as_ptr() as usize,
            len: data.len(),
            writable: false,
            owner: bytes.clone().into_any().unbind(),
        }
    } else {
        // bytearray, memoryview, file objects: the helper pins the memory
        // (or reads the file) and reports (owner, address, length, writable).
        let pinned = convert_fn(py, &PIN_BUFFER, "pin_buffer")?.call1((source,))?;
        let (owner, address, len, writable): (Py<PyAny>, usize, usize, bool) = pinned.extract()?;
        Backing::Borrowed {
            owner,
            address,
            len,
            writable,
        }
    };
    let backing = Arc::new(backing);
    let opened = py
        .detach(|| Opened::from_backing(backing))
        .map_err(to_py_err)?;
    Ok(Handle::new(opened))
}

#[pymethods]
impl SafeOpen {
    #[new]
    #[pyo3(signature = (filename, framework, device = None, *, backend = "mmap"))]
    fn new(
        py: Python<'_>,
        filename: &Bound<'_, PyAny>,
        framework: &Bound<'_, PyAny>,
        device: Option<&Bound<'_, PyAny>>,
        backend: &str,
    ) -> PyResult<Self> {
        let backend = parse_backend(backend)?;
        let converter =
            convert_fn(py, &MAKE_CONVERTER, "make_converter")?.call1((framework, device))?;
        let handle = open_source(py, filename, backend)?;
        Ok(SafeOpen {
            state: RwLock::new(Some(Arc::new(handle))),
            converter: converter.unbind(),
        })
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (_exc_type = None, _exc_value = None, _traceback = None))]
    fn __exit__(
        &self,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        if let Ok(mut state) = self.state.write() {
            *state = None;
        }
        Ok(false)
    }

    /// Tensor names, sorted alphabetically.
    fn keys(&self) -> PyResult<Vec<String>> {
        let handle = self.handle()?;
        Ok(handle
            .opened
            .sorted_names()
            .into_iter()
            .map(str::to_owned)
            .collect())
    }

    /// Tensor names in the order of their data in the file.
    fn offset_keys(&self) -> PyResult<Vec<String>> {
        let handle = self.handle()?;
        Ok(handle
            .opened
            .offset_order()
            .map(|(_, t)| t.name.clone())
            .collect())
    }

    /// The `__metadata__` string map, or `None` when the file has none.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let handle = self.handle()?;
        handle
            .opened
            .metadata()
            .map(|metadata| metadata_dict(py, Some(metadata)))
            .transpose()
    }

    /// The `__metadata__` of every file (one per shard of a sharded
    /// checkpoint, in shard order; `metadata()` is the first one's), each
    /// a dict, empty when a file has none.
    fn _all_metadata<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let handle = self.handle()?;
        handle
            .opened
            .files
            .iter()
            .map(|file| metadata_dict(py, file.header.metadata()))
            .collect()
    }

    /// One whole tensor, in the framework and on the device of this handle.
    fn get_tensor<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(to_py_err)?;
        let args = handle.tensor_args(py, file, info)?;
        self.converter.bind(py).call1(args)
    }

    /// Every tensor, as a dict in file order.
    fn get_tensors<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle()?;
        let entries = PyList::empty(py);
        for (file, info) in handle.opened.offset_order() {
            let args = handle.tensor_args(py, file, info)?;
            entries.append((info.name.as_str(), args))?;
        }
        self.converter.bind(py).call_method1("load_all", (entries,))
    }

    /// A lazy slice object: index it (`f.get_slice("w")[:, 2:8:2]`) to read
    /// only the selected elements.
    fn get_slice(&self, py: Python<'_>, name: &str) -> PyResult<SafeSlice> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(to_py_err)?;
        let info = info.clone();
        Ok(SafeSlice {
            handle,
            file,
            info,
            converter: self.converter.clone_ref(py),
        })
    }
}

/// A tensor that has not been read yet; indexing reads the selection.
///
/// Indices follow numpy: integers (negative count from the end), slices
/// with any step (negative steps included), one `...`, and `None` for a new
/// axis. Out-of-range slice bounds are clipped; out-of-range integers raise.
/// As in the reference, booleans count as integers and `[]` selects nothing
/// for numpy, while torch slices also take torch's advanced indices
/// (booleans, lists, arrays, tensors), applied by torch to the whole tensor.
/// The result is a new, writable tensor holding only the selected elements.
#[pyclass(module = "safeweights._safeweights_rust", name = "PySafeSlice", frozen)]
#[derive(Debug)]
pub struct SafeSlice {
    handle: Arc<Handle>,
    file: usize,
    info: TensorInfo,
    converter: Py<PyAny>,
}

#[pymethods]
impl SafeSlice {
    /// The tensor's shape, as in the header.
    fn get_shape(&self) -> Vec<usize> {
        self.info.shape.clone()
    }

    /// The tensor's dtype as in the header (e.g. `"F32"`).
    fn get_dtype(&self) -> &'static str {
        self.info.dtype.name()
    }

    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let converter = self.converter.bind(py);
        if converter
            .call_method1("indexes_whole", (index,))?
            .is_truthy()?
        {
            // Indices only torch can apply (booleans, lists, tensors): the
            // reference's torch slices take them, so torch applies them here.
            let args = self.handle.tensor_args(py, self.file, &self.info)?;
            return converter.call_method1("index_whole", (args, index));
        }
        let args = parse_index(index)?;
        let info = &self.info;
        let file = &self.handle.opened.files[self.file];
        let gathered = py.detach(|| -> safeweights::Result<(Vec<usize>, Backing)> {
            let selection = slice::plan(&info.name, &info.shape, &args)?;
            let mut out = Backing::zeroed(slice::output_len(
                &info.name,
                info.dtype,
                &info.shape,
                &selection,
            )?);
            match &file.bytes {
                Bytes::Memory { .. } => {
                    let data = file.memory_bytes(info).unwrap_or_default();
                    slice::gather_into(
                        &info.name,
                        info.dtype,
                        &info.shape,
                        data,
                        &selection,
                        out.as_mut_slice(),
                    )?;
                }
                Bytes::Pread(reader) => {
                    let bytes = reader.read_selection(info, &selection)?;
                    out.as_mut_slice().copy_from_slice(&bytes);
                }
            }
            Ok((selection.shape(), out))
        });
        let (final_shape, out) = gathered.map_err(to_py_err)?;
        let len = out.as_slice().len();
        let buffer = python_buffer(py, Arc::new(out))?;
        let shape = PyTuple::new(py, &final_shape)?;
        self.converter
            .bind(py)
            .call1((buffer, 0usize, len, info.dtype.name(), shape, true))
    }
}
