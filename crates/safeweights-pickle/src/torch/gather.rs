//! Copies a strided view out of its storage into contiguous row-major
//! little-endian bytes.

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::TensorRef;

/// Smallest output always allowed for a view, whatever its storage size:
/// broadcast (stride 0) tensors legitimately expand their storage.
const MIN_EXPANSION_CAP: u64 = 64 << 20;

/// Returns the tensor's bytes from `storage` (the bytes of its storage or
/// legacy storage view). Contiguous little-endian tensors are borrowed.
pub(crate) fn tensor_bytes<'a>(
    t: &TensorRef,
    storage: &'a [u8],
    big_endian: bool,
    limits: &Limits,
) -> Result<Cow<'a, [u8]>> {
    let es = t.scalar.size;
    let nbytes = t.nbytes().ok_or_else(too_big)?;
    let mut out = if t.is_contiguous() || nbytes == 0 {
        let start = t.offset.checked_mul(es as u64).ok_or_else(too_big)?;
        let end = start.checked_add(nbytes).ok_or_else(too_big)?;
        let (start, end) = (to_usize(start)?, to_usize(end)?);
        let slice = storage
            .get(start..end)
            .ok_or_else(|| Error::checkpoint("tensor lies outside its storage"))?;
        Cow::Borrowed(if nbytes == 0 { &[][..] } else { slice })
    } else {
        let cap = (storage.len() as u64)
            .saturating_mul(limits.max_ratio)
            .max(MIN_EXPANSION_CAP);
        if nbytes > cap {
            return Err(
                Error::limit("max_ratio", limits.max_ratio, 0).within(format!(
                    "strided tensor of {nbytes} bytes from a {}-byte storage",
                    storage.len()
                )),
            );
        }
        Cow::Owned(gather(t, storage, to_usize(nbytes)?)?)
    };
    if big_endian && es > 1 {
        let unit = if t.scalar.name.starts_with("complex") {
            es / 2
        } else {
            es
        };
        for chunk in out.to_mut().chunks_exact_mut(unit) {
            chunk.reverse();
        }
    }
    Ok(out)
}

fn too_big() -> Error {
    Error::checkpoint("tensor size overflows 64 bits")
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| too_big())
}

/// Walks the index space with an odometer, copying one innermost row at a
/// time (a single memcpy when the last stride is 1).
fn gather(t: &TensorRef, storage: &[u8], nbytes: usize) -> Result<Vec<u8>> {
    let es = t.scalar.size;
    let mut out = Vec::with_capacity(nbytes);
    let (Some((&inner, outer_shape)), Some((&inner_stride, outer_stride))) =
        (t.shape.split_last(), t.stride.split_last())
    else {
        return Err(Error::checkpoint("a 0-d tensor cannot be non-contiguous"));
    };
    let mut index = vec![0u64; outer_shape.len()];
    let run_contiguous = inner_stride == 1;
    loop {
        let base = t.offset
            + index
                .iter()
                .zip(outer_stride)
                .map(|(&i, &s)| i * s)
                .sum::<u64>();
        // Bounds were proven by TensorRef::new, so no overflow is possible
        // here; `get` still guards against any mistake.
        if run_contiguous {
            let start = base as usize * es;
            let row = storage
                .get(start..start + inner as usize * es)
                .ok_or_else(|| Error::checkpoint("tensor lies outside its storage"))?;
            out.extend_from_slice(row);
        } else {
            for j in 0..inner {
                let start = (base + j * inner_stride) as usize * es;
                let elem = storage
                    .get(start..start + es)
                    .ok_or_else(|| Error::checkpoint("tensor lies outside its storage"))?;
                out.extend_from_slice(elem);
            }
        }
        if !advance(&mut index, outer_shape) {
            return Ok(out);
        }
    }
}

/// Increments a row-major multi-index; false when it wraps around.
fn advance(index: &mut [u64], shape: &[u64]) -> bool {
    for (i, &size) in index.iter_mut().zip(shape).rev() {
        *i += 1;
        if *i < size {
            return true;
        }
        *i = 0;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pickle::StorageRef;
    use crate::scalar::ScalarType;

    fn tensor(dtype: &str, numel: u64, offset: u64, shape: &[u64], stride: &[u64]) -> TensorRef {
        let scalar = ScalarType::from_dtype_name(dtype).unwrap();
        let storage = Arc::new(StorageRef {
            key: "0".into(),
            scalar: Some(scalar),
            numel,
            location: "cpu".into(),
            view: None,
        });
        TensorRef::new(storage, scalar, offset, shape.to_vec(), stride.to_vec()).unwrap()
    }

    #[test]
    fn transposed_and_sliced_views() {
        let storage: Vec<u8> = (0u8..6).collect();
        let t = tensor("uint8", 6, 0, &[3, 2], &[1, 3]);
        let out = tensor_bytes(&t, &storage, false, &Limits::default()).unwrap();
        assert_eq!(&*out, &[0, 3, 1, 4, 2, 5]);
        let storage: Vec<u8> = (0u8..8).collect();
        let s = tensor("uint8", 8, 2, &[2, 2], &[3, 1]);
        let out = tensor_bytes(&s, &storage, false, &Limits::default()).unwrap();
        assert_eq!(&*out, &[2, 3, 5, 6]);
        let strided = tensor("uint8", 8, 1, &[3], &[3]);
        let out = tensor_bytes(&strided, &storage, false, &Limits::default()).unwrap();
        assert_eq!(&*out, &[1, 4, 7]);
    }

    #[test]
    fn contiguous_is_borrowed_and_big_endian_swapped() {
        let storage = [0u8, 1, 2, 3, 4, 5, 6, 7];
        let t = tensor("int16", 4, 1, &[2], &[1]);
        let out = tensor_bytes(&t, &storage, false, &Limits::default()).unwrap();
        assert!(matches!(out, Cow::Borrowed(&[2, 3, 4, 5])));
        let out = tensor_bytes(&t, &storage, true, &Limits::default()).unwrap();
        assert_eq!(&*out, &[3, 2, 5, 4]);
        let c = tensor("complex64", 1, 0, &[1], &[1]);
        let out = tensor_bytes(&c, &storage, true, &Limits::default()).unwrap();
        assert_eq!(&*out, &[3, 2, 1, 0, 7, 6, 5, 4]);
    }

    #[test]
    fn broadcast_expansion_is_capped() {
        let storage = [1u8];
        let t = tensor("uint8", 1, 0, &[4, 3], &[0, 0]);
        assert_eq!(
            &*tensor_bytes(&t, &storage, false, &Limits::default()).unwrap(),
            &[1u8; 12]
        );
        let bomb = tensor("uint8", 1, 0, &[1 << 20, 1 << 20], &[0, 0]);
        assert!(tensor_bytes(&bomb, &storage, false, &Limits::default()).is_err());
    }
}
