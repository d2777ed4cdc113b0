//! Python bindings of safeweights: the native module
//! `safeweights._safeweights_rust`, wrapped by the pure-Python package
//! `safeweights` (a drop-in for `safetensors` plus safe checkpoints).
//!
//! The module is called from Python and never calls back into the
//! package: readers return tensors as [`record::RawTensor`] records, and
//! the package converts them to numpy or torch and places them on devices.

// The modules are public so that `missing_docs` checks every item they
// export; `source` stays private until three fields of its `OpenedFile`
// and `Opened` are documented.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod cli;
pub mod dcp;
pub mod dtype;
pub mod errors;
pub mod gguf;
pub mod numpy;
mod readahead;
pub mod record;
pub mod remote;
pub mod safe_open;
pub mod serialize;
pub mod slicing;
pub mod sniff;
mod source;
pub mod storage;

use pyo3::prelude::*;

/// The native module `safeweights._safeweights_rust`: its classes,
/// functions and exception classes.
#[pymodule]
fn _safeweights_rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Test builds only (the `fault-injection` feature): crash points.
    m.add("_FAULT_INJECTION", cfg!(feature = "fault-injection"))?;
    // Zero-copy tensors are views of file maps: a file truncated under them
    // ends the process with a message naming it, not a bare "Bus error".
    safeweights::read::bus_error::install_bus_error_handler();
    errors::register(m)?;
    m.add_class::<storage::Storage>()?;
    m.add_class::<record::RawTensor>()?;
    m.add_class::<safe_open::SafeFile>()?;
    m.add_class::<safe_open::SafeSlice>()?;
    m.add_class::<serialize::TensorSpec>()?;
    m.add_function(wrap_pyfunction!(serialize::serialize, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::serialize_file, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::serialize_file_checksummed, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::serialize_sharded, m)?)?;
    m.add_function(wrap_pyfunction!(dcp::xxh3_128_hex, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::deserialize, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::parse_size, m)?)?;
    m.add_function(wrap_pyfunction!(dcp::dcp_consolidate, m)?)?;
    m.add_function(wrap_pyfunction!(sniff::sniff_format, m)?)?;
    m.add("SNIFF_LEN", sniff::SNIFF_LEN)?;
    m.add_class::<gguf::GgufHandle>()?;
    m.add_class::<checkpoint::PickledDtype>()?;
    m.add_class::<checkpoint::PickledObject>()?;
    m.add_function(wrap_pyfunction!(checkpoint::load_torch_pickle, m)?)?;
    m.add_function(wrap_pyfunction!(numpy::load_numpy, m)?)?;
    m.add_function(wrap_pyfunction!(numpy::zip_members, m)?)?;
    m.add_function(wrap_pyfunction!(cli::run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(remote::url_head, m)?)?;
    m.add_function(wrap_pyfunction!(remote::fetch_url, m)?)?;
    Ok(())
}
