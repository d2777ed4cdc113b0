//! The native side of `safe_open`: lazy, zero-copy access to the tensors
//! of a file, a sharded checkpoint or a buffer, and of `get_slice`.
//!
//! Tensors come back as [`RawTensor`] records; the Python class
//! `safeweights.safe_open` wraps [`SafeFile`] and converts them.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict};
use safeweights::read::Backend;
use safeweights::slice;
use safeweights::{Metadata, TensorInfo};

use crate::dtype::{framework_name, framework_shape};
use crate::errors::{new_err, ClosedFileError, CoreError, Multi, SafetensorError};
use crate::record::{Layout, Location, RawTensor};
use crate::slicing::parse_index;
use crate::source::{Bytes, Opened};
use crate::storage::{Backing, Storage};

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

/// Opened files plus, per file held in memory, the one `_Storage` its
/// records share.
pub struct Handle {
    /// The files, validated.
    pub opened: Opened,
    storages: Vec<PyOnceLock<Py<Storage>>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

/// The record of a tensor of `info`'s dtype and `shape` held at `location`.
fn record(
    py: Python<'_>,
    location: Location,
    info: &TensorInfo,
    shape: &[usize],
) -> PyResult<Py<RawTensor>> {
    let layout = Layout {
        dtype: framework_name(info.dtype),
        shape: framework_shape(&info.name, info.dtype, shape)?,
        name: info.name.clone(),
        requires_grad: false,
    };
    Py::new(py, RawTensor::new(location, layout))
}

impl Handle {
    /// A handle over `opened`, with no storage handed out yet.
    pub fn new(opened: Opened) -> Self {
        let storages = opened.files.iter().map(|_| PyOnceLock::new()).collect();
        Handle { opened, storages }
    }

