//! Writing: `TensorSpec`, `serialize`, `serialize_file`, sharded writes, and
//! the reference's `deserialize`.
//!
//! Tensors are passed as raw pointers (`TensorSpec.data_ptr`), exactly as in
//! the reference, so their bytes are read in place with no copy; the Python
//! callers keep the arrays alive for the duration of the call. All copying
//! and file I/O runs with the GIL released.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};
use safeweights::remote::serialize_to_url;
use safeweights::resolve::is_url;
use safeweights::shards::{parse_size as core_parse_size, write_sharded};
use safeweights::write::{
    interruptible, serialize_into, serialize_to_file, serialize_to_file_with_checksums, Layout,
    TensorRef, TensorSpec as CoreSpec, WriteOptions,
};
use safeweights::{Dtype, Metadata};

use crate::dtype::{self, PACKED_F4};
use crate::errors::{io_to_py_write_err, CoreError, InvalidTensorError};
use crate::safe_open::remote_options;

/// Describes one tensor for [`serialize`] / [`serialize_file`]:
/// `TensorSpec(dtype="float32", shape=[2, 3], data_ptr=ptr, data_len=24)`.
///
/// `dtype` is a framework name (`"float32"`, `"bfloat16"`,
/// `"float8_e4m3fn"`, ...) or a format name (`"F32"`). For
/// `float4_e2m1fn_x2` (two F4 values per byte) pass the framework's storage
/// shape: the last dimension is doubled to the logical F4 shape, as the
/// reference does.
///
/// `data_ptr` is trusted, as the reference trusts it: the writers read
/// `data_len` bytes from that address with no check at all. A wrong
/// address or length reads other memory or crashes the interpreter. Pass
/// only the address of a live, contiguous CPU tensor or array of at least
/// `data_len` bytes (`tensor.data_ptr()`, `array.ctypes.data`), and keep it
/// alive and unchanged during every `serialize`/`serialize_file` call using
/// it. `safeweights.torch` and `safeweights.numpy` do this for you.
#[pyclass(module = "safeweights._safeweights_rust", name = "TensorSpec", frozen)]
#[derive(Debug, Clone)]
pub struct TensorSpec {
    dtype: Dtype,
    shape: Vec<usize>,
    data_ptr: usize,
    data_len: usize,
}

#[pymethods]
impl TensorSpec {
    #[new]
    #[pyo3(signature = (*, dtype, shape, data_ptr, data_len))]
    fn new(dtype: &str, shape: Vec<usize>, data_ptr: usize, data_len: usize) -> PyResult<Self> {
        let parsed = dtype::parse(dtype)?;
        let mut shape = shape;
        if dtype == PACKED_F4 {
            if let Some(last) = shape.last_mut() {
                *last *= 2;
            }
        }
        Ok(TensorSpec {
            dtype: parsed,
            shape,
            data_ptr,
            data_len,
        })
    }

    /// The format's dtype name, e.g. `"F32"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype.name()
    }

    /// The logical shape written to the header.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.shape.clone()
    }

    /// The raw address of the tensor's bytes.
    #[getter]
    fn data_ptr(&self) -> usize {
        self.data_ptr
    }

    /// The length of the tensor's bytes.
    #[getter]
    fn data_len(&self) -> usize {
        self.data_len
    }

    fn __repr__(&self) -> String {
        format!(
            "TensorSpec(dtype='{}', shape={:?}, data_ptr={}, data_len={})",
            self.dtype.name(),
            self.shape,
            self.data_ptr,
            self.data_len
        )
    }
}

/// A tensor to write: its name and spec (the caller keeps its bytes alive).
struct Input {
    name: String,
    spec: TensorSpec,
}

