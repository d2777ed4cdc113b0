//! [`RawTensor`]: the one record every reader hands to Python.
//!
//! `safe_open`, slices, the legacy pickle reader and (through `safe_open`)
//! the checkpoint reader all return tensors as these records: where the
//! bytes are and how to read them. The Python package turns them into
//! numpy arrays or torch tensors and places them on a device; this crate
//! never calls back into it.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::storage::{Backing, Storage};

/// A tensor's bytes, not yet converted: `nbytes` bytes at `offset` in
/// `storage`, contiguous, row-major and little-endian.
///
/// `dtype` is the framework's name (`"float32"`, `"bfloat16"`,
/// `"float4_e2m1fn_x2"`, also `"complex128"` from pickle checkpoints), the
/// name torch, numpy and ml_dtypes share, and `shape` the framework's shape
/// (an `F4` tensor's last dimension halved: two values per byte). `name` is
/// the tensor's name in the file (for pickle checkpoints, its storage's).
/// `location` is where a pickle checkpoint says the tensor's storage was
/// saved from (`"cpu"`, `"cuda:1"`: torch's location tag, as written),
/// which `map_location` maps; safetensors files record none (`"cpu"`).
/// Records of one file share one `storage`.
///
/// A record with a `base` is a view of another record (pickle checkpoints
/// only: one of several views of a storage, or a view that is not its
/// whole storage, as `torch.load` gives them): the tensor is `base`'s
/// tensor seen with `shape`, `stride` and `storage_offset` (in elements),
/// and `offset`/`nbytes` are `base`'s.
#[pyclass(module = "safeweights._safeweights_rust", name = "RawTensor", frozen)]
#[derive(Debug)]
pub struct RawTensor {
    storage: Py<Storage>,
    offset: usize,
    nbytes: usize,
    dtype: &'static str,
    shape: Vec<usize>,
    name: String,
    requires_grad: bool,
    location: String,
    view: Option<View>,
}

/// A record seen as a strided view of another (see [`RawTensor`]).
#[derive(Debug)]
pub struct View {
    /// The record of the whole storage.
    pub base: Py<RawTensor>,
    /// Offset of the first element in `base`, in elements.
    pub storage_offset: usize,
    /// Strides per dimension, in elements.
    pub stride: Vec<usize>,
}

/// Where a record's bytes are.
#[derive(Debug)]
pub struct Location {
    /// The memory holding them.
    pub storage: Py<Storage>,
    /// Where they start in it.
    pub offset: usize,
    /// How many there are.
    pub nbytes: usize,
}

impl Location {
    /// All of `backing`, in a new [`Storage`].
    pub fn whole(py: Python<'_>, backing: Backing) -> PyResult<Location> {
        let nbytes = backing.as_slice().len();
        Ok(Location {
            storage: Py::new(py, Storage::new(Arc::new(backing)))?,
            offset: 0,
            nbytes,
        })
    }
}

/// What a record describes besides its bytes.
#[derive(Debug)]
pub struct Layout {
    /// Framework dtype name.
    pub dtype: &'static str,
    /// Framework shape.
    pub shape: Vec<usize>,
    /// Name in the file.
    pub name: String,
    /// Saved as requiring grad (pickle checkpoints only).
    pub requires_grad: bool,
    /// The saved location tag of its storage (pickle checkpoints only;
    /// `"cpu"` otherwise).
    pub location: String,
}

impl RawTensor {
    /// A record of the bytes at `location`, read as `layout` says.
    pub fn new(location: Location, layout: Layout) -> Self {
        RawTensor {
            storage: location.storage,
            offset: location.offset,
            nbytes: location.nbytes,
            dtype: layout.dtype,
            shape: layout.shape,
            name: layout.name,
            requires_grad: layout.requires_grad,
            location: layout.location,
            view: None,
        }
    }

    /// A record of `view.base`'s bytes seen as `layout` says, through
    /// `view`'s strides and offset.
    pub fn view_of(py: Python<'_>, layout: Layout, view: View) -> Self {
        let base = view.base.get();
        RawTensor {
            storage: base.storage.clone_ref(py),
            offset: base.offset,
            nbytes: base.nbytes,
            dtype: layout.dtype,
            shape: layout.shape,
            name: layout.name,
            requires_grad: layout.requires_grad,
            location: layout.location,
            view: Some(view),
        }
    }
}

#[pymethods]
impl RawTensor {
    /// The memory holding the bytes (`_Storage`: address, length,
    /// writability, page-cache hints).
    #[getter]
    fn storage(&self, py: Python<'_>) -> Py<Storage> {
        self.storage.clone_ref(py)
    }

    /// Where the bytes start in `storage`.
    #[getter]
    fn offset(&self) -> usize {
        self.offset
    }

    /// How many bytes the tensor holds.
    #[getter]
    fn nbytes(&self) -> usize {
        self.nbytes
    }

    /// The framework dtype name, e.g. `"float32"`.
    #[getter]
    fn dtype(&self) -> &'static str {
        self.dtype
    }

    /// The framework shape.
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    /// The tensor's name in the file.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Whether it was saved requiring grad (always false in safetensors).
    #[getter]
    fn requires_grad(&self) -> bool {
        self.requires_grad
    }

    /// Where its storage was saved from, as the file says (`"cpu"`,
    /// `"cuda:1"`); always `"cpu"` in safetensors files.
    #[getter]
    fn location(&self) -> &str {
        &self.location
    }

    /// The record of the whole storage this one views, or None (see the
    /// class documentation).
    #[getter]
    fn base(&self, py: Python<'_>) -> Option<Py<RawTensor>> {
        self.view.as_ref().map(|v| v.base.clone_ref(py))
    }

    /// A view's offset in `base`, in elements (0 without a base).
    #[getter]
    fn storage_offset(&self) -> usize {
        self.view.as_ref().map_or(0, |v| v.storage_offset)
    }

    /// A view's strides in elements; None without a base (contiguous).
    #[getter]
    fn stride<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.view
            .as_ref()
            .map(|v| PyTuple::new(py, &v.stride))
            .transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "RawTensor(name={:?}, dtype={:?}, shape={:?}, offset={}, nbytes={})",
            self.name, self.dtype, self.shape, self.offset, self.nbytes
        )
    }
}
