//! Casting floating-point tensors, bit for bit as torch's `.to(dtype)` on
//! CPU does it.
//!
//! Torch converts through `float`: a double becomes a float (rounded to
//! nearest, ties to even) before it becomes a half or bfloat16, so a
//! double can be rounded twice, and we do the same. Every step rounds to
//! nearest even, overflows to infinity and keeps subnormals. NaN stays NaN:
//! bfloat16 NaN is `0x7FC0` (c10's scalar conversion; torch's vectorized
//! kernels give `0xFFFF` instead, so only "is NaN" is comparable there),
//! half and float NaN keep their sign and top payload bits, quieted, as
//! the F16C and SSE instructions torch uses do.

use safeweights_gguf::quant::half::{f32_to_f16_with, HalfNan};
use safeweights_pickle::Dtype;
use safeweights_pickle::{Error, Result};

/// Elements cast per chunk: bounds the buffer to a few megabytes.
const CHUNK_ELEMENTS: usize = 1 << 20;
/// Bytes per chunk when no cast is needed (sets progress granularity).
const COPY_CHUNK: usize = 16 << 20;

/// The dtypes a checkpoint can be cast to.
pub(crate) fn check_target(dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::BF16 | Dtype::F16 | Dtype::F32 => Ok(()),
        other => Err(Error::usage(format!(
            "cannot cast to {other}: the target dtype must be BF16, F16 or F32"
        ))),
    }
}

/// The dtype a tensor of `source` dtype is written as: floating tensors
/// take the requested dtype; integers, bool, complex and 8-bit floats keep
/// theirs.
pub(crate) fn output_dtype(source: Dtype, cast: Option<Dtype>) -> Dtype {
    match (source, cast) {
        (Dtype::F64 | Dtype::F32 | Dtype::F16 | Dtype::BF16, Some(target)) => target,
        _ => source,
    }
}

/// Feeds `data` (whole elements of `from`) to `sink` as bytes of `to`, one
/// bounded chunk at a time.
pub(crate) fn for_each_chunk(
    from: Dtype,
    to: Dtype,
    data: &[u8],
    mut sink: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    if from == to {
        return data.chunks(COPY_CHUNK).try_for_each(sink);
    }
    let (in_size, out_size) = (from.bits() / 8, to.bits() / 8);
    let mut buffer = Vec::with_capacity(CHUNK_ELEMENTS * out_size);
    for chunk in data.chunks(CHUNK_ELEMENTS * in_size) {
        buffer.clear();
        for element in chunk.chunks_exact(in_size) {
            let bits = to_f32_bits(from, element);
            push_from_f32_bits(to, bits, &mut buffer);
        }
        sink(&buffer)?;
    }
    Ok(())
}

/// One element of a floating dtype as `f32` bits (exact, except from
/// `F64`, which is rounded).
fn to_f32_bits(from: Dtype, element: &[u8]) -> u32 {
    let mut raw = [0u8; 8];
    raw[..element.len()].copy_from_slice(element);
    match from {
        Dtype::F64 => f64_to_f32_bits(u64::from_le_bytes(raw)),
        Dtype::F16 => f16_to_f32_bits(u16::from_le_bytes([raw[0], raw[1]])),
        Dtype::BF16 => u32::from(u16::from_le_bytes([raw[0], raw[1]])) << 16,
        _ => u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
    }
}

fn push_from_f32_bits(to: Dtype, bits: u32, out: &mut Vec<u8>) {
    match to {
        Dtype::BF16 => out.extend_from_slice(&f32_to_bf16_bits(bits).to_le_bytes()),
        Dtype::F16 => out.extend_from_slice(&f32_to_f16_bits(bits).to_le_bytes()),
        _ => out.extend_from_slice(&bits.to_le_bytes()),
    }
}

