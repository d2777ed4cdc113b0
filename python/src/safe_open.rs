//! The native side of `safe_open`: lazy, zero-copy access to the tensors
//! of a file, a sharded checkpoint or a buffer, and of `get_slice`.
//!
//! Tensors come back as [`RawTensor`] records; the Python class
//! `safeweights.safe_open` wraps [`SafeFile`] and converts them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyList};
use safeweights::read::Backend;
use safeweights::remote::RemoteOptions;
use safeweights::resolve::is_url;
use safeweights::slice;
use safeweights::{Metadata, TensorEntry, TensorInfo};

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
    info: TensorEntry<'_>,
    shape: &[usize],
) -> PyResult<Py<RawTensor>> {
    let layout = Layout {
        dtype: framework_name(info.dtype),
        shape: framework_shape(info.name, info.dtype, shape)?,
        name: info.name.to_owned(),
        requires_grad: false,
        location: "cpu".to_owned(),
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
        info: TensorEntry<'_>,
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
                        .read_into(info.name, backing.as_mut_slice())
                        .map(|_| backing)
                });
                Location::whole(py, backing.map_err(CoreError::from)?)?
            }
        };
        record(py, location, info, info.shape)
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

/// Every tensor of a remote file, fetched in one batch of parallel ranged
/// requests into one buffer, whose records are views of it.
fn remote_records(
    py: Python<'_>,
    reader: &safeweights::read::SafetensorsFile,
    header: &safeweights::Header,
) -> PyResult<Vec<Py<RawTensor>>> {
    let tensors = header.tensors();
    let backing = py.detach(|| {
        let mut backing = Backing::zeroed(header.data_len() as usize)?;
        let mut rest = backing.as_mut_slice();
        let mut requests = Vec::with_capacity(tensors.len());
        for info in tensors {
            // Tensors tile the data section in offset order (validated).
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(info.byte_len());
            requests.push((info.name, head));
            rest = tail;
        }
        reader.read_many_into(&mut requests).map(|_| backing)
    });
    let storage = Py::new(
        py,
        Storage::new(Arc::new(backing.map_err(CoreError::from)?)),
    )?;
    header
        .tensors()
        .map(|info| {
            let location = Location {
                storage: storage.clone_ref(py),
                offset: info.begin as usize,
                nbytes: info.byte_len(),
            };
            record(py, location, info, info.shape)
        })
        .collect()
}

/// Remote options from `storage_options`: `timeout` (seconds),
/// `max_in_flight`, `part_size` and `retries` are ours, the rest go to the
/// store (endpoint, region, credentials).
pub fn remote_options(mut options: HashMap<String, String>) -> PyResult<RemoteOptions> {
    let mut remote = RemoteOptions {
        warn: |_| {},
        ..RemoteOptions::default()
    };
    let number = |key: &str, value: &str| {
        value
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "storage_options[{key:?}] must be a positive number, not {value:?}"
                ))
            })
    };
    if let Some(value) = options.remove("timeout") {
        remote.timeout = std::time::Duration::from_secs_f64(number("timeout", &value)?);
    }
    if let Some(value) = options.remove("max_in_flight") {
        remote.max_in_flight = number("max_in_flight", &value)? as usize;
    }
    if let Some(value) = options.remove("part_size") {
        remote.part_size = number("part_size", &value)? as usize;
    }
    if let Some(value) = options.remove("retries") {
        remote.retries = value.parse().map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "storage_options[\"retries\"] must be a whole number, not {value:?}"
            ))
        })?;
    }
    remote.storage_options = options.into_iter().collect();
    Ok(remote)
}