impl Input {
    /// The tensor's bytes.
    ///
    /// # Safety
    /// The memory behind `data_ptr` must be valid for `data_len` bytes for
    /// the returned lifetime (the `TensorSpec` contract).
    unsafe fn data(&self) -> &[u8] {
        if self.spec.data_len == 0 {
            return &[];
        }
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts(self.spec.data_ptr as *const u8, self.spec.data_len) }
    }
}

/// Reads `{name: TensorSpec}` (a dict, or a sequence of pairs) in order.
/// Any other value, raw dicts included (the form before 0.8.0), is a
/// `TypeError`, as the reference raises.
fn collect_inputs(tensor_dict: &Bound<'_, PyAny>) -> PyResult<Vec<Input>> {
    let items: Vec<(String, Bound<'_, PyAny>)> = if let Ok(dict) = tensor_dict.cast::<PyDict>() {
        dict.iter()
            .map(|(k, v)| Ok((k.extract()?, v)))
            .collect::<PyResult<_>>()?
    } else {
        tensor_dict.extract::<Vec<(String, Bound<'_, PyAny>)>>()?
    };
    items
        .into_iter()
        .map(|(name, value)| {
            let spec = value.cast::<TensorSpec>().map_err(|_| {
                pyo3::exceptions::PyTypeError::new_err(format!(
                    "tensor {name:?}: expected a TensorSpec, got {}",
                    value.get_type()
                ))
            })?;
            Ok(Input {
                name,
                spec: spec.get().clone(),
            })
        })
        .collect()
}

/// The core's view of the inputs.
///
/// # Safety
/// Every input's memory must stay valid while the result is used.
unsafe fn tensor_refs(inputs: &[Input]) -> Vec<(&str, TensorRef<'_>)> {
    inputs
        .iter()
        .map(|i| {
            // SAFETY: forwarded to the caller, who keeps every input's
            // memory valid while the result is used.
            let data = unsafe { i.data() };
            (
                i.name.as_str(),
                TensorRef::new(i.spec.dtype, i.spec.shape.clone(), data),
            )
        })
        .collect()
}

/// The core's spec of every input, once each has been checked to declare
/// as many bytes as its shape and dtype need.
fn checked_specs(inputs: &[Input]) -> PyResult<Vec<CoreSpec>> {
    inputs
        .iter()
        .map(|input| {
            let spec = CoreSpec::new(
                input.name.as_str(),
                input.spec.dtype,
                input.spec.shape.clone(),
            );
            let expected = spec.byte_len().map_err(CoreError::from)?;
            if expected != input.spec.data_len {
                return Err(InvalidTensorError::new_err(format!(
                    "tensor {:?}: shape {:?} of {} needs {expected} bytes but data_len is {}",
                    input.name, input.spec.shape, input.spec.dtype, input.spec.data_len
                )));
            }
            Ok(spec)
        })
        .collect()
}

fn write_options(alignment: usize) -> WriteOptions {
    WriteOptions {
        alignment,
        ..WriteOptions::default()
    }
}

/// `durable`: flush the file before its rename and the directory after,
/// so a power cut right after the call returns cannot lose the file.
fn durable_options(alignment: usize, durable: bool) -> WriteOptions {
    WriteOptions {
        sync: durable,
        ..write_options(alignment)
    }
}

/// Serializes tensors to `bytes`, byte-identical to the reference for the
/// same input (metadata keys are written sorted).
///
/// Example: `serialize({"w": TensorSpec(dtype="float32", shape=[2], data_ptr=p, data_len=8)})`.
#[pyfunction]
#[pyo3(signature = (tensor_dict, metadata = None, *, alignment = 8))]
pub fn serialize<'py>(
    py: Python<'py>,
    tensor_dict: &Bound<'py, PyAny>,
    metadata: Option<Metadata>,
    alignment: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let inputs = collect_inputs(tensor_dict)?;
    let specs = checked_specs(&inputs)?;
    let layout = Layout::plan(&specs, metadata.as_ref(), &write_options(alignment))
        .map_err(CoreError::from)?;
    // SAFETY: the TensorSpec contract; the callers keep the arrays alive.
    let tensors = unsafe { tensor_refs(&inputs) };
    // The bytes object starts zeroed; the copy runs without the GIL.
    PyBytes::new_with(py, layout.file_len() as usize, |out| {
        py.detach(|| serialize_into(&layout, &tensors, out))
            .map_err(|error| CoreError::from(error).into())
    })
}

