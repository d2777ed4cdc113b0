//! The strict parser: header, metadata, tensor infos, then the checks that
//! need all of them (alignment, block rows, overlaps, file end).
//!
//! Every count and length is compared with the bytes left *before* anything
//! is allocated or read, so a crafted count cannot make us allocate more
//! than a small multiple of the file's own size.
#![forbid(unsafe_code)]

use std::collections::HashMap;

use crate::error::{Error, Place, Result};
use crate::value::{Array, Value, ValueType};
use crate::{GgmlType, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_NAME_BYTES};

/// The smallest possible key/value pair: an empty key, a type, one byte.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// The smallest possible tensor info: an empty name, 0 dims, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;
/// ggml's default when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: u32 = 32;

/// A little-endian reader over the file that never reads past its end.
struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, at: impl FnOnce() -> Place) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                at: at(),
                needed: n,
                available: self.remaining(),
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn u32(&mut self, at: impl FnOnce() -> Place) -> Result<u32> {
        let b = self.take(4, at)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self, at: impl FnOnce() -> Place) -> Result<u64> {
        let b = self.take(8, at)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// A count of items that each take at least `min_item` bytes.
    fn count(&mut self, min_item: u64, at: impl Fn() -> Place) -> Result<usize> {
        let count = self.u64(&at)?;
        if count > self.remaining() / min_item {
            return Err(Error::CountTooLarge {
                at: at(),
                count,
                available: self.remaining(),
            });
        }
        Ok(count as usize)
    }

    fn string(&mut self, at: impl Fn() -> Place) -> Result<&'a str> {
        let len = self.u64(&at)?;
        let bytes = self.take(len, &at)?;
        std::str::from_utf8(bytes).map_err(|_| Error::InvalidUtf8 { at: at() })
    }
}

/// A tensor as its info describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// The name.
    pub name: &'a str,
    /// The dimensions in ggml order: the fastest-varying (a row) first,
    /// the reverse of numpy's shape.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// The offset from the start of the data section, as stored.
    pub offset: u64,
    /// The byte length of its data.
    pub byte_len: u64,
}

impl TensorInfo<'_> {
    /// The shape in numpy order (the slowest-varying dimension first).
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// The number of elements.
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed, validated GGUF file, borrowing the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    data: &'a [u8],
    version: u32,
    metadata: Vec<(&'a str, Value<'a>)>,
    keys: HashMap<&'a str, usize>,
    tensors: Vec<TensorInfo<'a>>,
    names: HashMap<&'a str, usize>,
    alignment: u32,
    data_offset: u64,
}