/// The server ignored Range, so the file was downloaded whole: say so
/// with a Python warning, which callers can filter.
fn warn_no_range(py: Python<'_>, url: &str) -> PyResult<()> {
    let message = std::ffi::CString::new(format!(
        "{url}: the server does not support HTTP Range requests; the whole file was downloaded once"
    ))
    .unwrap_or_default();
    PyErr::warn(
        py,
        &py.get_type::<pyo3::exceptions::PyRuntimeWarning>(),
        &message,
        1,
    )
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
    #[pyo3(signature = (path, backend = "mmap", storage_options = None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        backend: &str,
        storage_options: Option<HashMap<String, String>>,
    ) -> PyResult<Self> {
        let backend = parse_backend(backend)?;
        if let Some(url) = path.to_str().filter(|p| is_url(p)) {
            let remote = remote_options(storage_options.unwrap_or_default())?;
            let opened = py
                .detach(|| Opened::open_url(url, &remote))
                .map_err(CoreError::from)?;
            if let Some(file) = opened.files.first() {
                if let Bytes::Pread(reader) = &file.bytes {
                    if reader.remote().is_some_and(|r| r.downloaded_whole()) {
                        warn_no_range(py, url)?;
                    }
                }
            }
            return Ok(SafeFile::new(Handle::new(opened)));
        }
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

    /// Tensor names, sorted alphabetically. Python strings are made
    /// straight from the header's names, with no Rust copy in between.
    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let handle = self.handle()?;
        PyList::new(py, handle.opened.sorted_names())
    }

    /// Tensor names in the order of their data in the file.
    fn offset_keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let handle = self.handle()?;
        PyList::new(py, handle.opened.offset_order().map(|(_, t)| t.name))
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

    /// Reads the bytes of every tensor (`name=None`) or of one into memory
    /// with parallel reads, before they are touched: from a cold page cache
    /// several requests are kept in flight instead of one page fault at a
    /// time. A hint: nothing happens for buffers and pread handles.
    #[pyo3(signature = (name=None))]
    fn read_ahead(&self, py: Python<'_>, name: Option<&str>) -> PyResult<()> {
        let handle = self.handle()?;
        let opened = &handle.opened;
        match name {
            Some(name) => {
                let (file, info) = opened.lookup(name).map_err(CoreError::from)?;
                py.detach(|| opened.files[file].read_ahead(Some(info)));
            }
            None => py.detach(|| opened.files.iter().for_each(|f| f.read_ahead(None))),
        }
        Ok(())
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
        let mut records = Vec::new();
        for (index, file) in handle.opened.files.iter().enumerate() {
            match &file.bytes {
                Bytes::Pread(reader) if reader.remote().is_some() => {
                    records.extend(remote_records(py, reader, &file.header)?);
                }
                _ => {
                    for info in file.header.tensors() {
                        records.push(handle.raw_tensor(py, index, info)?);
                    }
                }
            }
        }
        Ok(records)
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
        let opened = &handle.opened.files[file];
        py.detach(|| {
            // SAFETY: the caller's contract (above).
            let target = unsafe { caller_memory(address, length) };
            read_range(opened, info, offset, target)
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
        let mut pieces: Vec<(usize, TensorEntry<'_>, u64, usize, usize)> = Vec::new();
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
                pieces.push((file, info, offset + done as u64, address + done, n));
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
                read_range(&opened[*file], *info, *offset, target)
            })
        })
        .map(|_| ())
        .map_err(|error| CoreError::from(error).into())
    }

    /// A lazy slice of one tensor.
    fn slice(&self, name: &str) -> PyResult<SafeSlice> {
        let handle = self.handle()?;
        let (file, info) = handle.opened.lookup(name).map_err(CoreError::from)?;
        let info = info.to_info();
        Ok(SafeSlice { handle, file, info })
    }
}

/// Reads `target.len()` bytes of tensor `info` from `offset` on into
/// `target`, from whichever backing the file was opened with.
fn read_range(
    opened: &crate::source::OpenedFile,
    info: TensorEntry<'_>,
    offset: u64,
    target: &mut [u8],
) -> safeweights::Result<()> {
    match &opened.bytes {
        Bytes::Pread(reader) => reader.read_range(info, offset, target),
        Bytes::Memory {
            backing,
            data_start,
        } => {
            // The callers checked `offset + target.len()` against the tensor.
            let start = data_start + info.begin as usize + offset as usize;
            target.copy_from_slice(&backing.as_slice()[start..start + target.len()]);
            Ok(())
        }
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
        self.handle.raw_tensor(py, self.file, self.info.as_entry())
    }

    /// The record of the elements `index` selects, gathered into a new
    /// buffer (writable, never an alias of the file).
    fn read(&self, py: Python<'_>, index: &Bound<'_, PyAny>) -> PyResult<Py<RawTensor>> {
        let args = parse_index(index)?;
        let info = self.info.as_entry();
        let file = &self.handle.opened.files[self.file];
        let gathered = py.detach(|| -> safeweights::Result<(Vec<usize>, Backing)> {
            let selection = slice::plan(info.name, info.shape, &args)?;
            let mut out = Backing::zeroed(slice::output_len(
                info.name, info.dtype, info.shape, &selection,
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
                        info.name,
                        info.dtype,
                        info.shape,
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
