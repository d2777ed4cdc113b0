//! Quantization to the types `gguf.quants.quantize` supports, bit-exact
//! with it: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0.
//!
//! The block types refuse NaN and infinity (their scales would be
//! meaningless, and `gguf.quants` then depends on how the platform casts
//! NaN to an integer); the plain types store them as they are.
#![forbid(unsafe_code)]

use super::half::{f32_to_bf16, f32_to_f16};
use super::{arrays, arrays_mut};
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
    let start = out.len();
    out.resize(start + quantized_len(ty, values.len())?, 0);
    let done = quantize_into(ty, values, &mut out[start..]);
    if done.is_err() {
        out.truncate(start);
    }
    done
}

/// The bytes `values` values take as `ty`, checking that `ty` can be
/// quantized to and that they are whole blocks.
fn quantized_len(ty: GgmlType, values: usize) -> Result<usize> {
    if !can_quantize(ty) {
        return Err(Error::NotQuantizable {
            ggml_type: ty.name(),
        });
    }
    let per_block = ty.block_size() as usize;
    if !values.is_multiple_of(per_block) {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: (values / per_block) as u64 * ty.block_bytes(),
            values: values as u64,
        });
    }
    Ok(values / per_block * ty.block_bytes() as usize)
}

/// [`quantize`] into `out`, which must be exactly the size of the result
/// (else [`Error::QuantLength`]). Block types are checked block by block,
/// so the values are read once.
pub fn quantize_into(ty: GgmlType, values: &[f32], out: &mut [u8]) -> Result<()> {
    if quantized_len(ty, values.len())? != out.len() {
        return Err(Error::QuantLength {
            ggml_type: ty.name(),
            bytes: out.len() as u64,
            values: values.len() as u64,
        });
    }
    match ty {
        GgmlType::F32 => plain::<4>(values, out, f32::to_le_bytes),
        GgmlType::F16 => plain::<2>(values, out, |v| f32_to_f16(v).to_le_bytes()),
        GgmlType::Bf16 => plain::<2>(values, out, |v| f32_to_bf16(v).to_le_bytes()),
        GgmlType::Q4_0 => blocks::<18>(ty, values, out, |v, o| symmetric(v, o, 8.0, 15)),
        GgmlType::Q5_0 => blocks::<22>(ty, values, out, |v, o| symmetric(v, o, 16.0, 31)),
        GgmlType::Q4_1 => blocks::<20>(ty, values, out, |v, o| asymmetric(v, o, 15.0, 15)),
        GgmlType::Q5_1 => blocks::<24>(ty, values, out, |v, o| asymmetric(v, o, 31.0, 31)),
        _ => blocks::<34>(ty, values, out, q8_0),
    }
}

#[inline(always)]
fn plain<const W: usize>(
    values: &[f32],
    out: &mut [u8],
    encode: impl Fn(f32) -> [u8; W],
) -> Result<()> {
    for (o, &v) in arrays_mut::<u8, W>(out).zip(values) {
        *o = encode(v);
    }
    Ok(())
}

/// Encodes every block of 32 values with `encode`, after checking that
/// they are finite.
#[inline(always)]
fn blocks<const N: usize>(
    ty: GgmlType,
    values: &[f32],
    out: &mut [u8],
    encode: impl Fn(&[f32; 32], &mut [u8; N]),
) -> Result<()> {
    let blocks = arrays::<f32, 32>(values).zip(arrays_mut::<u8, N>(out));
    for (i, (block, o)) in blocks.enumerate() {
        // NaN and infinity have an all-ones exponent.
        let non_finite = block.iter().fold(false, |any, v| {
            any | (v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
        });
        if non_finite {
            let at = block.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(Error::NonFinite {
                ggml_type: ty.name(),
                index: (i * 32 + at) as u64,
            });
        }
        encode(block, o);
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
fn symmetric<const N: usize>(block: &[f32; 32], out: &mut [u8; N], levels: f32, top: u8) {
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
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    pack(&q, &mut out[2..]);
}

/// Q4_1 and Q5_1: `d = (max - min) / steps`, offset `min`.
fn asymmetric<const N: usize>(block: &[f32; 32], out: &mut [u8; N], steps: f32, top: u8) {
    let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = block.iter().copied().fold(f32::INFINITY, f32::min);
    let d = (max - min) / steps;
    let id = inverse(d);
    let q: [u8; 32] = std::array::from_fn(|i| {
        let level = ((block[i] - min) * id + 0.5).trunc();
        (level as u8).min(top)
    });
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    out[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
    pack(&q, &mut out[4..]);
}

/// Low nibbles hold values 0..16, high nibbles 16..32; for 5-bit types
/// (`out` of 20 bytes rather than 16) the fifth bits come first, as a
/// little-endian `u32`.
fn pack(q: &[u8; 32], out: &mut [u8]) {
    let nibbles = match out.len() {
        20 => {
            let qh = (0..32).fold(0u32, |acc, i| acc | (u32::from(q[i] >> 4) << i));
            out[..4].copy_from_slice(&qh.to_le_bytes());
            &mut out[4..]
        }
        _ => out,
    };
    for (i, o) in nibbles.iter_mut().enumerate() {
        *o = (q[i] & 0x0f) | (q[i + 16] << 4);
    }
}

/// `x` rounded half away from zero (as `gguf.quants`' `np_roundf`) and
/// saturated to `i8`, as `x.round() as i8` (NaN gives 0), branch-free so
/// that the loop over a block vectorises: after the clamp, `x - trunc(x)`
/// is exact.
#[inline(always)]
fn round_to_i8(x: f32) -> i8 {
    let x = x.clamp(-128.0, 127.0);
    let t = x as i32;
    let frac = x - t as f32;
    (t + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)) as i8
}

fn q8_0(block: &[f32; 32], out: &mut [u8; 34]) {
    let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out[..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
    for (o, &v) in out[2..].iter_mut().zip(block) {
        *o = round_to_i8(v * id) as u8;
    }
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
    fn the_vectorised_rounding_is_round_then_saturate() {
        let edges = [
            0.5f32, 1.5, 2.5, -0.5, -2.5, 0.49999997, 126.5, 127.49, 127.5, 128.0, -128.5, -129.0,
            1e30, -1e30,
        ];
        let specials = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        let sweep = (0..=u32::MAX).step_by(4099).map(f32::from_bits);
        for x in edges.into_iter().chain(specials).chain(sweep) {
            assert_eq!(
                round_to_i8(x),
                x.round() as i8,
                "{x:e} ({:#010x})",
                x.to_bits()
            );
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
