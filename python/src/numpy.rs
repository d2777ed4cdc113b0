//! numpy `.npy` and `.npz` files read by `safeweights-pickle`'s own
//! readers, never by `numpy.load`: an `.npz` goes through the same zip
//! reader as torch checkpoints, so an archive that readers could read
//! differently (two directories, duplicate names...) is refused here too
//! (`UnsafeCheckpointError`), and object arrays are refused before any
//! byte of their pickle is looked at.
//!
//! Also the zip reader's view of any archive, for the differential tests
//! that compare it with Python's `zipfile` and torch's own reader.

use std::borrow::Cow;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyTuple};
use safeweights_pickle::numpy::{read_npy, NpyHeader, Npz};
use safeweights_pickle::zip::ZipArchive;
use safeweights_pickle::Limits;

use crate::dtype::framework_name;
use crate::errors::{CheckpointError, CoreError};
use crate::record::{Layout, Location, RawTensor};
use crate::storage::{Backing, Storage};

/// The file's bytes: a private map of a path, or a copy of `bytes`.
fn backing_of(source: &Bound<'_, PyAny>) -> PyResult<(Arc<Backing>, String)> {
    let py = source.py();
    let copied = if let Ok(bytes) = source.cast::<PyBytes>() {
        Some(Backing::copy_of(bytes.as_bytes()))
    } else if let Ok(array) = source.cast::<PyByteArray>() {
        Some(Backing::copy_of(&array.to_vec()))
    } else {
        None
    };
    if let Some(copy) = copied {
        let copy = copy.map_err(|e| crate::errors::io_to_py_err(&e, None))?;
        return Ok((Arc::new(copy), "<file object>".to_owned()));
    }
    let path: PathBuf = source.extract()?;
    let name = path.display().to_string();
    let map = py.detach(|| File::open(&path).and_then(|f| Backing::map_private(&f, &path)));
    let map = map.map_err(|e| crate::errors::io_to_py_err(&e, Some(name.clone())))?;
    Ok((Arc::new(map), name))
}

/// One array as a `(name, descr, fortran_order, RawTensor)` tuple; the
/// record's bytes are C-order and little-endian whatever the file's
/// layout (`descr` and `fortran_order` say how numpy would have held it).
fn array_tuple<'py>(
    py: Python<'py>,
    name: Option<&str>,
    header: &NpyHeader,
    location: Location,
) -> PyResult<Bound<'py, PyTuple>> {
    let shape = header
        .shape
        .iter()
        .map(|&n| usize::try_from(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| CheckpointError::new_err("an array dimension exceeds the address space"))?;
    let layout = Layout {
        dtype: framework_name(header.dtype),
        shape,
        name: name.unwrap_or("array").to_owned(),
        requires_grad: false,
        location: "cpu".to_owned(),
    };
    let record = Py::new(py, RawTensor::new(location, layout))?;
    (name, header.descr.as_str(), header.fortran_order, record).into_pyobject(py)
}

/// Reads an `.npy` or `.npz` file (a path, `bytes` or `bytearray`).
///
/// Returns a list of `(name, descr, fortran_order, RawTensor)`: one entry
/// named None for an `.npy` file, one per array (in archive order, named
/// without `.npy`) for an `.npz`. Returns None for a zip that is no `.npz`
/// (a member that is not `.npy`, or none at all: a torch checkpoint is
/// read by `load_torch_pickle`). An `.npy` stored as it loads is a
/// zero-copy view of the private map of a path.
#[pyfunction]
pub fn load_numpy<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let (backing, name) = backing_of(source)?;
    let limits = Limits::default();
    let data = backing.as_slice();
    let within =
        |e: safeweights_pickle::Error| PyErr::from(CoreError::from(e.within(name.clone())));
    if !safeweights_pickle::zip::is_zip(data) {
        let (header, bytes) = py.detach(|| read_npy(data, &limits)).map_err(within)?;
        let location = match bytes {
            // Stored as it loads: a view of the map, where the reader found it.
            Cow::Borrowed(view) => Location {
                storage: Py::new(py, Storage::new(backing.clone()))?,
                offset: view.as_ptr() as usize - data.as_ptr() as usize,
                nbytes: view.len(),
            },
            Cow::Owned(copy) => copied(py, &copy)?,
        };
        return Ok(Some(PyList::new(
            py,
            [array_tuple(py, None, &header, location)?],
        )?));
    }
    let npz = py.detach(|| Npz::parse(data, &limits)).map_err(within)?;
    if npz.names().is_empty() || !npz.other_members().is_empty() {
        return Ok(None);
    }
    let list = PyList::empty(py);
    for array in npz.names() {
        let (header, bytes) = py
            .detach(|| npz.read(data, array, &limits))
            .map_err(within)?;
        let location = copied(py, &bytes)?;
        list.append(array_tuple(py, Some(array), &header, location)?)?;
    }
    Ok(Some(list))
}

/// `bytes` in a storage of their own.
fn copied(py: Python<'_>, bytes: &[u8]) -> PyResult<Location> {
    // A copy the machine cannot hold is a MemoryError, not an abort.
    let backing = Backing::copy_of(bytes).map_err(|e| crate::errors::io_to_py_err(&e, None))?;
    Location::whole(py, backing)
}

/// The member names our zip reader sees in a zip archive (a path or
/// `bytes`), in central-directory order; raises `UnsafeCheckpointError`
/// for an archive that readers could read differently. With `read`, also
/// each member's bytes as we would load them. For the differential tests.
#[pyfunction]
#[pyo3(signature = (source, read = None))]
pub fn zip_members<'py>(
    py: Python<'py>,
    source: &Bound<'py, PyAny>,
    read: Option<&str>,
) -> PyResult<(Vec<String>, Option<Bound<'py, PyBytes>>)> {
    let (backing, name) = backing_of(source)?;
    let data = backing.as_slice();
    let limits = Limits::default();
    let within =
        |e: safeweights_pickle::Error| PyErr::from(CoreError::from(e.within(name.clone())));
    let archive = ZipArchive::parse(data, &limits).map_err(within)?;
    let names = archive.entries().iter().map(|e| e.name.clone()).collect();
    let Some(member) = read else {
        return Ok((names, None));
    };
    let entry = archive
        .find(member)
        .ok_or_else(|| CheckpointError::new_err(format!("no member `{member}` in {name}")))?;
    let bytes = archive.read(data, entry, &limits).map_err(within)?;
    Ok((names, Some(PyBytes::new(py, &bytes))))
}