impl<'a> Gguf<'a> {
    /// Parses and validates a whole GGUF file.
    pub fn parse(data: &'a [u8]) -> Result<Gguf<'a>> {
        let mut cur = Cursor { data, pos: 0 };
        let magic = &data[..data.len().min(4)];
        if magic != b"GGUF" {
            return Err(Error::BadMagic {
                found: magic.to_vec(),
            });
        }
        cur.pos = 4;
        let version = cur.u32(|| Place::Header)?;
        if !matches!(version, 2 | 3) {
            return Err(Error::UnsupportedVersion { version });
        }
        let tensor_count = cur.u64(|| Place::Header)?;
        let kv_count = cur.count(MIN_KV_BYTES, || Place::Header)?;
        if tensor_count > cur.remaining() / MIN_TENSOR_INFO_BYTES {
            let available = cur.remaining();
            return Err(Error::CountTooLarge {
                at: Place::Header,
                count: tensor_count,
                available,
            });
        }
        let (metadata, keys) = read_metadata(&mut cur, kv_count)?;
        let alignment = alignment(&metadata, &keys)?;
        let (tensors, names) = read_tensor_infos(&mut cur, tensor_count as usize)?;
        let data_offset = align_up(cur.pos as u64, alignment);
        let gguf = Gguf {
            data,
            version,
            metadata,
            keys,
            tensors,
            names,
            alignment,
            data_offset,
        };
        gguf.check_layout()?;
        Ok(gguf)
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every key/value pair, in file order.
    pub fn metadata(&self) -> &[(&'a str, Value<'a>)] {
        &self.metadata
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.keys.get(key).map(|&index| &self.metadata[index].1)
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.names.get(name).map(|&index| &self.tensors[index])
    }

    /// The alignment of the data section and of every tensor.
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The bytes of `info`, borrowed from the file.
    pub fn bytes_of(&self, info: &TensorInfo<'_>) -> &'a [u8] {
        // Bounds were checked in `check_layout`.
        let start = (self.data_offset + info.offset) as usize;
        &self.data[start..start + info.byte_len as usize]
    }

    /// The bytes of the tensor named `name`, borrowed from the file.
    pub fn tensor_bytes(&self, name: &str) -> Result<&'a [u8]> {
        let info = self.tensor(name).ok_or_else(|| Error::TensorNotFound {
            name: name.to_owned(),
        })?;
        Ok(self.bytes_of(info))
    }

    /// Alignment, file end and overlap checks over every tensor.
    fn check_layout(&self) -> Result<()> {
        let file_len = self.data.len() as u64;
        let mut ranges = Vec::with_capacity(self.tensors.len());
        for info in &self.tensors {
            if info.offset % u64::from(self.alignment) != 0 {
                return Err(Error::MisalignedTensor {
                    tensor: info.name.to_owned(),
                    offset: info.offset,
                    alignment: self.alignment,
                });
            }
            let end = self
                .data_offset
                .checked_add(info.offset)
                .and_then(|start| start.checked_add(info.byte_len))
                .filter(|&end| end <= file_len)
                .ok_or_else(|| Error::DataBeyondEnd {
                    tensor: info.name.to_owned(),
                    end: self
                        .data_offset
                        .saturating_add(info.offset)
                        .saturating_add(info.byte_len),
                    file_len,
                })?;
            if info.byte_len > 0 {
                ranges.push((end - info.byte_len, end, info.name));
            }
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            if pair[1].0 < pair[0].1 {
                return Err(Error::OverlappingTensors {
                    first: pair[0].2.to_owned(),
                    second: pair[1].2.to_owned(),
                });
            }
        }
        Ok(())
    }
}

type Metadata<'a> = (Vec<(&'a str, Value<'a>)>, HashMap<&'a str, usize>);

fn read_metadata<'a>(cur: &mut Cursor<'a>, kv_count: usize) -> Result<Metadata<'a>> {
    let mut metadata = Vec::with_capacity(kv_count);
    let mut keys = HashMap::with_capacity(kv_count);
    for index in 0..kv_count as u64 {
        let key = cur.string(|| Place::KeyName { index })?;
        let at = || Place::Value {
            key: key.to_owned(),
        };
        let type_id = cur.u32(at)?;
        let ty = value_type(key, type_id)?;
        let value = read_value(cur, key, ty, 0)?;
        if keys.insert(key, metadata.len()).is_some() {
            return Err(Error::DuplicateKey {
                key: key.to_owned(),
            });
        }
        metadata.push((key, value));
    }
    Ok((metadata, keys))
}

fn value_type(key: &str, type_id: u32) -> Result<ValueType> {
    ValueType::from_id(type_id).ok_or_else(|| Error::UnknownValueType {
        key: key.to_owned(),
        type_id,
    })
}

fn read_value<'a>(
    cur: &mut Cursor<'a>,
    key: &str,
    ty: ValueType,
    depth: usize,
) -> Result<Value<'a>> {
    let at = || Place::Value {
        key: key.to_owned(),
    };
    match ty {
        ValueType::String => Ok(Value::String(cur.string(at)?)),
        ValueType::Array => Ok(Value::Array(read_array(cur, key, depth + 1)?)),
        _ => {
            let raw = cur.take(ty.min_bytes() as u64, at)?;
            check_bools(key, ty, raw)?;
            Ok(Value::scalar(ty, raw))
        }
    }
}

