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
use safeweights::read::bus_error::guard;
use safeweights::Error;
use safeweights_pickle::pickle::{ObjectValue, StorageRef, TensorRef, Value, ViewKey};
use safeweights_pickle::torch::{Checkpoint, TensorEntry};
use safeweights_pickle::Limits;

use crate::errors::{CheckpointError, CoreError};
use crate::record::{Layout, Location, RawTensor, View};
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
/// `_PickledObject`s, never built here). With `mmap` false, every tensor
/// of a file is copied out under the bus-error guard (a file truncated
/// meanwhile raises) instead of viewing a private map of the file.
#[pyfunction]
#[pyo3(signature = (source, allowed_classes = Vec::new(), mmap = true))]
pub fn load_torch_pickle<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    allowed_classes: Vec<String>,
    mmap: bool,
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
                if mmap { map_private(&path) } else { None },
            )
        })
    };
    let checkpoint = checkpoint.map_err(CoreError::from)?;
    let mut tensors = Tensors::default();
    tensors.collect(checkpoint.root())?;
    let views = Views::plan(&tensors.list);
    // The bases first, then every tensor that is not a view of one.
    let reads: Vec<Arc<TensorRef>> = views
        .bases
        .iter()
        .cloned()
        .chain(
            tensors
                .list
                .iter()
                .zip(&views.base_of)
                .filter(|(_, base)| base.is_none())
                .map(|(tensor, _)| tensor.clone()),
        )
        .collect();
    // Copies out of the reader's map (not the private one, whose pages
    // become tensors) meet a truncated file as an error, not a crash.
    let data = py.detach(|| {
        guard(|| read_all(&checkpoint, &reads, mapped.as_ref())).unwrap_or_else(|fault| {
            let path = fault.path.clone();
            Err(CoreError::Read(Error::Io(fault.into()).in_file(&path)))
        })
    })?;
    let map_storage = match &mapped {
        Some(map) if data.iter().any(|d| matches!(d, TensorData::Mapped(_))) => {
            Some(Py::new(py, Storage::new(map.clone()))?)
        }
        _ => None,
    };
    let mut data = data.into_iter();
    let mut base_records = Vec::with_capacity(views.bases.len());
    for base in &views.bases {
        let bytes = data.next().ok_or_else(missing_data)?;
        let location = locate(py, bytes, &map_storage)?;
        base_records.push(Py::new(py, RawTensor::new(location, layout(base)?))?);
    }
    let mut records = Vec::with_capacity(tensors.list.len());
    for (tensor, base) in tensors.list.iter().zip(&views.base_of) {
        let record = match base {
            Some(i) => {
                let base = &base_records[*i];
                let view = View {
                    base: base.clone_ref(py),
                    storage_offset: to_usize(tensor.offset)?,
                    stride: tensor
                        .stride
                        .iter()
                        .map(|&s| to_usize(s))
                        .collect::<PyResult<_>>()?,
                };
                RawTensor::view_of(py, layout(tensor)?, view)
            }
            None => {
                let bytes = data.next().ok_or_else(missing_data)?;
                RawTensor::new(locate(py, bytes, &map_storage)?, layout(tensor)?)
            }
        };
        records.push(Py::new(py, record)?);
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

/// Where a tensor's bytes, as read, are for Python.
fn locate(py: Python<'_>, bytes: TensorData, map: &Option<Py<Storage>>) -> PyResult<Location> {
    match (bytes, map) {
        (TensorData::Mapped(range), Some(storage)) => Ok(Location {
            storage: storage.clone_ref(py),
            offset: range.start,
            nbytes: range.len(),
        }),
        (TensorData::Copied(backing), _) => Location::whole(py, backing),
        (TensorData::Mapped(_), None) => Err(CheckpointError::new_err(
            "internal error: a mapped tensor without a map",
        )),
    }
}

fn missing_data() -> PyErr {
    CheckpointError::new_err("internal error: a tensor was not read")
}

fn to_usize(n: u64) -> PyResult<usize> {
    usize::try_from(n)
        .map_err(|_| CheckpointError::new_err("a tensor dimension exceeds the address space"))
}

/// A tensor's dtype, shape, name and requires_grad for its record.
fn layout(tensor: &TensorRef) -> PyResult<Layout> {
    Ok(Layout {
        dtype: tensor.scalar.name,
        shape: tensor
            .shape
            .iter()
            .map(|&n| to_usize(n))
            .collect::<PyResult<_>>()?,
        name: entry_name(tensor),
        requires_grad: tensor.requires_grad,
        location: tensor.storage.location.to_string(),
    })
}

/// Which tensors come back as views of their whole storage, as `torch.load`
/// gives them: every tensor of a storage that several distinct tensors view
/// (so that they share memory: a write through one shows through the
/// others), and a lone tensor that is not its whole storage laid out
/// contiguously (so that its strides and storage offset are torch's).
/// Each such storage is read once, whole (a zero-copy range of the private
/// map where it lies there unchanged, else one copy), and its views are
/// built on it. Bounds need no check here: `TensorRef` proved every view
/// lies inside its storage, and reading the storage checks the file holds
/// all of it.
struct Views {
    /// The whole storages read, as 1-D tensors of their elements.
    bases: Vec<Arc<TensorRef>>,
    /// For each tensor, the index of its base.
    base_of: Vec<Option<usize>>,
}

impl Views {
    fn plan(list: &[Arc<TensorRef>]) -> Views {
        let mut count: HashMap<&str, usize> = HashMap::new();
        for tensor in list.iter().filter(|t| viewable(t)) {
            *count.entry(&tensor.storage.key).or_default() += 1;
        }
        let mut by_key: HashMap<&str, usize> = HashMap::new();
        let mut bases = Vec::new();
        let base_of = list
            .iter()
            .map(|tensor| {
                let key: &str = &tensor.storage.key;
                let shared = count.get(key).is_some_and(|&n| n > 1);
                // Plain records: tensors alone on their whole storage.
                if !viewable(tensor) || (!shared && is_whole_storage(tensor)) {
                    return None;
                }
                Some(*by_key.entry(key).or_insert_with(|| {
                    bases.push(Arc::new(whole_storage(&tensor.storage)));
                    bases.len() - 1
                }))
            })
            .collect();
        Views { bases, base_of }
    }
}

/// Whether a tensor can be rebuilt as a view of its whole storage: a root
/// storage (not a pre-0.4 storage view) of the tensor's own element type
/// (torch.save refuses views of one storage as different types), not
/// quantized (those are rebuilt from their integer storage) and not empty.
fn viewable(tensor: &TensorRef) -> bool {
    let storage = &tensor.storage;
    storage.view.is_none()
        && storage.scalar.is_some_and(|s| s.name == tensor.scalar.name)
        && !tensor.scalar.name.starts_with('q')
        && storage.nbytes().is_some_and(|n| n > 0)
}

/// Whether a tensor is its whole storage, row-major from its first element.
fn is_whole_storage(tensor: &TensorRef) -> bool {
    let numel = tensor.shape.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
    tensor.offset == 0 && numel == Some(tensor.storage.numel) && tensor.is_contiguous()
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
