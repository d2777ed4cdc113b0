//! GGUF files for `safeweights.gguf`: validated once when opened, then
//! metadata and tensors read on demand from the file's map, raw or
//! dequantized exactly as `gguf.quants` does.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use safeweights_gguf::quant::dequantize;
use safeweights_gguf::{Gguf, GgufFile, Value};

use crate::errors::CoreError;

/// An open GGUF file (the native half of `safeweights.gguf.GGUFFile`).
#[derive(Debug)]
#[pyclass(module = "safeweights._safeweights_rust", frozen)]
pub struct GgufHandle {
    file: GgufFile,
}

impl GgufHandle {
    fn parsed(&self) -> PyResult<Gguf<'_>> {
        self.file.parse().map_err(|e| CoreError::Gguf(e).into())
    }
}

fn value_to_py<'py>(py: Python<'py>, value: &Value<'_>) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::U8(v) => v.into_pyobject(py)?.into_any(),
        Value::I8(v) => v.into_pyobject(py)?.into_any(),
        Value::U16(v) => v.into_pyobject(py)?.into_any(),
        Value::I16(v) => v.into_pyobject(py)?.into_any(),
        Value::U32(v) => v.into_pyobject(py)?.into_any(),
        Value::I32(v) => v.into_pyobject(py)?.into_any(),
        Value::U64(v) => v.into_pyobject(py)?.into_any(),
        Value::I64(v) => v.into_pyobject(py)?.into_any(),
        Value::F32(v) => f64::from(*v).into_pyobject(py)?.into_any(),
        Value::F64(v) => v.into_pyobject(py)?.into_any(),
        Value::Bool(v) => v.into_pyobject(py)?.to_owned().into_any(),
        Value::String(v) => v.into_pyobject(py)?.into_any(),
        Value::Array(array) => {
            let items = array
                .iter()
                .map(|item| value_to_py(py, &item))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
    })
}

/// A tensor as `tensors()` lists it: name, shape (numpy order), ggml type, bytes.
type TensorRow = (String, Vec<u64>, &'static str, u64);

#[pymethods]
impl GgufHandle {
    /// Opens and validates `path` (every rule of the strict reader).
    #[new]
    fn new(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let file = py
            .detach(|| {
                let file = GgufFile::open(&path)?;
                file.parse()?;
                Ok::<_, safeweights_gguf::Error>(file)
            })
            .map_err(CoreError::Gguf)?;
        Ok(GgufHandle { file })
    }

    /// The GGUF version (2 or 3).
    fn version(&self) -> PyResult<u32> {
        Ok(self.parsed()?.version())
    }

    /// `[(key, type_name, value)]` in file order; arrays are lists.
    fn metadata<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(String, &'static str, Bound<'py, PyAny>)>> {
        let gguf = self.parsed()?;
        gguf.metadata()
            .iter()
            .map(|(key, value)| {
                Ok((
                    (*key).to_owned(),
                    value.value_type().name(),
                    value_to_py(py, value)?,
                ))
            })
            .collect()
    }

    /// `[(name, shape in numpy order, ggml type name, byte length)]`.
    fn tensors(&self) -> PyResult<Vec<TensorRow>> {
        let gguf = self.parsed()?;
        Ok(gguf
            .tensors()
            .iter()
            .map(|t| (t.name.to_owned(), t.shape(), t.ggml_type.name(), t.byte_len))
            .collect())
    }

    /// The tensor's bytes as stored (blocks for quantized types).
    fn raw<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyBytes>> {
        let gguf = self.parsed()?;
        let bytes = gguf.tensor_bytes(name).map_err(CoreError::Gguf)?;
        Ok(PyBytes::new(py, bytes))
    }

    /// The tensor dequantized to little-endian f32 bytes, bit for bit as
    /// `gguf.quants.dequantize`.
    fn dequantize<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyBytes>> {
        let gguf = self.parsed()?;
        let info = gguf.tensor(name).ok_or_else(|| {
            CoreError::Gguf(safeweights_gguf::Error::TensorNotFound {
                name: name.to_owned(),
            })
        })?;
        let bytes = gguf.bytes_of(info);
        let ty = info.ggml_type;
        let n = info.numel() as usize;
        let values = py
            .detach(|| {
                let mut values = vec![0f32; n];
                dequantize(ty, bytes, &mut values).map(|()| values)
            })
            .map_err(CoreError::Gguf)?;
        PyBytes::new_with(py, n * 4, |out| {
            for (chunk, v) in out.chunks_exact_mut(4).zip(&values) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
            Ok(())
        })
    }
}