fn read_array<'a>(cur: &mut Cursor<'a>, key: &str, depth: usize) -> Result<Array<'a>> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(Error::ArrayTooDeep {
            key: key.to_owned(),
        });
    }
    let at = || Place::Value {
        key: key.to_owned(),
    };
    let ty = value_type(key, cur.u32(at)?)?;
    let count = cur.count(ty.min_bytes() as u64, at)?;
    if ty.is_scalar() {
        let raw = cur.take(count as u64 * ty.min_bytes() as u64, at)?;
        check_bools(key, ty, raw)?;
        return Ok(Array::scalars(ty, raw));
    }
    if ty == ValueType::String {
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(cur.string(at)?);
        }
        return Ok(Array::strings(items));
    }
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(read_array(cur, key, depth + 1)?);
    }
    Ok(Array::arrays(items))
}

fn check_bools(key: &str, ty: ValueType, raw: &[u8]) -> Result<()> {
    match (ty, raw.iter().find(|&&b| b > 1)) {
        (ValueType::Bool, Some(&byte)) => Err(Error::InvalidBool {
            key: key.to_owned(),
            byte,
        }),
        _ => Ok(()),
    }
}

fn alignment(metadata: &[(&str, Value<'_>)], keys: &HashMap<&str, usize>) -> Result<u32> {
    match keys.get(crate::ALIGNMENT_KEY).map(|&i| &metadata[i].1) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&Value::U32(alignment)) if alignment.is_power_of_two() => Ok(alignment),
        Some(&Value::U32(alignment)) => Err(Error::BadAlignment { alignment }),
        Some(other) => Err(Error::AlignmentType {
            found: other.value_type().name(),
        }),
    }
}

type Tensors<'a> = (Vec<TensorInfo<'a>>, HashMap<&'a str, usize>);

fn read_tensor_infos<'a>(cur: &mut Cursor<'a>, count: usize) -> Result<Tensors<'a>> {
    let mut tensors = Vec::with_capacity(count);
    let mut names = HashMap::with_capacity(count);
    for index in 0..count as u64 {
        let info = read_tensor_info(cur, index)?;
        if names.insert(info.name, tensors.len()).is_some() {
            return Err(Error::DuplicateTensor {
                name: info.name.to_owned(),
            });
        }
        tensors.push(info);
    }
    Ok((tensors, names))
}

fn read_tensor_info<'a>(cur: &mut Cursor<'a>, index: u64) -> Result<TensorInfo<'a>> {
    let name = cur.string(|| Place::TensorInfo { index })?;
    if name.len() >= MAX_NAME_BYTES {
        return Err(Error::TensorNameTooLong {
            name: name.to_owned(),
        });
    }
    let at = || Place::Tensor {
        name: name.to_owned(),
    };
    let n_dims = cur.u32(at)?;
    if n_dims as usize > MAX_DIMS {
        return Err(Error::TooManyDimensions {
            tensor: name.to_owned(),
            n_dims,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64(at)?);
    }
    let type_id = cur.u32(at)?;
    let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| Error::UnknownGgmlType {
        tensor: name.to_owned(),
        type_id,
    })?;
    let offset = cur.u64(at)?;
    let byte_len = byte_len(name, &dims, ggml_type)?;
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        byte_len,
    })
}

/// The byte size of a tensor, with ggml's limits: a row of whole blocks,
/// and an element count that fits in `i64`.
fn byte_len(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
    let overflow = || Error::SizeOverflow {
        tensor: name.to_owned(),
    };
    let numel = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    if numel > i64::MAX as u64 || dims.iter().any(|&d| d > i64::MAX as u64) {
        return Err(overflow());
    }
    let row = dims.first().copied().unwrap_or(1);
    let rows = dims
        .iter()
        .skip(1)
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let row_bytes = ty.row_bytes(row).ok_or_else(|| Error::PartialBlock {
        tensor: name.to_owned(),
        ggml_type: ty.name(),
        row,
        block_size: ty.block_size(),
    })?;
    row_bytes.checked_mul(rows).ok_or_else(overflow)
}

/// `value` rounded up to a multiple of `alignment` (a power of two); the
/// position of a cursor is far from `u64::MAX`, so this cannot overflow.
fn align_up(value: u64, alignment: u32) -> u64 {
    let alignment = u64::from(alignment);
    value.div_ceil(alignment) * alignment
}
