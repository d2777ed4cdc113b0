//! A streaming GGUF writer: the header, metadata and tensor infos first,
//! then each tensor's bytes in order, so memory stays bounded by what the
//! caller holds (one tensor).
//!
//! The layout is gguf-py's `GGUFWriter`'s: tensors in the order declared,
//! each at the next multiple of the alignment, zero padding after every
//! tensor. A declaration may instead fix a tensor's offset (to reproduce a
//! file byte for byte); offsets must then be aligned and increasing.
#![forbid(unsafe_code)]

use std::io::{Read as _, Write};

use crate::error::{Error, Result};
use crate::value::{Value, ValueType};
use crate::{GgmlType, ALIGNMENT_KEY, MAX_DIMS, MAX_NAME_BYTES};

/// An owned metadata value, to write.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)] // one variant per GGUF type
pub enum OwnedValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// The element type, then the elements (all of that type).
    Array(ValueType, Vec<OwnedValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl OwnedValue {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            OwnedValue::U8(_) => ValueType::U8,
            OwnedValue::I8(_) => ValueType::I8,
            OwnedValue::U16(_) => ValueType::U16,
            OwnedValue::I16(_) => ValueType::I16,
            OwnedValue::U32(_) => ValueType::U32,
            OwnedValue::I32(_) => ValueType::I32,
            OwnedValue::F32(_) => ValueType::F32,
            OwnedValue::Bool(_) => ValueType::Bool,
            OwnedValue::String(_) => ValueType::String,
            OwnedValue::Array(..) => ValueType::Array,
            OwnedValue::U64(_) => ValueType::U64,
            OwnedValue::I64(_) => ValueType::I64,
            OwnedValue::F64(_) => ValueType::F64,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::U8(v) => out.push(*v),
            OwnedValue::I8(v) => out.push(*v as u8),
            OwnedValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::Bool(v) => out.push(u8::from(*v)),
            OwnedValue::String(s) => put_string(out, s),
            OwnedValue::Array(ty, items) => {
                out.extend_from_slice(&ty.id().to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            OwnedValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

impl From<&Value<'_>> for OwnedValue {
    fn from(value: &Value<'_>) -> Self {
        match value {
            Value::U8(v) => OwnedValue::U8(*v),
            Value::I8(v) => OwnedValue::I8(*v),
            Value::U16(v) => OwnedValue::U16(*v),
            Value::I16(v) => OwnedValue::I16(*v),
            Value::U32(v) => OwnedValue::U32(*v),
            Value::I32(v) => OwnedValue::I32(*v),
            Value::F32(v) => OwnedValue::F32(*v),
            Value::Bool(v) => OwnedValue::Bool(*v),
            Value::String(s) => OwnedValue::String((*s).to_owned()),
            Value::Array(a) => OwnedValue::Array(
                a.element_type(),
                a.iter().map(|v| OwnedValue::from(&v)).collect(),
            ),
            Value::U64(v) => OwnedValue::U64(*v),
            Value::I64(v) => OwnedValue::I64(*v),
            Value::F64(v) => OwnedValue::F64(*v),
        }
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A tensor to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecl {
    /// The name (shorter than 64 bytes).
    pub name: String,
    /// Dimensions in ggml order (fastest-varying first), at most 4.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// A fixed offset in the data section, or `None` for the next aligned one.
    pub offset: Option<u64>,
}

/// What a file looks like before its tensor data: the version (2 or 3),
/// metadata in order, and the tensors in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// GGUF version written in the header (2 or 3).
    pub version: u32,
    /// Key/value pairs in file order.
    pub metadata: Vec<(String, OwnedValue)>,
    /// Tensors in file order.
    pub tensors: Vec<TensorDecl>,
}

#[derive(Debug)]
struct Planned {
    name: String,
    offset: u64,
    len: u64,
}

/// Writes one GGUF file to `W`: [`GgufWriter::new`] writes everything up
/// to the data section, [`GgufWriter::write_tensor`] each tensor's bytes in
/// declaration order (or [`GgufWriter::write_part`] in parts), [`GgufWriter::finish`] the final padding.
#[derive(Debug)]
pub struct GgufWriter<W: Write> {
    out: W,
    tensors: Vec<Planned>,
    next: usize,
    /// Bytes of tensor `next` written so far, by [`GgufWriter::write_part`].
    partial: u64,
    position: u64,
    alignment: u64,
}

impl<W: Write> GgufWriter<W> {
    /// Checks `layout` (names, dimensions, whole blocks, offsets, no
    /// duplicates) and writes the header, metadata and tensor infos.
    pub fn new(mut out: W, layout: &Layout) -> Result<Self> {
        let alignment = alignment_of(&layout.metadata)?;
        let planned = plan(&layout.tensors, alignment)?;
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&layout.version.to_le_bytes());
        header.extend_from_slice(&(layout.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(layout.metadata.len() as u64).to_le_bytes());
        let mut keys = std::collections::HashSet::new();
        for (key, value) in &layout.metadata {
            if !keys.insert(key.as_str()) {
                return Err(Error::DuplicateKey { key: key.clone() });
            }
            put_string(&mut header, key);
            header.extend_from_slice(&value.value_type().id().to_le_bytes());
            value.encode(&mut header);
        }
        for (decl, plan) in layout.tensors.iter().zip(&planned) {
            put_string(&mut header, &decl.name);
            header.extend_from_slice(&(decl.dims.len() as u32).to_le_bytes());
            for d in &decl.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&decl.ggml_type.id().to_le_bytes());
            header.extend_from_slice(&plan.offset.to_le_bytes());
        }
        let padded = align_up(header.len() as u64, alignment);
        header.resize(padded as usize, 0);
        out.write_all(&header).map_err(io_error)?;
        Ok(GgufWriter {
            out,
            tensors: planned,
            next: 0,
            partial: 0,
            position: 0,
            alignment,
        })
    }

    /// Writes the bytes of the next declared tensor, which must be named
    /// `name` and hold exactly its size.
    pub fn write_tensor(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let len = self.expect(name, bytes.len() as u64)?;
        if self.partial != 0 || len != bytes.len() as u64 {
            return Err(self.order_error(name, bytes.len() as u64));
        }
        self.write_part(name, bytes)
    }

    /// Appends the next `bytes` of the next declared tensor, which must be
    /// named `name`: a tensor may be written in parts of any size, so that
    /// memory stays bounded by a part. The tensor is complete when its
    /// size has been written, and the next one may begin.
    pub fn write_part(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        let len = self.expect(name, bytes.len() as u64)?;
        if self.partial + bytes.len() as u64 > len {
            return Err(self.order_error(name, self.partial + bytes.len() as u64));
        }
        if self.partial == 0 {
            let offset = self.tensors[self.next].offset;
            self.pad_to(offset)?;
        }
        self.out.write_all(bytes).map_err(io_error)?;
        self.position += bytes.len() as u64;
        self.partial += bytes.len() as u64;
        if self.partial == len {
            self.next += 1;
            self.partial = 0;
        }
        Ok(())
    }

    /// The size of the next declared tensor, which must be named `name`.
    fn expect(&self, name: &str, got_bytes: u64) -> Result<u64> {
        match self.tensors.get(self.next) {
            Some(planned) if planned.name == name => Ok(planned.len),
            Some(_) => Err(self.order_error(name, got_bytes)),
            None => Err(Error::TensorNotFound {
                name: name.to_owned(),
            }),
        }
    }

    fn order_error(&self, name: &str, got_bytes: u64) -> Error {
        let planned = &self.tensors[self.next];
        Error::WriteOrder {
            expected: planned.name.clone(),
            got: name.to_owned(),
            expected_bytes: planned.len,
            got_bytes,
        }
    }

    /// Writes the padding after the last tensor (to `end` bytes of data
    /// when given, else to the alignment) and returns the sink, after
    /// checking that every declared tensor was written.
    pub fn finish(mut self, end: Option<u64>) -> Result<W> {
        if let Some(Planned { name, .. }) = self.tensors.get(self.next) {
            return Err(Error::WriteOrder {
                expected: name.clone(),
                got: String::new(),
                expected_bytes: 0,
                got_bytes: 0,
            });
        }
        let end = end.unwrap_or_else(|| align_up(self.position, self.alignment));
        self.pad_to(end)?;
        self.out.flush().map_err(io_error)?;
        Ok(self.out)
    }

    fn pad_to(&mut self, offset: u64) -> Result<()> {
        let gap = offset.saturating_sub(self.position);
        std::io::copy(&mut std::io::repeat(0).take(gap), &mut self.out).map_err(io_error)?;
        self.position += gap;
        Ok(())
    }
}

fn io_error(e: std::io::Error) -> Error {
    Error::Io {
        path: String::from("the GGUF output"),
        kind: e.kind(),
        message: e.to_string(),
    }
}

fn align_up(n: u64, alignment: u64) -> u64 {
    n.div_ceil(alignment) * alignment
}

/// `general.alignment` when the metadata sets it (a power of two, as a
/// UINT32), else 32.
fn alignment_of(metadata: &[(String, OwnedValue)]) -> Result<u64> {
    match metadata.iter().find(|(k, _)| k == ALIGNMENT_KEY) {
        None => Ok(32),
        Some((_, OwnedValue::U32(a))) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some((_, OwnedValue::U32(a))) => Err(Error::BadAlignment { alignment: *a }),
        Some((_, other)) => Err(Error::AlignmentType {
            found: other.value_type().name(),
        }),
    }
}

fn plan(tensors: &[TensorDecl], alignment: u64) -> Result<Vec<Planned>> {
    let mut names = std::collections::HashSet::new();
    let mut end = 0u64;
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        let name = t.name.clone();
        if t.name.len() >= MAX_NAME_BYTES {
            return Err(Error::TensorNameTooLong { name });
        }
        if !names.insert(t.name.as_str()) {
            return Err(Error::DuplicateTensor { name });
        }
        if t.dims.is_empty() || t.dims.len() > MAX_DIMS {
            return Err(Error::TooManyDimensions {
                tensor: name,
                n_dims: t.dims.len() as u32,
            });
        }
        let len = byte_len(t)?;
        let offset = t.offset.unwrap_or_else(|| align_up(end, alignment));
        if offset % alignment != 0 {
            return Err(Error::MisalignedTensor {
                tensor: name,
                offset,
                alignment: alignment as u32,
            });
        }
        if offset < end {
            let first = out
                .last()
                .map_or_else(String::new, |p: &Planned| p.name.clone());
            return Err(Error::OverlappingTensors {
                first,
                second: name,
            });
        }
        end = offset.checked_add(len).ok_or(Error::SizeOverflow {
            tensor: t.name.clone(),
        })?;
        out.push(Planned { name, offset, len });
    }
    Ok(out)
}

/// The byte size of a declared tensor, checking whole blocks per row.
pub(crate) fn byte_len(t: &TensorDecl) -> Result<u64> {
    let overflow = || Error::SizeOverflow {
        tensor: t.name.clone(),
    };
    let row = t.dims[0];
    let row_bytes = t.ggml_type.row_bytes(row).ok_or(Error::PartialBlock {
        tensor: t.name.clone(),
        ggml_type: t.ggml_type.name(),
        row,
        block_size: t.ggml_type.block_size(),
    })?;
    t.dims[1..]
        .iter()
        .try_fold(row_bytes, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let tensor = |name: &str, dims: Vec<u64>| TensorDecl {
            name: name.into(),
            dims,
            ggml_type: GgmlType::F32,
            offset: None,
        };
        Layout {
            version: 3,
            metadata: vec![("general.name".into(), OwnedValue::String("t".into()))],
            tensors: vec![tensor("a", vec![3]), tensor("b", vec![5, 2])],
        }
    }

    fn whole() -> Vec<u8> {
        let mut writer = GgufWriter::new(Vec::new(), &layout()).unwrap();
        writer.write_tensor("a", &[1; 12]).unwrap();
        writer.write_tensor("b", &[2; 40]).unwrap();
        writer.finish(None).unwrap()
    }

    #[test]
    fn a_tensor_written_in_parts_gives_the_same_file() {
        let mut writer = GgufWriter::new(Vec::new(), &layout()).unwrap();
        writer.write_part("a", &[1; 5]).unwrap();
        writer.write_part("a", &[1; 7]).unwrap();
        for _ in 0..4 {
            writer.write_part("b", &[2; 10]).unwrap();
        }
        assert_eq!(writer.finish(None).unwrap(), whole());
    }

    #[test]
    fn parts_past_the_size_or_out_of_order_are_refused() {
        let mut writer = GgufWriter::new(Vec::new(), &layout()).unwrap();
        writer.write_part("a", &[1; 8]).unwrap();
        let e = writer.write_part("a", &[1; 8]).unwrap_err();
        assert!(
            matches!(e, Error::WriteOrder { got_bytes: 16, .. }),
            "{e:?}"
        );
        let e = writer.write_part("b", &[2; 4]).unwrap_err();
        assert!(matches!(e, Error::WriteOrder { .. }), "{e:?}");
        // A whole-tensor write cannot finish a tensor begun in parts.
        let e = writer.write_tensor("a", &[1; 4]).unwrap_err();
        assert!(matches!(e, Error::WriteOrder { .. }), "{e:?}");
        let e = writer.finish(None).unwrap_err();
        assert!(matches!(e, Error::WriteOrder { .. }), "{e:?}");
    }
}
