//! The byte-layout rules: every tensor's size matches its shape and dtype,
//! and the tensors tile the data section exactly.

use crate::error::{Error, Result};
use crate::format::header::checked_numel;
use crate::format::table::{Table, TensorEntry};

/// Checks every entry's size and sorts the entries by offset.
pub(crate) fn check_sizes_and_sort(tensors: &mut Table) -> Result<()> {
    for tensor in tensors.iter() {
        check_size(tensor)?;
    }
    tensors.sort_by_offset();
    Ok(())
}

/// Checks that tensors sorted by offset tile `[0, data_len)` with no holes,
/// overlaps or trailing bytes.
pub(crate) fn check_tiling(tensors: &Table, data_len: u64) -> Result<()> {
    let mut end = 0u64;
    let mut previous: Option<TensorEntry<'_>> = None;
    for tensor in tensors.iter() {
        if tensor.begin < end {
            return Err(Error::Overlap {
                tensor: tensor.name.to_owned(),
                other: previous.map(|p| p.name.to_owned()).unwrap_or_default(),
            });
        }
        if tensor.begin > end {
            return Err(Error::Hole {
                tensor: tensor.name.to_owned(),
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
fn check_size(tensor: TensorEntry<'_>) -> Result<()> {
    if tensor.end < tensor.begin {
        return Err(Error::EndBeforeBegin {
            tensor: tensor.name.to_owned(),
            begin: tensor.begin,
            end: tensor.end,
        });
    }
    let overflow = || Error::ShapeOverflow {
        tensor: tensor.name.to_owned(),
    };
    let numel = checked_numel(tensor.shape).ok_or_else(overflow)?;
    let bits = numel
        .checked_mul(tensor.dtype.bits())
        .ok_or_else(overflow)?;
    if bits % 8 != 0 {
        return Err(Error::PartialByte {
            tensor: tensor.name.to_owned(),
            bits: bits as u128,
        });
    }
    let expected = (bits / 8) as u64;
    let actual = tensor.end - tensor.begin;
    if expected != actual {
        return Err(Error::LengthMismatch {
            tensor: tensor.name.to_owned(),
            expected,
            actual,
        });
    }
    Ok(())
}
