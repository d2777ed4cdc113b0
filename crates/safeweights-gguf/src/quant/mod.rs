//! Dequantization of every ggml type `gguf.quants` can dequantize, and
//! quantization to the types it can quantize, bit for bit as `gguf.quants`
//! (gguf-py 0.19) computes them, NaN included.
//!
//! Values are in ggml's order: a tensor's bytes are rows of whole blocks,
//! and each block decodes to `block_size` consecutive values.
#![forbid(unsafe_code)]

pub mod half;
mod iquants;
mod kquants;
mod legacy;
mod quantize;
mod to_half;

pub use quantize::{can_quantize, quantize, quantize_into};

use crate::error::{Error, Result};
use crate::GgmlType;

type BlockFn = fn(&[u8], &mut [f32]);

/// The whole `N`-element pieces of `s` as arrays: fixed sizes let the
/// loops over them drop bounds checks and vectorise.
#[inline(always)]
fn arrays<T, const N: usize>(s: &[T]) -> impl Iterator<Item = &[T; N]> {
    s.as_chunks::<N>().0.iter()
}

/// [`arrays`], mutable.
#[inline(always)]
fn arrays_mut<T, const N: usize>(s: &mut [T]) -> impl Iterator<Item = &mut [T; N]> {
    s.as_chunks_mut::<N>().0.iter_mut()
}

/// Reads one value of a plain floating type.
type PlainFn = fn(&[u8]) -> f32;

/// The block decoder of a quantized type, or `None` for plain types and
/// the types `gguf.quants` cannot dequantize (Q8_1, Q8_K, NVFP4, Q1_0).
fn block_fn(ty: GgmlType) -> Option<BlockFn> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 => legacy::q4_0,
        T::Q4_1 => legacy::q4_1,
        T::Q5_0 => legacy::q5_0,
        T::Q5_1 => legacy::q5_1,
        T::Q8_0 => legacy::q8_0,
        T::Iq4Nl => legacy::iq4_nl,
        T::Mxfp4 => legacy::mxfp4,
        T::Q2K => kquants::q2_k,
        T::Q3K => kquants::q3_k,
        T::Q4K => kquants::q4_k,
        T::Q5K => kquants::q5_k,
        T::Q6K => kquants::q6_k,
        T::Iq4Xs => kquants::iq4_xs,
        T::Tq1_0 => kquants::tq1_0,
        T::Tq2_0 => kquants::tq2_0,
        T::Iq2Xxs => iquants::iq2_xxs,
        T::Iq2Xs => iquants::iq2_xs,
        T::Iq2S => iquants::iq2_s,
        T::Iq3Xxs => iquants::iq3_xxs,
        T::Iq3S => iquants::iq3_s,
        T::Iq1S => iquants::iq1_s,
        T::Iq1M => iquants::iq1_m,
        _ => return None,
    })
}

/// Whether [`dequantize`] decodes `ty` to f32: the floating types (F32,
/// F16, BF16, F64 is not among them: `gguf.quants` has no rule for it) and
/// every quantized type `gguf.quants` can dequantize.
pub fn can_dequantize(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16) || block_fn(ty).is_some()
}

/// Decodes `bytes`, whole blocks of `ty`, into `out`, which must hold
/// exactly their values. The result equals `gguf.quants.dequantize` bit for
/// bit.
///
/// Errors: [`Error::NotDequantizable`] for a type it has no rule for, and
/// [`Error::QuantLength`] when `bytes` is not whole blocks or `out` is not
/// their size.
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    check_lengths(ty, bytes.len(), out.len())?;
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        GgmlType::Bf16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        _ => {
            let decode = block_fn(ty).ok_or(Error::NotDequantizable {
                ggml_type: ty.name(),
            })?;
            let per_block = ty.block_size() as usize;
            for (block, values) in bytes
                .chunks_exact(ty.block_bytes() as usize)
                .zip(out.chunks_exact_mut(per_block))
            {
                decode(block, values);
            }
        }
    }
    Ok(())
}