/// Serializes tensors into `filename` through a temporary file and a
/// rename. The blocks are allocated up front and the tensors written in
/// file order straight from their memory, with no intermediate copy. With
/// `durable` (the default) the file and then its directory are flushed to
/// disk before the call returns.
#[pyfunction]
#[pyo3(signature = (tensor_dict, filename, metadata = None, *, alignment = 8, durable = true, storage_options = None))]
pub fn serialize_file(
    py: Python<'_>,
    tensor_dict: &Bound<'_, PyAny>,
    filename: PathBuf,
    metadata: Option<Metadata>,
    alignment: usize,
    durable: bool,
    storage_options: Option<std::collections::HashMap<String, String>>,
) -> PyResult<()> {
    let inputs = collect_inputs(tensor_dict)?;
    checked_specs(&inputs)?;
    if let Some(url) = filename.to_str().filter(|f| is_url(f)) {
        let remote = remote_options(storage_options.unwrap_or_default())?;
        return write_interruptibly(py, || {
            // SAFETY: the TensorSpec contract; the callers keep the arrays alive.
            let refs = unsafe { tensor_refs(&inputs) };
            let options = durable_options(alignment, durable);
            serialize_to_url(&refs, metadata.as_ref(), &options, url, &remote).map(|_| ())
        });
    }
    write_interruptibly(py, || {
        // SAFETY: the TensorSpec contract; the callers keep the arrays alive.
        let refs = unsafe { tensor_refs(&inputs) };
        serialize_to_file(
            &refs,
            metadata.as_ref(),
            &filename,
            &durable_options(alignment, durable),
        )
    })
}

/// Like `serialize_file`, and hashes each tensor (XXH3-128) in the same
/// pass as it is written, stores the digests as a JSON object in the
/// metadata under `checksum_key`, and returns them as `{name: hex}`.
///
/// Example: `serialize_file_checksummed(specs, "a.safetensors", None, "safeweights.xxh3_128")`.
#[pyfunction]
#[pyo3(signature = (tensor_dict, filename, metadata, checksum_key, *, alignment = 8, durable = true))]
pub fn serialize_file_checksummed(
    py: Python<'_>,
    tensor_dict: &Bound<'_, PyAny>,
    filename: PathBuf,
    metadata: Option<Metadata>,
    checksum_key: String,
    alignment: usize,
    durable: bool,
) -> PyResult<std::collections::BTreeMap<String, String>> {
    let inputs = collect_inputs(tensor_dict)?;
    checked_specs(&inputs)?;
    write_interruptibly(py, || {
        // SAFETY: the TensorSpec contract; the callers keep the arrays alive.
        let refs = unsafe { tensor_refs(&inputs) };
        serialize_to_file_with_checksums(
            &refs,
            metadata.as_ref(),
            &checksum_key,
            &filename,
            &durable_options(alignment, durable),
        )
    })
}

/// Runs a file write with the GIL released, running Python's signal
/// handlers between its chunks (every 64 MiB): when one raises (Ctrl-C's
/// `KeyboardInterrupt`), the write is abandoned, its temporary file
/// removed, the destination left as it was, and that exception raised.
fn write_interruptibly<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> safeweights::Result<T> + Send,
) -> PyResult<T> {
    let raised: Mutex<Option<PyErr>> = Mutex::new(None);
    let result = py.detach(|| {
        let signalled = || {
            Python::attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(error) => {
                    *raised.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
                    true
                }
            })
        };
        interruptible(&signalled, work)
    });
    match raised.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(error) => Err(error),
        None => result.map_err(|error| CoreError::Write(error).into()),
    }
}

