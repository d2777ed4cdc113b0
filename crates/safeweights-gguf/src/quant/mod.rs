//! Dequantization of every ggml type `gguf.quants` can dequantize, and
//! quantization to the types it can quantize, bit for bit as `gguf.quants`
//! (gguf-py 0.19) computes them, NaN included.
//!
//! Values are in ggml's order: a tensor's bytes are rows of whole blocks,
//! and each block decodes to `block_size` consecutive values.
#![forbid(unsafe_code)]

mod half;
mod iquants;
mod kquants;
mod legacy;
mod quantize;

pub use quantize::{can_quantize, quantize};

use crate::error::{Error, Result};
use crate::GgmlType;

type BlockFn = fn(&[u8], &mut [f32]);

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

fn check_lengths(ty: GgmlType, bytes: usize, values: usize) -> Result<()> {
    let blocks = bytes as u64 / ty.block_bytes();
    let whole = bytes as u64 % ty.block_bytes() == 0;
    if !whole || blocks.checked_mul(ty.block_size()) != Some(values as u64) {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: bytes as u64,
            values: values as u64,
        });
    }
    Ok(())
}