/// Decodes `bytes`, whole blocks of `ty`, straight to IEEE half values
/// (little-endian, two bytes each) in `out`, which must hold exactly their
/// values. The result equals `gguf.quants.dequantize(...).astype(np.float16)`
/// bit for bit, that is [`dequantize`] followed by numpy's rounding, without
/// an f32 buffer the size of the tensor.
///
/// Errors: as [`dequantize`], with `out.len() / 2` values.
pub fn dequantize_f16(ty: GgmlType, bytes: &[u8], out: &mut [u8]) -> Result<()> {
    if !out.len().is_multiple_of(2) {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: bytes.len() as u64,
            values: out.len() as u64 / 2,
        });
    }
    check_lengths(ty, bytes.len(), out.len() / 2)?;
    let plain: Option<PlainFn> = match ty {
        GgmlType::F32 => Some(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        GgmlType::F16 => Some(|b| half::f16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        GgmlType::Bf16 => Some(|b| half::bf16_to_f32(u16::from_le_bytes([b[0], b[1]]))),
        _ => None,
    };
    if let Some(value) = plain {
        let width = bytes.len() / (out.len() / 2).max(1);
        for (o, b) in out
            .chunks_exact_mut(2)
            .zip(bytes.chunks_exact(width.max(1)))
        {
            o.copy_from_slice(&half::f32_to_f16(value(b)).to_le_bytes());
        }
        return Ok(());
    }
    match (to_half::direct(ty), block_fn(ty)) {
        (Some(direct), _) => direct(bytes, out),
        (None, Some(decode)) => {
            let per_block = ty.block_size() as usize;
            bytes
                .chunks_exact(ty.block_bytes() as usize)
                .zip(out.chunks_exact_mut(2 * per_block))
                .for_each(|(block, halves)| to_half::via_f32(decode, block, halves));
        }
        (None, None) => {
            return Err(Error::NotDequantizable {
                ggml_type: ty.name(),
            })
        }
    }
    Ok(())
}

fn check_lengths(ty: GgmlType, bytes: usize, values: usize) -> Result<()> {
    let blocks = bytes as u64 / ty.block_bytes();
    let whole = (bytes as u64).is_multiple_of(ty.block_bytes());
    if !whole || blocks.checked_mul(ty.block_size()) != Some(values as u64) {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: bytes as u64,
            values: values as u64,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random blocks whose f16 scales cover every bit pattern class
    /// (zero, subnormal, normal, infinity, NaN), in every byte.
    fn blocks(ty: GgmlType, count: usize, seed: u64) -> Vec<u8> {
        let mut state = seed;
        (0..count * ty.block_bytes() as usize)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (state >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn half_output_equals_f32_output_rounded() {
        for ty in GgmlType::all().filter(|&t| can_dequantize(t)) {
            let bytes = blocks(ty, 64, ty as u64 + 1);
            let n = bytes.len() / ty.block_bytes() as usize * ty.block_size() as usize;
            let mut values = vec![0f32; n];
            dequantize(ty, &bytes, &mut values).unwrap();
            let mut halves = vec![0u8; 2 * n];
            dequantize_f16(ty, &bytes, &mut halves).unwrap();
            for (i, (h, v)) in halves.chunks_exact(2).zip(&values).enumerate() {
                let h = u16::from_le_bytes([h[0], h[1]]);
                assert_eq!(h, half::f32_to_f16(*v), "{} value {i}", ty.name());
            }
        }
    }

    #[test]
    fn half_output_checks_lengths() {
        let e = dequantize_f16(GgmlType::Q8_0, &[0; 34], &mut [0; 63]).unwrap_err();
        assert!(matches!(e, Error::QuantLength { .. }), "{e:?}");
        let e = dequantize_f16(GgmlType::Q8_1, &[0; 40], &mut [0; 64]).unwrap_err();
        assert!(matches!(e, Error::NotDequantizable { .. }), "{e:?}");
    }
}
