//! Dtype names: the format's (`"F32"`) and the frameworks' (`"float32"`),
//! both ways: the one table of this crate.

use safeweights::Dtype;

use crate::errors::{new_err, Multi};
use pyo3::PyErr;

/// Framework dtype names (torch's, which numpy shares where both exist) and
/// the format dtype each is stored as. `float4_e2m1fn_x2` packs two F4
/// values per element, so its header shape has the last dimension doubled.
const FRAMEWORK_NAMES: [(&str, Dtype); 20] = [
    ("bool", Dtype::BOOL),
    ("int8", Dtype::I8),
    ("uint8", Dtype::U8),
    ("int16", Dtype::I16),
    ("uint16", Dtype::U16),
    ("int32", Dtype::I32),
    ("uint32", Dtype::U32),
    ("int64", Dtype::I64),
    ("uint64", Dtype::U64),
    ("float16", Dtype::F16),
    ("float32", Dtype::F32),
    ("float64", Dtype::F64),
    ("bfloat16", Dtype::BF16),
    ("float8_e4m3fn", Dtype::F8_E4M3),
    ("float8_e4m3fnuz", Dtype::F8_E4M3FNUZ),
    ("float8_e5m2", Dtype::F8_E5M2),
    ("float8_e5m2fnuz", Dtype::F8_E5M2FNUZ),
    ("float8_e8m0fnu", Dtype::F8_E8M0),
    ("float4_e2m1fn_x2", Dtype::F4),
    ("complex64", Dtype::C64),
];

/// The name of the packed F4 dtype, whose shape needs doubling.
pub const PACKED_F4: &str = "float4_e2m1fn_x2";

/// The framework name of a format dtype, e.g. `"float32"` for `F32`.
pub fn framework_name(dtype: Dtype) -> &'static str {
    FRAMEWORK_NAMES
        .iter()
        .find(|(_, d)| *d == dtype)
        .map_or(dtype.name(), |(name, _)| name)
}

/// The framework shape of a tensor stored with `dtype` and `shape`: the
/// same, but for `F4`, which frameworks hold as `float4_e2m1fn_x2`, two
/// values per element along the last dimension.
pub fn framework_shape(name: &str, dtype: Dtype, shape: &[usize]) -> Result<Vec<usize>, PyErr> {
    let mut shape = shape.to_vec();
    if dtype == Dtype::F4 {
        match shape.last_mut() {
            Some(last) if *last % 2 == 0 => *last /= 2,
            _ => {
                return Err(new_err(
                    Multi::UnsupportedDtype,
                    format!(
                        "tensor {name:?}: an F4 tensor of shape {shape:?} cannot be loaded as \
                         {PACKED_F4}, which packs pairs along the last dimension"
                    ),
                ))
            }
        }
    }
    Ok(shape)
}

/// Parses a dtype given either as a framework name (`"float32"`, as the
/// reference's `TensorSpec` takes) or as a format name (`"F32"`).
pub fn parse(name: &str) -> Result<Dtype, PyErr> {
    if let Some((_, dtype)) = FRAMEWORK_NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(*dtype);
    }
    Dtype::from_name(name).ok_or_else(|| {
        let known: Vec<&str> = FRAMEWORK_NAMES.iter().map(|(n, _)| *n).collect();
        new_err(
            Multi::UnsupportedDtype,
            format!(
            "Unknown dtype {name:?}. Supported dtypes: {} (or the format's names such as \"F32\")",
            known.join(", ")
        ),
        )
    })
}
