//! Python bindings of safeweights: the native module
//! `safeweights._safeweights_rust`, wrapped by the pure-Python package
//! `safeweights` (a drop-in for `safetensors` plus safe checkpoints).

mod checkpoint;
mod dtype;
mod errors;
mod safe_open;
mod serialize;
mod slicing;
mod sniff;
mod source;
mod storage;

use pyo3::prelude::*;

#[pymodule]
fn _safeweights_rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<storage::Storage>()?;
    m.add_class::<safe_open::SafeOpen>()?;
    m.add_class::<safe_open::SafeSlice>()?;
    m.add_class::<serialize::TensorSpec>()?;
    m.add_function(wrap_pyfunction!(serialize::serialize, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::serialize_file, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::serialize_sharded, m)?)?;
    m.add_function(wrap_pyfunction!(serialize::deserialize, m)?)?;
    m.add_function(wrap_pyfunction!(sniff::sniff_format, m)?)?;
    m.add("SNIFF_LEN", sniff::SNIFF_LEN)?;
    m.add_class::<checkpoint::PickledTensor>()?;
    m.add_class::<checkpoint::PickledDtype>()?;
    m.add_function(wrap_pyfunction!(checkpoint::load_torch_pickle, m)?)?;
    Ok(())
}
