//! Exact conversion of every numeric dtype to `f64`.
//!
//! All floats of 16 bits or fewer, and every integer up to 32 bits, are
//! exactly representable in `f64`, so decoding loses nothing; 64-bit
//! integers beyond 2^53 are rounded to the nearest `f64`.
//!
//! Semantics follow the OCP 8-bit and MX specifications as PyTorch
//! implements them:
//! - `F8_E4M3` (`float8_e4m3fn`): bias 7, no infinities, `S.1111.111` is NaN.
//! - `F8_E5M2`: IEEE-like, bias 15, with infinities and NaNs.
//! - `F8_E4M3FNUZ` / `F8_E5M2FNUZ`: bias 8 / 16, no infinities, no negative
//!   zero; the pattern `0x80` is the only NaN.
//! - `F8_E8M0` (`float8_e8m0fnu`): `2^(e-127)`, `0xFF` is NaN, no sign, no zero.
//! - `F6_E2M3`, `F6_E3M2`, `F4` (E2M1): bias 1 / 3 / 1, all finite.
//!
//! Packing of sub-byte dtypes (the format does not say; this is the
//! convention of PyTorch's `float4_e2m1fn_x2` and NVIDIA's kernels): `F4`
//! holds element `2i` in the low nibble of byte `i` and element `2i+1` in
//! the high nibble. `F6` reads each 3 bytes as a little-endian 24-bit word
//! holding 4 elements, element `k` in bits `6k..6k+6`.
//!
//! `C64` decodes to two values per element, real part first; `BOOL` to 0 or 1.

use std::sync::OnceLock;

use crate::format::Dtype;

/// Smallest number of bytes holding a whole number of elements: tensor
/// chunks passed to [`decode_into`] must be multiples of it.
pub fn granule_bytes(dtype: Dtype) -> usize {
    match dtype.bits() {
        4 => 1,
        6 => 3,
        bits => bits / 8,
    }
}

/// How many `f64` values one element decodes to (2 for `C64`, else 1).
pub fn values_per_element(dtype: Dtype) -> usize {
    if dtype == Dtype::C64 {
        2
    } else {
        1
    }
}

/// Clears `out` and fills it with the values encoded in `bytes`, which must
/// be a multiple of [`granule_bytes`] long (a trailing partial element is
/// ignored).
pub fn decode_into(dtype: Dtype, bytes: &[u8], out: &mut Vec<f64>) {
    out.clear();
    macro_rules! le {
        ($ty:ty, $n:expr) => {
            out.extend(
                bytes
                    .chunks_exact($n)
                    .map(|c| <$ty>::from_le_bytes(c.try_into().unwrap_or([0; $n])) as f64),
            )
        };
    }
    match dtype {
        Dtype::BOOL => out.extend(bytes.iter().map(|&b| f64::from(u8::from(b != 0)))),
        Dtype::U8 => out.extend(bytes.iter().map(|&b| f64::from(b))),
        Dtype::I8 => out.extend(bytes.iter().map(|&b| f64::from(b as i8))),
        Dtype::I16 => le!(i16, 2),
        Dtype::U16 => le!(u16, 2),
        Dtype::I32 => le!(i32, 4),
        Dtype::U32 => le!(u32, 4),
        Dtype::I64 => le!(i64, 8),
        Dtype::U64 => le!(u64, 8),
        Dtype::F32 | Dtype::C64 => le!(f32, 4),
        Dtype::F64 => le!(f64, 8),
        Dtype::BF16 => out.extend(bytes.chunks_exact(2).map(|c| {
            f64::from(f32::from_bits(
                u32::from(u16::from_le_bytes([c[0], c[1]])) << 16,
            ))
        })),
        Dtype::F16 => {
            let table = f16_table();
            out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| table[usize::from(u16::from_le_bytes([c[0], c[1]]))]),
            )
        }
        Dtype::F4 => {
            let table = small_table(Dtype::F4);
            out.extend(
                bytes
                    .iter()
                    .flat_map(|&b| [table[usize::from(b & 0x0f)], table[usize::from(b >> 4)]]),
            )
        }
        Dtype::F6_E2M3 | Dtype::F6_E3M2 => {
            let table = small_table(dtype);
            for c in bytes.chunks_exact(3) {
                let word = u32::from(c[0]) | u32::from(c[1]) << 8 | u32::from(c[2]) << 16;
                out.extend((0..4).map(|k| table[((word >> (6 * k)) & 0x3f) as usize]));
            }
        }
        _ => {
            let table = small_table(dtype);
            out.extend(bytes.iter().map(|&b| table[usize::from(b)]));
        }
    }
}

