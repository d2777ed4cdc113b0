//! Legacy `torch.save` checkpoints (zip and pre-1.6 formats) read through
//! `safeweights-pickle`'s allow-listing pickle VM: nothing in the file is
//! ever executed, and no Python pickle machinery is involved.
//!
//! The rebuilt object tree is converted to Python values; tensors become
//! [`RawTensor`] records (the same as `safe_open` gives), which the Python
//! side (`safeweights._legacy`) turns into torch tensors.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PySet, PyString, PyTuple};
use safeweights_pickle::pickle::{ObjectValue, StorageRef, TensorRef, Value, ViewKey};
use safeweights_pickle::torch::{Checkpoint, TensorEntry};
use safeweights_pickle::Limits;

use crate::errors::{CheckpointError, CoreError};
use crate::record::{Layout, Location, RawTensor};
use crate::storage::{Backing, Storage};

/// Nodes visited while converting, to stop graphs that expand exponentially.
const MAX_NODES: u64 = 50_000_000;

/// A `torch.<name>` dtype object found in the pickle.
#[pyclass(
    module = "safeweights._safeweights_rust",
    name = "_PickledDtype",
    frozen,
    get_all
)]
#[derive(Debug)]
pub struct PickledDtype {
    name: &'static str,
}

/// An allowed global the reader records rather than interprets: called
/// (REDUCE), instantiated (NEWOBJ) or only referenced; `safeweights._legacy`
/// rebuilds it as torch's `weights_only` unpickler would.
#[pyclass(
    module = "safeweights._safeweights_rust",
    name = "_PickledObject",
    frozen,
    get_all
)]
#[derive(Debug)]
pub struct PickledObject {
    /// Dotted name of the global, e.g. `"torch.device"`.
    global_name: String,
    /// Whether the pickle called or instantiated it (else: a bare reference).
    called: bool,
    /// NEWOBJ (`cls.__new__(cls, *args)`) rather than REDUCE.
    new: bool,
    /// Call arguments.
    args: Py<PyTuple>,
    /// BUILD state, or None.
    state: Py<PyAny>,
    /// Whether BUILD gave a state (it may be None itself).
    has_state: bool,
    /// Appended items.
    items: Py<PyList>,
    /// `(key, value)` pairs set.
    dict_items: Py<PyList>,
}

/// Identity of a view: its exact bytes and requires_grad. Identical
/// views come back as one tensor.
fn view_key(t: &TensorRef) -> (ViewKey, bool) {
    (t.view_key(), t.requires_grad)
}

/// Every distinct tensor of the tree, in first-seen order.
#[derive(Default)]
struct Tensors {
    list: Vec<Arc<TensorRef>>,
    by_view: HashMap<(ViewKey, bool), usize>,
    by_ptr: HashMap<*const TensorRef, usize>,
    /// Containers already walked: a shared one is walked once.
    visited: std::collections::HashSet<*const ()>,
    nodes: u64,
}

impl Tensors {
    fn collect(&mut self, value: &Value) -> PyResult<()> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CheckpointError::new_err(
                "the checkpoint's object graph is too large (an expansion bomb?)",
            ));
        }
        let first_visit = |visited: &mut std::collections::HashSet<*const ()>, ptr: *const ()| {
            visited.insert(ptr)
        };
        match value {
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                if !first_visit(&mut self.visited, items.as_ptr().cast()) {
                    return Ok(());
                }
                items.iter().try_for_each(|v| self.collect(v))
            }
            Value::Dict(items) if !first_visit(&mut self.visited, items.as_ptr().cast()) => Ok(()),
            Value::Dict(items) => items.iter().try_for_each(|(k, v)| {
                self.collect(k)?;
                self.collect(v)
            }),
            Value::Tensor(t) => {
                self.add(t.clone());
                Ok(())
            }
            Value::Storage(s) => {
                self.add(Arc::new(whole_storage(s)));
                Ok(())
            }
            Value::Object(object) => {
                if !first_visit(&mut self.visited, Arc::as_ptr(object).cast()) {
                    return Ok(());
                }
                object
                    .args
                    .iter()
                    .chain(object.items.iter())
                    .chain(object.state.iter())
                    .try_for_each(|v| self.collect(v))?;
                object.dict_items.iter().try_for_each(|(k, v)| {
                    self.collect(k)?;
                    self.collect(v)
                })
            }
            _ => Ok(()),
        }
    }

    fn add(&mut self, tensor: Arc<TensorRef>) -> usize {
        let ptr = Arc::as_ptr(&tensor);
        if let Some(&i) = self.by_ptr.get(&ptr) {
            return i;
        }
        let i = *self.by_view.entry(view_key(&tensor)).or_insert_with(|| {
            self.list.push(tensor.clone());
            self.list.len() - 1
        });
        self.by_ptr.insert(ptr, i);
        i
    }

    fn index_of(&self, tensor: &TensorRef) -> Option<usize> {
        self.by_view.get(&view_key(tensor)).copied()
    }
}

