//! PyTorch element types and storage classes, mapped to safetensors dtypes.

use crate::dtype::Dtype;

/// A PyTorch element type as named in checkpoints (`torch.float32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScalarType {
    /// Name without the `torch.` prefix, e.g. `float32`.
    pub name: &'static str,
    /// Size of one element in bytes.
    pub size: usize,
    /// The safetensors dtype, or `None` when safetensors has no equivalent
    /// (such tensors are reported as skipped, never silently converted).
    pub dtype: Option<Dtype>,
}

/// (dtype name, legacy typed-storage class, element size, safetensors dtype)
const TABLE: &[(&str, Option<&str>, usize, Option<Dtype>)] = &[
    ("float32", Some("FloatStorage"), 4, Some(Dtype::F32)),
    ("float64", Some("DoubleStorage"), 8, Some(Dtype::F64)),
    ("float16", Some("HalfStorage"), 2, Some(Dtype::F16)),
    ("bfloat16", Some("BFloat16Storage"), 2, Some(Dtype::BF16)),
    ("int64", Some("LongStorage"), 8, Some(Dtype::I64)),
    ("int32", Some("IntStorage"), 4, Some(Dtype::I32)),
    ("int16", Some("ShortStorage"), 2, Some(Dtype::I16)),
    ("int8", Some("CharStorage"), 1, Some(Dtype::I8)),
    ("uint8", Some("ByteStorage"), 1, Some(Dtype::U8)),
    ("bool", Some("BoolStorage"), 1, Some(Dtype::BOOL)),
    (
        "complex64",
        Some("ComplexFloatStorage"),
        8,
        Some(Dtype::C64),
    ),
    ("complex128", Some("ComplexDoubleStorage"), 16, None),
    ("uint16", None, 2, Some(Dtype::U16)),
    ("uint32", None, 4, Some(Dtype::U32)),
    ("uint64", None, 8, Some(Dtype::U64)),
    ("float8_e4m3fn", None, 1, Some(Dtype::F8_E4M3)),
    ("float8_e5m2", None, 1, Some(Dtype::F8_E5M2)),
    ("float8_e4m3fnuz", None, 1, Some(Dtype::F8_E4M3FNUZ)),
    ("float8_e5m2fnuz", None, 1, Some(Dtype::F8_E5M2FNUZ)),
    ("float8_e8m0fnu", None, 1, Some(Dtype::F8_E8M0)),
    ("complex32", None, 4, None),
    ("float4_e2m1fn_x2", None, 1, None),
    // Quantized storages hold the integer representation.
    ("qint8", Some("QInt8Storage"), 1, None),
    ("quint8", Some("QUInt8Storage"), 1, None),
    ("qint32", Some("QInt32Storage"), 4, None),
    ("quint4x2", Some("QUInt4x2Storage"), 1, None),
    ("quint2x4", Some("QUInt2x4Storage"), 1, None),
];

fn entry(row: &(&'static str, Option<&'static str>, usize, Option<Dtype>)) -> ScalarType {
    ScalarType {
        name: row.0,
        size: row.2,
        dtype: row.3,
    }
}

impl ScalarType {
    /// The type named `torch.<name>`, e.g. `float32`.
    pub fn from_dtype_name(name: &str) -> Option<ScalarType> {
        TABLE.iter().find(|row| row.0 == name).map(entry)
    }

    /// The type stored by a typed storage class such as `FloatStorage`.
    pub fn from_storage_class(class: &str) -> Option<ScalarType> {
        TABLE.iter().find(|row| row.1 == Some(class)).map(entry)
    }

    /// The legacy typed-storage class holding this type (`FloatStorage`).
    pub fn storage_class(&self) -> Option<&'static str> {
        TABLE
            .iter()
            .find(|row| row.0 == self.name)
            .and_then(|row| row.1)
    }

    /// The element type matching a safetensors dtype, for messages.
    pub fn for_dtype(dtype: Dtype) -> Option<ScalarType> {
        TABLE.iter().find(|row| row.3 == Some(dtype)).map(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let f = ScalarType::from_storage_class("FloatStorage").unwrap();
        assert_eq!((f.name, f.size, f.dtype), ("float32", 4, Some(Dtype::F32)));
        assert_eq!(
            ScalarType::from_dtype_name("float8_e8m0fnu").unwrap().dtype,
            Some(Dtype::F8_E8M0)
        );
        assert_eq!(
            ScalarType::from_dtype_name("complex128").unwrap().dtype,
            None
        );
        assert!(ScalarType::from_storage_class("UntypedStorage").is_none());
        assert_eq!(ScalarType::for_dtype(Dtype::BF16).unwrap().name, "bfloat16");
        for row in TABLE {
            if let Some(d) = row.3 {
                assert_eq!(d.bits(), row.2 * 8, "{}", row.0);
            }
        }
    }
}
