//! Metadata values, borrowed from the file's bytes.
#![forbid(unsafe_code)]

/// The type of a metadata value, with GGUF's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the names are GGUF's own
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

const TYPES: [(ValueType, &str, usize); 13] = [
    (ValueType::U8, "UINT8", 1),
    (ValueType::I8, "INT8", 1),
    (ValueType::U16, "UINT16", 2),
    (ValueType::I16, "INT16", 2),
    (ValueType::U32, "UINT32", 4),
    (ValueType::I32, "INT32", 4),
    (ValueType::F32, "FLOAT32", 4),
    (ValueType::Bool, "BOOL", 1),
    (ValueType::String, "STRING", 8),
    (ValueType::Array, "ARRAY", 12),
    (ValueType::U64, "UINT64", 8),
    (ValueType::I64, "INT64", 8),
    (ValueType::F64, "FLOAT64", 8),
];

impl ValueType {
    /// The type with GGUF id `id` (0..=12).
    pub fn from_id(id: u32) -> Option<ValueType> {
        TYPES.get(id as usize).map(|row| row.0)
    }

    /// GGUF's id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// GGUF's name (`UINT32`, `STRING`).
    pub fn name(self) -> &'static str {
        TYPES[self as usize].1
    }

    /// The fewest bytes a value of this type takes in a file: the fixed
    /// width of a scalar, a string's length field, an array's type and count.
    pub(crate) fn min_bytes(self) -> usize {
        TYPES[self as usize].2
    }

    /// Whether the value has a fixed width (every type but strings and arrays).
    pub(crate) fn is_scalar(self) -> bool {
        !matches!(self, ValueType::String | ValueType::Array)
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // one variant per GGUF type
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as JSON: integers, booleans and strings as themselves,
    /// arrays (nested too) as arrays, and floats, widened to `f64`, as
    /// `float` makes them. The float rule is the caller's because JSON has
    /// no NaN or infinity: a report may print them as strings, a
    /// `config.json` as `null`, a test wrap them to compare them exactly.
    pub fn to_json(&self, float: &dyn Fn(f64) -> serde_json::Value) -> serde_json::Value {
        use serde_json::Value as Json;
        match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            Value::F32(v) => float(f64::from(v)),
            Value::F64(v) => float(v),
            Value::Bool(v) => v.into(),
            Value::String(v) => v.into(),
            Value::Array(ref array) => {
                Json::Array(array.iter().map(|item| item.to_json(float)).collect())
            }
        }
    }

    /// Decodes a scalar of type `ty` from exactly `ty.min_bytes()` bytes.
    pub(crate) fn scalar(ty: ValueType, raw: &[u8]) -> Value<'a> {
        let mut wide = [0u8; 8];
        wide[..raw.len()].copy_from_slice(raw);
        let b = wide;
        match ty {
            ValueType::U8 => Value::U8(b[0]),
            ValueType::I8 => Value::I8(b[0] as i8),
            ValueType::Bool => Value::Bool(b[0] != 0),
            ValueType::U16 => Value::U16(u16::from_le_bytes([b[0], b[1]])),
            ValueType::I16 => Value::I16(i16::from_le_bytes([b[0], b[1]])),
            ValueType::U32 => Value::U32(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ValueType::I32 => Value::I32(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ValueType::F32 => Value::F32(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ValueType::U64 => Value::U64(u64::from_le_bytes(b)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(b)),
            ValueType::F64 | ValueType::String | ValueType::Array => {
                Value::F64(f64::from_le_bytes(b))
            }
        }
    }
}

/// An array value. Fixed-width elements stay as the file's bytes and are
/// decoded on access, so a large array costs no allocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<'a> {
    element_type: ValueType,
    items: Items<'a>,
}

#[derive(Debug, Clone, PartialEq)]
enum Items<'a> {
    Scalars(&'a [u8]),
    Strings(Vec<&'a str>),
    Arrays(Vec<Array<'a>>),
}

impl<'a> Array<'a> {
    pub(crate) fn scalars(element_type: ValueType, raw: &'a [u8]) -> Self {
        Array {
            element_type,
            items: Items::Scalars(raw),
        }
    }

    pub(crate) fn strings(items: Vec<&'a str>) -> Self {
        Array {
            element_type: ValueType::String,
            items: Items::Strings(items),
        }
    }

    pub(crate) fn arrays(items: Vec<Array<'a>>) -> Self {
        Array {
            element_type: ValueType::Array,
            items: Items::Arrays(items),
        }
    }

    /// The type of every element.
    pub fn element_type(&self) -> ValueType {
        self.element_type
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match &self.items {
            Items::Scalars(raw) => raw.len() / self.element_type.min_bytes(),
            Items::Strings(items) => items.len(),
            Items::Arrays(items) => items.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element at `index`.
    pub fn get(&self, index: usize) -> Option<Value<'a>> {
        match &self.items {
            Items::Scalars(raw) => {
                let width = self.element_type.min_bytes();
                let start = index.checked_mul(width)?;
                let bytes = raw.get(start..start.checked_add(width)?)?;
                Some(Value::scalar(self.element_type, bytes))
            }
            Items::Strings(items) => items.get(index).map(|s| Value::String(s)),
            Items::Arrays(items) => items.get(index).cloned().map(Value::Array),
        }
    }

    /// Every element, in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + '_ {
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// The elements of a fixed-width array as the file stores them
    /// (little-endian), or `None` for arrays of strings or arrays.
    pub fn raw_bytes(&self) -> Option<&'a [u8]> {
        match self.items {
            Items::Scalars(raw) => Some(raw),
            _ => None,
        }
    }
}