/// Appends `values` as bytes of `to` (F32, F16 or BF16), rounding as
/// [`for_each_chunk`] does.
pub(crate) fn extend_from_f32(to: Dtype, values: &[f32], out: &mut Vec<u8>) {
    let start = out.len();
    match to {
        Dtype::F16 | Dtype::BF16 => {
            out.resize(start + values.len() * 2, 0);
            let convert = if to == Dtype::F16 {
                f32_to_f16_bits
            } else {
                f32_to_bf16_bits
            };
            for (o, v) in out[start..].chunks_exact_mut(2).zip(values) {
                o.copy_from_slice(&convert(v.to_bits()).to_le_bytes());
            }
        }
        _ => {
            out.resize(start + values.len() * 4, 0);
            for (o, v) in out[start..].chunks_exact_mut(4).zip(values) {
                o.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
}

fn f64_to_f32_bits(bits: u64) -> u32 {
    let value = f64::from_bits(bits);
    if value.is_nan() {
        let sign = ((bits >> 32) & 0x8000_0000) as u32;
        let payload = ((bits >> 29) & 0x003f_ffff) as u32;
        return sign | 0x7fc0_0000 | payload;
    }
    // `as` rounds to nearest even and overflows to infinity.
    (value as f32).to_bits()
}

fn f16_to_f32_bits(h: u16) -> u32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    match (exponent, mantissa) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalize the mantissa into an f32 exponent.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    }
}

fn f32_to_bf16_bits(bits: u32) -> u16 {
    if f32::from_bits(bits).is_nan() {
        return 0x7fc0;
    }
    let bias = 0x7fff + ((bits >> 16) & 1);
    ((bits + bias) >> 16) as u16
}

/// The workspace's one f32 to half rounding, owned by the GGUF crate
/// (whose numpy-exact conversions need it too), with torch's NaN rule.
fn f32_to_f16_bits(bits: u32) -> u16 {
    f32_to_f16_with(f32::from_bits(bits), HalfNan::Quiet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_from_f32_rounds_as_the_element_cast() {
        let bits = [
            0x3f80_8000u32,
            0x3f81_8000,
            0x477f_f000,
            0x0000_0001,
            0x3300_0001,
            0x7f80_0001,
            0xffc0_0000,
            0x7f7f_ffff,
            0x8000_0000,
            0x3eaa_aaab,
        ];
        let values: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        for to in [Dtype::F16, Dtype::BF16, Dtype::F32] {
            let mut fast = vec![7u8];
            extend_from_f32(to, &values, &mut fast);
            let mut slow = vec![7u8];
            for v in &values {
                push_from_f32_bits(to, v.to_bits(), &mut slow);
            }
            assert_eq!(fast, slow, "{to}");
        }
    }

    fn cast(from: Dtype, to: Dtype, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for_each_chunk(from, to, data, |c| {
            out.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        for (f, want) in [
            (0x3f80_8000u32, 0x3f80u16), // tie, even stays
            (0x3f81_8000, 0x3f82),       // tie, odd rounds up
            (0x3f80_8001, 0x3f81),
            (0x7f7f_ffff, 0x7f80), // overflow to infinity
            (0x0001_8000, 0x0002), // subnormal tie rounds to even
            (0x8001_2345, 0x8001),
            (0xffc0_0000, 0x7fc0), // NaN, sign dropped as c10 does
        ] {
            assert_eq!(f32_to_bf16_bits(f), want, "{f:08x}");
        }
    }

    #[test]
    fn f16_rounds_to_nearest_even_with_subnormals() {
        for (f, want) in [
            (0x3f80_0000u32, 0x3c00u16),
            (0x3f80_1000, 0x3c00), // tie, even stays
            (0x3f80_3000, 0x3c02), // tie, odd rounds up
            (0x477f_f000, 0x7c00), // 65520 rounds to infinity
            (0x477f_efff, 0x7bff),
            (0x3300_0000, 0x0000), // 2^-25: tie between 0 and 2^-24
            (0x3300_0001, 0x0001),
            (0x387f_c000, 0x03ff),
            (0x3880_0000, 0x0400), // smallest normal
            (0x0000_0001, 0x0000),
            (0x8000_0000, 0x8000),
            (0x7f80_0001, 0x7e00), // signalling NaN is quieted
            (0xffa0_0001, 0xff00),
            (0x7fff_ffff, 0x7fff),
        ] {
            assert_eq!(f32_to_f16_bits(f), want, "{f:08x}");
        }
    }

    #[test]
    fn f16_widens_exactly() {
        for h in 0..=u16::MAX {
            let wide = f16_to_f32_bits(h);
            if (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0 {
                assert!(f32::from_bits(wide).is_nan());
            } else {
                assert_eq!(f32_to_f16_bits(wide), h, "{h:04x} -> {wide:08x}");
            }
        }
    }

    #[test]
    fn doubles_are_rounded_twice_like_torch() {
        let x = 1.0 + 2f64.powi(-8) + 2f64.powi(-30);
        let bf16 = cast(Dtype::F64, Dtype::BF16, &x.to_le_bytes());
        assert_eq!(bf16, 0x3f80u16.to_le_bytes());
        let y = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        let half = cast(Dtype::F64, Dtype::F16, &y.to_le_bytes());
        assert_eq!(half, 0x3c00u16.to_le_bytes());
        let nan = cast(
            Dtype::F64,
            Dtype::F32,
            &0x7ff0_1234_5678_9abcu64.to_le_bytes(),
        );
        assert_eq!(nan, 0x7fc0_91a2u32.to_le_bytes());
    }

    #[test]
    fn only_floats_are_cast() {
        assert_eq!(output_dtype(Dtype::F64, Some(Dtype::BF16)), Dtype::BF16);
        assert_eq!(output_dtype(Dtype::I64, Some(Dtype::BF16)), Dtype::I64);
        assert_eq!(
            output_dtype(Dtype::F8_E4M3, Some(Dtype::F16)),
            Dtype::F8_E4M3
        );
        assert_eq!(output_dtype(Dtype::F32, None), Dtype::F32);
        assert!(check_target(Dtype::F64).is_err());
    }
}
