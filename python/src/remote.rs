//! Whole-object helpers for the Python readers of remote torch checkpoints
//! (which need whole local files): the first bytes of an object, to tell
//! what it holds, and a download into a directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use safeweights::remote::{fetch_to_dir, RemoteObject, RemoteStats};

use crate::errors::CoreError;
use crate::safe_open::remote_options;

/// Largest object downloaded whole: what the pickle reader accepts.
fn max_fetch_bytes() -> u64 {
    safeweights_pickle::Limits::default().max_total_decompressed
}

/// The first bytes of the object at `url` (one ranged request, at most
/// 64 KiB), with the GIL released.
#[pyfunction]
#[pyo3(signature = (url, storage_options=None))]
pub fn url_head<'py>(
    py: Python<'py>,
    url: &str,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let remote = Arc::new(remote_options(storage_options.unwrap_or_default())?);
    let first = py
        .detach(|| RemoteObject::open(url, remote, Arc::new(RemoteStats::default())))
        .map_err(CoreError::from)?
        .1;
    Ok(PyBytes::new(py, &first))
}

/// Downloads the object at `url` whole into `directory/name` (which
/// appears only once complete), with the GIL released; returns the path.
#[pyfunction]
#[pyo3(signature = (url, directory, name, storage_options=None))]
pub fn fetch_url(
    py: Python<'_>,
    url: &str,
    directory: PathBuf,
    name: &str,
    storage_options: Option<HashMap<String, String>>,
) -> PyResult<String> {
    let remote = remote_options(storage_options.unwrap_or_default())?;
    let path = py
        .detach(|| fetch_to_dir(url, &directory, name, &remote, max_fetch_bytes(), |_, _| {}))
        .map_err(CoreError::from)?;
    Ok(path.to_string_lossy().into_owned())
}