/// A shard size in bytes: a positive integer, or a string such as `"5GB"`,
/// `"500MB"`, `"2GiB"` (the CLI's `--max-shard-size` rules).
///
/// Example: `parse_size("5GB") == 5_000_000_000`.
#[pyfunction]
pub fn parse_size(value: &Bound<'_, PyAny>) -> PyResult<u64> {
    shard_size(value)
}

fn shard_size(max_shard_size: &Bound<'_, PyAny>) -> PyResult<u64> {
    match max_shard_size.extract::<u64>() {
        Ok(bytes) if bytes > 0 => Ok(bytes),
        _ => {
            let text: String = max_shard_size.str()?.extract()?;
            core_parse_size(&text).ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err(format!(
                    "max_shard_size {text:?} is not a size such as \"5GB\", \"500MB\" or a number of bytes"
                ))
            })
        }
    }
}

/// Writes tensors into `directory` as `model-0000N-of-0000M.safetensors`
/// shards of at most `max_shard_size` (bytes or a string such as `"5GB"`)
/// plus `model.safetensors.index.json`, or as one `model.safetensors` when
/// everything fits in one shard. Returns the paths written.
///
/// A checkpoint already in `directory` raises `FileExistsError` unless
/// `overwrite`; it is then replaced atomically as a set (the old one stays
/// loadable until the new one is complete), and every shard and the index
/// carry one checkpoint id that loaders check.
#[pyfunction]
#[pyo3(signature = (tensor_dict, directory, max_shard_size, metadata = None, *, overwrite = true, durable = true))]
pub fn serialize_sharded(
    py: Python<'_>,
    tensor_dict: &Bound<'_, PyAny>,
    directory: PathBuf,
    max_shard_size: &Bound<'_, PyAny>,
    metadata: Option<Metadata>,
    overwrite: bool,
    durable: bool,
) -> PyResult<Vec<PathBuf>> {
    let limit = shard_size(max_shard_size)?;
    let inputs = collect_inputs(tensor_dict)?;
    checked_specs(&inputs)?;
    std::fs::create_dir_all(&directory)
        .map_err(|e| io_to_py_write_err(&e, Some(directory.display().to_string())))?;
    write_interruptibly(py, || {
        // SAFETY: the TensorSpec contract; the callers keep the arrays alive.
        let refs = unsafe { tensor_refs(&inputs) };
        write_sharded(
            &directory,
            &refs,
            metadata.as_ref(),
            limit,
            &WriteOptions {
                overwrite,
                ..durable_options(8, durable)
            },
        )
    })
}

/// Parses a whole file held in `bytes` and returns
/// `[(name, {"dtype": "F32", "shape": [...], "data": bytearray}), ...]`
/// sorted by name, as the reference does (the data is copied).
#[pyfunction]
pub fn deserialize<'py>(
    py: Python<'py>,
    bytes: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyList>> {
    let owned;
    let data: &[u8] = if let Ok(b) = bytes.cast::<PyBytes>() {
        b.as_bytes()
    } else if let Ok(b) = bytes.cast::<PyByteArray>() {
        owned = b.to_vec();
        &owned
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "argument 'bytes': expected bytes or bytearray, got {}",
            bytes.get_type().name()?
        )));
    };
    let file = safeweights::read::SafeTensors::parse(data).map_err(CoreError::from)?;
    let out = PyList::empty(py);
    for name in file.header().sorted_names() {
        let view = file.tensor(name).map_err(CoreError::from)?;
        let entry = PyDict::new(py);
        entry.set_item("dtype", view.dtype().name())?;
        entry.set_item("shape", view.shape().to_vec())?;
        entry.set_item("data", PyByteArray::new(py, view.data()))?;
        out.append((name, entry))?;
    }
    Ok(out)
}