/// A bare storage as a 1-D tensor of its elements (bytes when untyped).
fn whole_storage(storage: &Arc<StorageRef>) -> TensorRef {
    let scalar = storage
        .scalar
        .or_else(|| safeweights_pickle::scalar::ScalarType::from_dtype_name("uint8"))
        .expect("uint8 is a known scalar type");
    let len = storage.view.map_or(storage.numel, |(_, len)| len) * storage.element_size() as u64
        / scalar.size as u64;
    TensorRef {
        storage: storage.clone(),
        scalar,
        offset: 0,
        shape: vec![len],
        stride: vec![1],
        requires_grad: false,
        parameter: false,
    }
}

/// Converts the tree to Python, sharing containers the pickle shared.
struct Converter<'a, 'py> {
    py: Python<'py>,
    tensors: &'a Tensors,
    records: Vec<Py<RawTensor>>,
    memo: HashMap<*const (), Py<PyAny>>,
}

impl<'py> Converter<'_, 'py> {
    fn convert(&mut self, value: &Value) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let shared = match value {
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => {
                Some(items.as_ptr().cast::<()>())
            }
            Value::Dict(items) => Some(items.as_ptr().cast::<()>()),
            Value::Object(object) => Some(Arc::as_ptr(object).cast::<()>()),
            _ => None,
        };
        if let Some(object) = shared.and_then(|ptr| self.memo.get(&ptr)) {
            return Ok(object.bind(py).clone());
        }
        let object = match value {
            Value::None => py.None().into_bound(py),
            Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
            Value::Int(i) => i.into_pyobject(py)?.into_any(),
            Value::BigInt(bytes) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item("signed", true)?;
                py.get_type::<pyo3::types::PyInt>().call_method(
                    "from_bytes",
                    (PyBytes::new(py, bytes), "little"),
                    Some(&kwargs),
                )?
            }
            Value::Float(f) => f.into_pyobject(py)?.into_any(),
            Value::Complex(re, im) => pyo3::types::PyComplex::from_doubles(py, *re, *im).into_any(),
            Value::Str(s) => PyString::new(py, s).into_any(),
            Value::Bytes(b) => PyBytes::new(py, b).into_any(),
            Value::ByteArray(b) => PyByteArray::new(py, b).into_any(),
            Value::Tuple(items) => {
                let converted = items
                    .iter()
                    .map(|v| self.convert(v))
                    .collect::<PyResult<Vec<_>>>()?;
                PyTuple::new(py, converted)?.into_any()
            }
            Value::List(items) => {
                let converted = items
                    .iter()
                    .map(|v| self.convert(v))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, converted)?.into_any()
            }
            Value::Set(items) => {
                let converted = items
                    .iter()
                    .map(|v| self.convert(v))
                    .collect::<PyResult<Vec<_>>>()?;
                PySet::new(py, converted)?.into_any()
            }
            Value::Dict(items) => {
                let dict = PyDict::new(py);
                for (k, v) in items.iter() {
                    dict.set_item(self.convert(k)?, self.convert(v)?)?;
                }
                dict.into_any()
            }
            Value::Dtype(scalar) => Bound::new(py, PickledDtype { name: scalar.name })?.into_any(),
            Value::Global(name) => Bound::new(py, self.reference(name)?)?.into_any(),
            Value::Object(object) => Bound::new(py, self.object(object)?)?.into_any(),
            Value::Tensor(t) => self.tensor(t)?,
            Value::Storage(s) => self.tensor(&whole_storage(s))?,
            other => {
                return Err(CheckpointError::new_err(format!(
                    "unsupported value of type {} in the checkpoint",
                    other.type_name()
                )))
            }
        };
        if let Some(ptr) = shared {
            self.memo.insert(ptr, object.clone().unbind());
        }
        Ok(object)
    }

    fn reference(&mut self, name: &str) -> PyResult<PickledObject> {
        let py = self.py;
        Ok(PickledObject {
            global_name: name.to_owned(),
            called: false,
            new: false,
            args: PyTuple::empty(py).unbind(),
            state: py.None(),
            has_state: false,
            items: PyList::empty(py).unbind(),
            dict_items: PyList::empty(py).unbind(),
        })
    }

    fn object(&mut self, object: &ObjectValue) -> PyResult<PickledObject> {
        let py = self.py;
        let args = object
            .args
            .iter()
            .map(|v| self.convert(v))
            .collect::<PyResult<Vec<_>>>()?;
        let items = object
            .items
            .iter()
            .map(|v| self.convert(v))
            .collect::<PyResult<Vec<_>>>()?;
        let mut dict_items = Vec::with_capacity(object.dict_items.len());
        for (k, v) in object.dict_items.iter() {
            dict_items.push(PyTuple::new(py, [self.convert(k)?, self.convert(v)?])?);
        }
        let state = match &object.state {
            Some(state) => self.convert(state)?.unbind(),
            None => py.None(),
        };
        Ok(PickledObject {
            global_name: object.global.to_string(),
            called: true,
            new: object.new,
            args: PyTuple::new(py, args)?.unbind(),
            state,
            has_state: object.state.is_some(),
            items: PyList::new(py, items)?.unbind(),
            dict_items: PyList::new(py, dict_items)?.unbind(),
        })
    }

    fn tensor(&self, tensor: &TensorRef) -> PyResult<Bound<'py, PyAny>> {
        let index = self
            .tensors
            .index_of(tensor)
            .ok_or_else(|| CheckpointError::new_err("internal error: tensor not collected"))?;
        Ok(self.records[index].bind(self.py).clone().into_any())
    }
}