/// Decodes one element given as its bit pattern (in the low bits of
/// `bits`). Panics never; returns NaN for dtypes wider than 16 bits.
pub fn decode_minifloat(dtype: Dtype, bits: u32) -> f64 {
    match dtype {
        Dtype::F16 => minifloat(bits, 5, 10, 15, Special::Ieee),
        Dtype::BF16 => f64::from(f32::from_bits(bits << 16)),
        Dtype::F8_E5M2 => minifloat(bits, 5, 2, 15, Special::Ieee),
        Dtype::F8_E4M3 => minifloat(bits, 4, 3, 7, Special::Fn),
        Dtype::F8_E4M3FNUZ => minifloat(bits, 4, 3, 8, Special::Fnuz),
        Dtype::F8_E5M2FNUZ => minifloat(bits, 5, 2, 16, Special::Fnuz),
        Dtype::F8_E8M0 => {
            if bits & 0xff == 0xff {
                f64::NAN
            } else {
                (f64::from(bits & 0xff) - 127.0).exp2()
            }
        }
        Dtype::F6_E2M3 => minifloat(bits, 2, 3, 1, Special::None),
        Dtype::F6_E3M2 => minifloat(bits, 3, 2, 3, Special::None),
        Dtype::F4 => minifloat(bits, 2, 1, 1, Special::None),
        Dtype::U8 => f64::from(bits & 0xff),
        Dtype::I8 => f64::from((bits & 0xff) as u8 as i8),
        Dtype::BOOL => f64::from(u8::from(bits & 0xff != 0)),
        _ => f64::NAN,
    }
}

/// Which bit patterns encode non-finite values.
#[derive(Clone, Copy)]
enum Special {
    /// All-ones exponent: infinity with a zero mantissa, else NaN.
    Ieee,
    /// Only the all-ones exponent and mantissa is NaN (`e4m3fn`).
    Fn,
    /// Only a set sign bit with everything else zero is NaN.
    Fnuz,
    /// Every pattern is a finite number.
    None,
}

fn minifloat(bits: u32, exp_bits: u32, man_bits: u32, bias: i32, special: Special) -> f64 {
    let sign_shift = exp_bits + man_bits;
    let sign = (bits >> sign_shift) & 1;
    let exp = (bits >> man_bits) & ((1 << exp_bits) - 1);
    let man = bits & ((1 << man_bits) - 1);
    let exp_max = (1 << exp_bits) - 1;
    let negative = sign == 1;
    match special {
        Special::Ieee if exp == exp_max => {
            return match (man, negative) {
                (0, false) => f64::INFINITY,
                (0, true) => f64::NEG_INFINITY,
                _ => f64::NAN,
            }
        }
        Special::Fn if exp == exp_max && man == (1 << man_bits) - 1 => return f64::NAN,
        Special::Fnuz if negative && exp == 0 && man == 0 => return f64::NAN,
        _ => {}
    }
    let fraction = f64::from(man) / f64::from(1u32 << man_bits);
    let magnitude = if exp == 0 {
        fraction * f64::from(1 - bias).exp2()
    } else {
        (1.0 + fraction) * (f64::from(exp as i32 - bias)).exp2()
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

fn f16_table() -> &'static [f64] {
    static TABLE: OnceLock<Vec<f64>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|b| decode_minifloat(Dtype::F16, u32::from(b)))
            .collect()
    })
}