    /// The record of one whole tensor of file `file`: a view of the file's
    /// memory, or (pread) a new buffer read with the GIL released.
    fn raw_tensor(
        &self,
        py: Python<'_>,
        file: usize,
        info: &TensorInfo,
    ) -> PyResult<Py<RawTensor>> {
        let location = match &self.opened.files[file].bytes {
            Bytes::Memory {
                backing,
                data_start,
            } => Location {
                storage: self.storages[file]
                    .get_or_try_init(py, || Py::new(py, Storage::new(backing.clone())))?
                    .clone_ref(py),
                offset: data_start + info.begin as usize,
                nbytes: info.byte_len(),
            },
            Bytes::Pread(reader) => {
                let backing = py.detach(|| {
                    let mut backing = Backing::zeroed(info.byte_len())?;
                    reader
                        .read_into(&info.name, backing.as_mut_slice())
                        .map(|_| backing)
                });
                Location::whole(py, backing.map_err(CoreError::from)?)?
            }
        };
        record(py, location, info, &info.shape)
    }
}

/// The native handle behind `safeweights.safe_open`: the header is read and
/// validated at once, tensor data only when asked for, as [`RawTensor`]
/// records. Built by `open`, `from_bytes` or `from_memory`; `close` ends it
/// (later calls raise `ClosedFileError`).
#[pyclass(module = "safeweights._safeweights_rust", name = "_SafeFile", frozen)]
#[derive(Debug)]
pub struct SafeFile {
    state: RwLock<Option<Arc<Handle>>>,
}

impl SafeFile {
    fn new(handle: Handle) -> Self {
        SafeFile {
            state: RwLock::new(Some(Arc::new(handle))),
        }
    }

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

/// Opens the safetensors data held in `backing`.
fn open_backing(py: Python<'_>, backing: Backing) -> PyResult<SafeFile> {
    let backing = Arc::new(backing);
    let opened = py
        .detach(|| Opened::from_backing(backing))
        .map_err(CoreError::from)?;
    Ok(SafeFile::new(Handle::new(opened)))
}

#[pymethods]
impl SafeFile {
    /// Opens a file, or a sharded checkpoint (its `*.index.json` or its
    /// directory); `backend` is `"mmap"` (a private, copy-on-write map) or
    /// `"pread"` (positioned reads, for network filesystems).
    #[staticmethod]
    #[pyo3(signature = (path, backend = "mmap"))]
    fn open(py: Python<'_>, path: PathBuf, backend: &str) -> PyResult<Self> {
        let backend = parse_backend(backend)?;
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
                    CoreError::from(error).into()
                }
            })?;
        Ok(SafeFile::new(Handle::new(opened)))
    }

    /// Opens the file held in `data`; records are read-only views of it.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: Bound<'_, PyBytes>) -> PyResult<Self> {
        let bytes = data.as_bytes();
        let backing = Backing::Borrowed {
            address: bytes.as_ptr() as usize,
            len: bytes.len(),
            writable: false,
            owner: data.clone().into_any().unbind(),
        };
        open_backing(py, backing)
    }

    /// Opens the file held in `length` bytes at `address`, memory that
    /// `owner` keeps alive and in place (a pinned `bytearray`, say).
    ///
    /// Like `TensorSpec(data_ptr=...)`, this trusts its pointer: the
    /// caller (`safeweights.safe_open`, through `_frameworks.pin_buffer`)
    /// guarantees the memory is valid while `owner` lives.
    #[staticmethod]
    fn from_memory(
        py: Python<'_>,
        owner: Py<PyAny>,
        address: usize,
        length: usize,
        writable: bool,
    ) -> PyResult<Self> {
        let backing = Backing::Borrowed {
            owner,
            address,
            len: length,
            writable,
        };
        open_backing(py, backing)
    }

    /// Ends the handle; records and tensors already made stay valid.
    fn close(&self) {
        if let Ok(mut state) = self.state.write() {
            *state = None;
        }
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
    fn all_metadata<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let handle = self.handle()?;
        handle
            .opened
            .files
            .iter()
            .map(|file| metadata_dict(py, file.header.metadata()))
            .collect()
    }

    /// The record of one whole tensor.
    fn tensor(&self, py: Python<'_>, name: &str) -> PyResult<Py<RawTensor>> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(CoreError::from)?;
        handle.raw_tensor(py, file, info)
    }

    /// The records of every tensor, in file order.
    fn tensors(&self, py: Python<'_>) -> PyResult<Vec<Py<RawTensor>>> {
        let handle = self.handle()?;
        handle
            .opened
            .offset_order()
            .map(|(file, info)| handle.raw_tensor(py, file, info))
            .collect()
    }

    /// Reads `length` bytes of tensor `name`, starting `offset` bytes into
    /// its data, into the memory at `address`, with the GIL released (a
    /// positioned read with the pread backend, a copy from the map
    /// otherwise). `safeweights.dcp` reads each rank's rows straight into
    /// its destination tensor this way.
    ///
    /// `address` is trusted as `TensorSpec.data_ptr` is: `length` bytes are
    /// written there with no check. Pass only the address of a live,
    /// contiguous cpu tensor of at least `length` bytes, kept alive
    /// during the call.
    fn read_range_into(
        &self,
        py: Python<'_>,
        name: &str,
        offset: u64,
        address: usize,
        length: usize,
    ) -> PyResult<()> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(CoreError::from)?;
        let end = offset.checked_add(length as u64);
        if end.is_none_or(|end| end > info.byte_len() as u64) {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "tensor {name:?}: bytes {offset}..{offset}+{length} are outside its {} bytes",
                info.byte_len()
            )));
        }
        if length == 0 {
            return Ok(());
        }
        let info = info.clone();
        let opened = &handle.opened.files[file];
        py.detach(|| {
            // SAFETY: the caller's contract (above).
            let target = unsafe { caller_memory(address, length) };
            read_range(opened, &info, offset, target)
        })
        .map_err(|error| CoreError::from(error).into())
    }

    /// `read_range_into` for many ranges at once, in one call: each
    /// request is `(name, offset, address, length)`. Every range is checked
    /// first; the reads then run with the GIL released, in pieces of at
    /// most 16 MiB on up to `thread_count` threads (default 4), so one file's
    /// tensors fill their destinations in parallel.
    ///
    /// The addresses are trusted as in `read_range_into`, and must not
    /// overlap.
    #[pyo3(signature = (requests, thread_count = None))]
    fn read_ranges_into(
        &self,
        py: Python<'_>,
        requests: Vec<(String, u64, usize, usize)>,
        thread_count: Option<usize>,
    ) -> PyResult<()> {
        const PIECE: usize = 16 << 20;
        let handle = self.handle()?;
        let mut pieces: Vec<(usize, TensorInfo, u64, usize, usize)> = Vec::new();
        for (name, offset, address, length) in &requests {
            let (file, info) = handle.opened.lookup(name).map_err(CoreError::from)?;
            let end = offset.checked_add(*length as u64);
            if end.is_none_or(|end| end > info.byte_len() as u64) {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "tensor {name:?}: bytes {offset}..{offset}+{length} are outside its {} bytes",
                    info.byte_len()
                )));
            }
            let mut done = 0;
            while done < *length {
                let n = PIECE.min(length - done);
                pieces.push((file, info.clone(), offset + done as u64, address + done, n));
                done += n;
            }
        }
        let threads = thread_count.unwrap_or(4).clamp(1, pieces.len().max(1));
        let opened = &handle.opened.files;
        py.detach(|| {
            safeweights::pool::run_indexed(pieces.len(), threads, |i| {
                let (file, info, offset, address, length) = &pieces[i];
                // SAFETY: the caller's contract (above); pieces never overlap.
                let target = unsafe { caller_memory(*address, *length) };
                read_range(&opened[*file], info, *offset, target)
            })
        })
        .map(|_| ())
        .map_err(|error| CoreError::from(error).into())
    }

    /// A lazy slice of one tensor.
    fn slice(&self, name: &str) -> PyResult<SafeSlice> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(CoreError::from)?;
        let info = info.clone();
        Ok(SafeSlice { handle, file, info })
    }
}