/// Reads a legacy checkpoint from a path, `bytes` or `bytearray`; returns
/// `(tree, records)`: the object tree with `RawTensor`, `_PickledDtype`
/// and `_PickledObject` records in it, and every distinct tensor's record
/// once (identical views are one record, the very object found at each
/// place in the tree). `allowed_classes` are `module.qualname` names the
/// caller allows beyond the built-in allow-list (recorded as
/// `_PickledObject`s, never built here).
#[pyfunction]
#[pyo3(signature = (source, allowed_classes = Vec::new()))]
pub fn load_torch_pickle<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    allowed_classes: Vec<String>,
) -> PyResult<Bound<'py, PyTuple>> {
    let limits = Limits {
        allowed_classes,
        ..Limits::default()
    };
    let in_memory = if let Ok(bytes) = source.cast::<PyBytes>() {
        Some(bytes.as_bytes().to_vec())
    } else if let Ok(array) = source.cast::<PyByteArray>() {
        Some(array.to_vec())
    } else {
        None
    };
    let (checkpoint, mapped) = if let Some(owned) = in_memory {
        (
            py.detach(|| Checkpoint::from_bytes_with_limits(owned, limits)),
            None,
        )
    } else {
        let path: PathBuf = source.extract()?;
        py.detach(|| {
            (
                Checkpoint::open_with_limits(&path, limits),
                map_private(&path),
            )
        })
    };
    let checkpoint = checkpoint.map_err(CoreError::from)?;
    let mut tensors = Tensors::default();
    tensors.collect(checkpoint.root())?;
    let data = py.detach(|| read_all(&checkpoint, &tensors.list, mapped.as_ref()))?;
    let map_storage = match &mapped {
        Some(map) if data.iter().any(|d| matches!(d, TensorData::Mapped(_))) => {
            Some(Py::new(py, Storage::new(map.clone()))?)
        }
        _ => None,
    };
    let mut records = Vec::with_capacity(data.len());
    for (tensor, bytes) in tensors.list.iter().zip(data) {
        let location = match (bytes, &map_storage) {
            (TensorData::Mapped(range), Some(storage)) => Location {
                storage: storage.clone_ref(py),
                offset: range.start,
                nbytes: range.len(),
            },
            (TensorData::Copied(backing), _) => Location::whole(py, backing)?,
            (TensorData::Mapped(_), None) => {
                return Err(CheckpointError::new_err(
                    "internal error: a mapped tensor without a map",
                ))
            }
        };
        let layout = Layout {
            dtype: tensor.scalar.name,
            shape: tensor
                .shape
                .iter()
                .map(|&n| usize::try_from(n))
                .collect::<Result<_, _>>()
                .map_err(|_| {
                    CheckpointError::new_err("a tensor dimension exceeds the address space")
                })?,
            name: entry_name(tensor),
            requires_grad: tensor.requires_grad,
            location: tensor.storage.location.to_string(),
        };
        records.push(Py::new(py, RawTensor::new(location, layout))?);
    }
    let all_records = PyList::new(py, records.iter().map(|r| r.clone_ref(py)))?;
    let mut converter = Converter {
        py,
        tensors: &tensors,
        records,
        memo: HashMap::new(),
    };
    let tree = converter.convert(checkpoint.root())?;
    PyTuple::new(py, [tree, all_records.into_any()])
}