/// A 256-entry table for the 8-bit and sub-byte dtypes (sub-byte dtypes use
/// only the first 16 or 64 entries).
fn small_table(dtype: Dtype) -> &'static [f64; 256] {
    const N: usize = 11;
    static TABLES: [OnceLock<[f64; 256]>; N] = [const { OnceLock::new() }; N];
    let slot = match dtype {
        Dtype::F8_E5M2 => 0,
        Dtype::F8_E4M3 => 1,
        Dtype::F8_E4M3FNUZ => 2,
        Dtype::F8_E5M2FNUZ => 3,
        Dtype::F8_E8M0 => 4,
        Dtype::F6_E2M3 => 5,
        Dtype::F6_E3M2 => 6,
        Dtype::F4 => 7,
        Dtype::U8 => 8,
        Dtype::I8 => 9,
        _ => 10,
    };
    TABLES[slot].get_or_init(|| std::array::from_fn(|b| decode_minifloat(dtype, b as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(dtype: Dtype, byte: u8) -> f64 {
        let mut out = Vec::new();
        decode_into(dtype, &[byte], &mut out);
        out[0]
    }

    #[test]
    fn fp8_special_values() {
        assert_eq!(one(Dtype::F8_E4M3, 0x7e), 448.0);
        assert!(one(Dtype::F8_E4M3, 0x7f).is_nan());
        assert!(one(Dtype::F8_E4M3, 0xff).is_nan());
        assert_eq!(one(Dtype::F8_E4M3, 0x01), 2f64.powi(-9));
        assert_eq!(one(Dtype::F8_E5M2, 0x7c), f64::INFINITY);
        assert_eq!(one(Dtype::F8_E5M2, 0xfc), f64::NEG_INFINITY);
        assert_eq!(one(Dtype::F8_E5M2, 0x7b), 57344.0);
        assert!(one(Dtype::F8_E4M3FNUZ, 0x80).is_nan());
        assert_eq!(one(Dtype::F8_E4M3FNUZ, 0x7f), 240.0);
        assert_eq!(one(Dtype::F8_E5M2FNUZ, 0x7f), 57344.0);
        assert_eq!(one(Dtype::F8_E8M0, 127), 1.0);
        assert_eq!(one(Dtype::F8_E8M0, 0), 2f64.powi(-127));
        assert!(one(Dtype::F8_E8M0, 0xff).is_nan());
    }

    #[test]
    fn sub_byte_packing() {
        let mut out = Vec::new();
        // Low nibble first: 0x1 = 0.5, 0x7 = 6.0, 0xF = -6.0.
        decode_into(Dtype::F4, &[0x71, 0x0f], &mut out);
        assert_eq!(out, [0.5, 6.0, -6.0, 0.0]);
        // Four E2M3 values 1.0 (0b001000), 7.5 (0b011111), -0.125 (0b100001), 0.
        let word: u32 = 0b001000 | 0b011111 << 6 | 0b100001 << 12;
        decode_into(Dtype::F6_E2M3, &word.to_le_bytes()[..3], &mut out);
        assert_eq!(out, [1.0, 7.5, -0.125, 0.0]);
        assert_eq!(decode_minifloat(Dtype::F6_E3M2, 0b011111), 28.0);
    }

    #[test]
    fn wide_dtypes() {
        let mut out = Vec::new();
        decode_into(Dtype::F16, &0x7bffu16.to_le_bytes(), &mut out);
        assert_eq!(out, [65504.0]);
        decode_into(Dtype::F16, &0x0001u16.to_le_bytes(), &mut out);
        assert_eq!(out, [2f64.powi(-24)]);
        decode_into(Dtype::BF16, &0x3f80u16.to_le_bytes(), &mut out);
        assert_eq!(out, [1.0]);
        decode_into(Dtype::I64, &(-5i64).to_le_bytes(), &mut out);
        assert_eq!(out, [-5.0]);
        let c: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        decode_into(Dtype::C64, &c, &mut out);
        assert_eq!(out, [1.5, -2.0]);
    }
}
