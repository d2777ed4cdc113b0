//! Quantization to the types `gguf.quants.quantize` supports, bit-exact
//! with it: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! The block types refuse NaN and infinity (their scales would be
//! meaningless, and `gguf.quants` then depends on how the platform casts
//! NaN to an integer); the plain types store them as they are.
#![forbid(unsafe_code)]

use super::half::{f32_to_bf16, f32_to_f16};
use crate::error::{Error, Result};
use crate::GgmlType;

/// Whether [`quantize`] can produce `ty`.
pub fn can_quantize(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::F32 | T::F16 | T::Bf16 | T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1 | T::Q8_0
    )
}

/// Appends `values` (a whole number of blocks of `ty`) quantized to `ty`
/// to `out`, exactly as `gguf.quants.quantize` does.
///
/// Errors: [`Error::NotQuantizable`], [`Error::QuantLength`] when the
/// values are not whole blocks, [`Error::NonFinite`] for NaN or infinity in
/// a block type.
pub fn quantize(ty: GgmlType, values: &[f32], out: &mut Vec<u8>) -> Result<()> {
    if !can_quantize(ty) {
        return Err(Error::NotQuantizable {
            ggml_type: ty.name(),
        });
    }
    let per_block = ty.block_size() as usize;
    if !values.len().is_multiple_of(per_block) {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: (values.len() / per_block) as u64 * ty.block_bytes(),
            values: values.len() as u64,
        });
    }
    if ty.is_quantized() {
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                ggml_type: ty.name(),
                index: index as u64,
            });
        }
    }
    out.reserve(values.len() / per_block * ty.block_bytes() as usize);
    let encode: fn(&[f32], &mut Vec<u8>) = match ty {
        GgmlType::F32 => |v, out| out.extend_from_slice(&v[0].to_le_bytes()),
        GgmlType::F16 => |v, out| out.extend_from_slice(&f32_to_f16(v[0]).to_le_bytes()),
        GgmlType::Bf16 => |v, out| out.extend_from_slice(&f32_to_bf16(v[0]).to_le_bytes()),
        GgmlType::Q4_0 => |v, out| symmetric(v, out, 8.0, 15, false),
        GgmlType::Q5_0 => |v, out| symmetric(v, out, 16.0, 31, true),
        GgmlType::Q4_1 => |v, out| asymmetric(v, out, 15.0, 15, false),
        GgmlType::Q5_1 => |v, out| asymmetric(v, out, 31.0, 31, true),
        _ => q8_0,
    };
    for block in values.chunks_exact(per_block) {
        encode(block, out);
    }
    Ok(())
}

/// `1 / d`, or 0 for a zero scale (numpy's `np.where(d == 0, 0, 1 / d)`).
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Q4_0 and Q5_0: the value of largest magnitude (the first, on ties)
/// maps to level 0, `d = max / -levels`.
fn symmetric(block: &[f32], out: &mut Vec<u8>, levels: f32, top: u8, five_bits: bool) {
    let mut max = block[0];
    for &v in &block[1..] {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    let d = max / -levels;
    let id = inverse(d);
    let q: [u8; 32] = std::array::from_fn(|i| {
        let level = (block[i] * id + (levels + 0.5)).trunc();
        (level as u8).min(top)
    });
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    pack(&q, out, five_bits);
}

/// Q4_1 and Q5_1: `d = (max - min) / steps`, offset `min`.
fn asymmetric(block: &[f32], out: &mut Vec<u8>, steps: f32, top: u8, five_bits: bool) {
    let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = block.iter().copied().fold(f32::INFINITY, f32::min);
    let d = (max - min) / steps;
    let id = inverse(d);
    let q: [u8; 32] = std::array::from_fn(|i| {
        let level = ((block[i] - min) * id + 0.5).trunc();
        (level as u8).min(top)
    });
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    out.extend_from_slice(&f32_to_f16(min).to_le_bytes());
    pack(&q, out, five_bits);
}

/// Low nibbles hold values 0..16, high nibbles 16..32; for 5-bit types
/// the fifth bits come first, as a little-endian `u32`.
fn pack(q: &[u8; 32], out: &mut Vec<u8>, five_bits: bool) {
    if five_bits {
        let qh = (0..32).fold(0u32, |acc, i| acc | (u32::from(q[i] >> 4) << i));
        out.extend_from_slice(&qh.to_le_bytes());
    }
    out.extend((0..16).map(|i| (q[i] & 0x0f) | (q[i + 16] << 4)));
}

fn q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
    // `round` is half away from zero, as `gguf.quants`' `np_roundf`.
    out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    #[test]
    fn q8_0_round_trips_small_integers() {
        let values: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut bytes = Vec::new();
        quantize(GgmlType::Q8_0, &values, &mut bytes).unwrap();
        assert_eq!(bytes.len(), 34);
        let mut back = vec![0f32; 32];
        dequantize(GgmlType::Q8_0, &bytes, &mut back).unwrap();
        for (a, b) in values.iter().zip(&back) {
            assert!((a - b).abs() <= 16.0 / 127.0, "{a} {b}");
        }
    }

    #[test]
    fn block_types_refuse_nan_and_partial_blocks() {
        let mut values = vec![1.0f32; 32];
        values[5] = f32::NAN;
        let e = quantize(GgmlType::Q4_0, &values, &mut Vec::new()).unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 5, .. }), "{e:?}");
        let e = quantize(GgmlType::Q8_0, &[1.0; 31], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, Error::QuantLength { .. }), "{e:?}");
        let e = quantize(GgmlType::Q4K, &[1.0; 256], &mut Vec::new()).unwrap_err();
        assert!(matches!(e, Error::NotQuantizable { .. }), "{e:?}");
    }
}
