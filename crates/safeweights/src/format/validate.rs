//! The byte-layout rules: every tensor's size matches its shape and dtype,
//! and the tensors tile the data section exactly.

use crate::error::{Error, Result};
use crate::format::header::{checked_numel, TensorInfo};

/// Checks every entry's size and sorts the entries by offset.
pub(crate) fn check_sizes_and_sort(mut tensors: Vec<TensorInfo>) -> Result<Vec<TensorInfo>> {
    for tensor in &tensors {
        check_size(tensor)?;
    }
    // Writers emit tensors in offset order, so this is usually a linear check.
    if !tensors.is_sorted_by_key(|t| (t.begin, t.end)) {
        tensors.sort_unstable_by_key(|t| (t.begin, t.end));
    }
    Ok(tensors)
}

/// Checks that tensors sorted by offset tile `[0, data_len)` with no holes,
/// overlaps or trailing bytes.
pub(crate) fn check_tiling(tensors: &[TensorInfo], data_len: u64) -> Result<()> {
    let mut end = 0u64;
    let mut previous: Option<&TensorInfo> = None;
    for tensor in tensors {
        if tensor.begin < end {
            return Err(Error::Overlap {
                tensor: tensor.name.clone(),
                other: previous.map(|p| p.name.clone()).unwrap_or_default(),
            });
        }
        if tensor.begin > end {
            return Err(Error::Hole {
                tensor: tensor.name.clone(),
                expected_begin: end,
                begin: tensor.begin,
            });
        }
        end = tensor.end;
        previous = Some(tensor);
    }
    if end != data_len {
        return Err(Error::DataLengthMismatch {
            expected: end,
            actual: data_len,
        });
    }
    Ok(())
}

/// Checks one entry: offsets in order, and byte length equal to the
/// element count times the dtype size, computed without overflow.
fn check_size(tensor: &TensorInfo) -> Result<()> {
    if tensor.end < tensor.begin {
        return Err(Error::EndBeforeBegin {
            tensor: tensor.name.clone(),
            begin: tensor.begin,
            end: tensor.end,
        });
    }
    let overflow = || Error::ShapeOverflow {
        tensor: tensor.name.clone(),
    };
    let numel = checked_numel(&tensor.shape).ok_or_else(overflow)?;
    let bits = numel
        .checked_mul(tensor.dtype.bits())
        .ok_or_else(overflow)?;
    if bits % 8 != 0 {
        return Err(Error::PartialByte {
            tensor: tensor.name.clone(),
            bits: bits as u128,
        });
    }
    let expected = (bits / 8) as u64;
    let actual = tensor.end - tensor.begin;
    if expected != actual {
        return Err(Error::LengthMismatch {
            tensor: tensor.name.clone(),
            expected,
            actual,
        });
    }
    Ok(())
}