/// How messages and records name a tensor of a pickle checkpoint.
fn entry_name(tensor: &TensorRef) -> String {
    format!("tensor of storage {}", tensor.storage.key)
}

/// One tensor's bytes: a range of the private map, or a copy.
enum TensorData {
    Mapped(Range<usize>),
    Copied(Backing),
}

/// Every distinct tensor's bytes, contiguous and little-endian: zero-copy
/// ranges of `mapped` where the reader found them stored that way (it
/// borrows them from its own map after checking the record's CRC), copies
/// otherwise (non-contiguous views, big-endian or compressed records).
/// (Copying on several threads measured slower: page faults on the source
/// map and the new buffers contend in the kernel.)
fn read_all(
    checkpoint: &Checkpoint,
    tensors: &[Arc<TensorRef>],
    mapped: Option<&Arc<Backing>>,
) -> Result<Vec<TensorData>, CoreError> {
    tensors
        .iter()
        .map(|tensor| {
            let entry = TensorEntry {
                name: entry_name(tensor),
                dtype: tensor.scalar.dtype.unwrap_or(safeweights::Dtype::U8),
                shape: tensor.shape.clone(),
                tensor: tensor.clone(),
            };
            let bytes = checkpoint.read_tensor(&entry)?;
            // Bytes the reader borrowed from its own map are stored in the
            // file exactly as loaded: view them in our private map instead.
            let range = match (&bytes, mapped) {
                (Cow::Borrowed(loaded), Some(map)) => checkpoint.file_range(loaded).filter(|r| {
                    r.start % tensor.scalar.size.max(1) == 0 && r.end <= map.as_slice().len()
                }),
                _ => None,
            };
            Ok(match range {
                Some(range) => TensorData::Mapped(range),
                // A copy the machine cannot hold is a MemoryError, not an abort.
                None => TensorData::Copied(
                    Backing::copy_of(&bytes).map_err(|e| CoreError::Read(e.into()))?,
                ),
            })
        })
        .collect()
}

/// The checkpoint file mapped privately (copy-on-write), so tensors stored
/// as they load can be writable views whose writes never reach the file;
/// `None` when it cannot be mapped (the tensors are then copied).
fn map_private(path: &Path) -> Option<Arc<Backing>> {
    let map = Backing::map_private(&File::open(path).ok()?, path).ok()?;
    Some(Arc::new(map))
}