/// Reads `target.len()` bytes of tensor `info` from `offset` on into
/// `target`, from whichever backing the file was opened with.
fn read_range(
    opened: &crate::source::OpenedFile,
    info: &TensorInfo,
    offset: u64,
    target: &mut [u8],
) -> safeweights::Result<()> {
    match (&opened.bytes, opened.memory_bytes(info)) {
        (Bytes::Pread(reader), _) => reader.read_range(info, offset, target),
        (_, Some(bytes)) => {
            let start = offset as usize;
            target.copy_from_slice(&bytes[start..start + target.len()]);
            Ok(())
        }
        (_, None) => Ok(()),
    }
}

/// The caller's buffer at `address`.
///
/// # Safety
/// `address` must be valid for reads and writes of `length` bytes, and not
/// used by anything else, for the returned lifetime.
unsafe fn caller_memory<'a>(address: usize, length: usize) -> &'a mut [u8] {
    // SAFETY: forwarded to the caller.
    unsafe { std::slice::from_raw_parts_mut(address as *mut u8, length) }
}

/// The native side of a `get_slice` object: the tensor's shape and dtype,
/// and records of the whole tensor or of a selection of it.
///
/// Indices follow numpy: integers (negative count from the end), slices
/// with any step (negative steps included), one `...`, and `None` for a new
/// axis. Out-of-range slice bounds are clipped; out-of-range integers raise.
/// As in the reference, booleans count as integers and `[]` selects nothing.
#[pyclass(module = "safeweights._safeweights_rust", name = "_SafeSlice", frozen)]
#[derive(Debug)]
pub struct SafeSlice {
    handle: Arc<Handle>,
    file: usize,
    info: TensorInfo,
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

    /// The record of the whole tensor, as `_SafeFile.tensor` gives it.
    fn whole(&self, py: Python<'_>) -> PyResult<Py<RawTensor>> {
        self.handle.raw_tensor(py, self.file, &self.info)
    }

    /// The record of the elements `index` selects, gathered into a new
    /// buffer (writable, never an alias of the file).
    fn read(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<RawTensor>> {
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
            )?)?;
            match &file.bytes {
                Bytes::Memory {
                    backing,
                    data_start,
                } => {
                    // A copy out of the map: a truncated file is an error.
                    backing.check_readable(data_start + info.begin as usize, info.byte_len())?;
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
        let (final_shape, out) = gathered.map_err(CoreError::from)?;
        record(py, Location::whole(py, out)?, info, &final_shape)
    }
}
