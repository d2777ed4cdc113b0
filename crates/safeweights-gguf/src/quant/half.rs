//! Half-precision conversions, bit for bit as numpy does them (the
//! reference `gguf.quants` computes with numpy). [`f32_to_f16_with`] is
//! the workspace's one f32 to half rounding: the safetensors casts use it
//! too, with torch's NaN rule.
#![forbid(unsafe_code)]

/// IEEE half to single, exactly (numpy's `npy_halfbits_to_floatbits`):
/// NaN payloads are shifted over, never quieted.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = h & 0x7c00;
    let man = u32::from(h & 0x03ff);
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalise the significand.
            let shift = man.leading_zeros() - 21;
            let man = (man << shift) & 0x03ff;
            sign | ((113 - shift) << 23) | (man << 13)
        }
        0x7c00 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | ((u32::from(h & 0x7fff) + 0x1_c000) << 13),
    };
    f32::from_bits(bits)
}

/// What a NaN becomes in [`f32_to_f16_with`]: the two conventions differ
/// only there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfNan {
    /// numpy's `astype(np.float16)` (and so `gguf.quants`): the top ten
    /// payload bits as they are, signalling NaN included, made `0x7c01`
    /// where they are all zero so that the result stays a NaN.
    Numpy,
    /// The F16C instruction torch's `.half()` uses: quieted (`0x0200` set),
    /// the top payload bits kept.
    Quiet,
}

/// Single to IEEE half as numpy's `astype(np.float16)` rounds:
/// [`f32_to_f16_with`] and [`HalfNan::Numpy`].
#[inline(always)]
pub fn f32_to_f16(x: f32) -> u16 {
    f32_to_f16_with(x, HalfNan::Numpy)
}

/// Single to IEEE half, rounding to nearest even; overflow gives
/// infinity, subnormals are kept, NaN stays NaN as `nan` says.
///
/// Branch-free, so that loops over it vectorise: every case is computed
/// and the right one selected.
#[inline(always)]
pub fn f32_to_f16_with(x: f32, nan: HalfNan) -> u16 {
    let bits = x.to_bits();
    let sign = (bits >> 16) & 0x8000;
    let abs = bits & 0x7fff_ffff;
    // A normal half (or one that rounds up to infinity): rebias the
    // exponent and round the 13 dropped bits to nearest even in one
    // addition, whose carry may bump the exponent.
    let normal = (abs + 0x0fff + ((abs >> 13) & 1)).wrapping_sub(0x3800_0000) >> 13;
    // A subnormal half or zero: adding 0.5 lines the half's significand up
    // with the bottom of the f32's, and the addition rounds to nearest even
    // (the sum is normal, so flush-to-zero modes cannot touch it; inputs
    // that such modes treat as zero round to zero here anyway).
    let subnormal = (f32::from_bits(abs) + 0.5)
        .to_bits()
        .wrapping_sub(0x3f00_0000);
    let payload = (abs >> 13) & 0x03ff;
    let nan = match nan {
        HalfNan::Numpy => 0x7c00 | payload | u32::from(payload == 0),
        HalfNan::Quiet => 0x7e00 | payload,
    };
    let half = if abs < 0x3880_0000 {
        subnormal
    } else if abs < 0x4780_0000 {
        normal
    } else if abs > 0x7f80_0000 {
        nan
    } else {
        0x7c00
    };
    (sign | half) as u16
}

/// [`f32_to_f16`] by the textbook rule, one case at a time: the reference
/// the tests hold the branch-free version to.
#[cfg(test)]
fn f32_to_f16_slow(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let man = bits & 0x007f_ffff;
    if exp == 0xff {
        // numpy keeps the payload's top bits as they are, and a NaN whose
        // top bits are all zero becomes 0x7c01.
        let payload = match (man, man >> 13) {
            (0, _) => 0,
            (_, 0) => 1,
            (_, top) => top as u16,
        };
        return sign | 0x7c00 | payload;
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = man | 0x0080_0000;
        let shift = (14 - e) as u32;
        return sign | round_shift(m, shift) as u16;
    }
    // A carry out of the significand rounds up into the exponent, and from
    // the largest finite value into infinity, as it should.
    let h = ((e as u32) << 10) | (man >> 13);
    sign | round_even(h, man & 0x1fff, 0x1000) as u16
}

#[cfg(test)]
fn round_shift(m: u32, shift: u32) -> u32 {
    let kept = m >> shift;
    let rest = m & ((1 << shift) - 1);
    round_even(kept, rest, 1 << (shift - 1))
}

#[cfg(test)]
fn round_even(kept: u32, rest: u32, halfway: u32) -> u32 {
    if rest > halfway || (rest == halfway && kept & 1 == 1) {
        kept + 1
    } else {
        kept
    }
}

/// Brain float to single: the top half of the bits.
pub(crate) fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// Single to brain float as ggml's `ggml_compute_fp32_to_bf16` (and
/// `gguf.quants`): NaN forced quiet, otherwise round to nearest even.
pub(crate) fn f32_to_bf16(x: f32) -> u16 {
    let n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        return ((n >> 16) | 64) as u16;
    }
    ((u64::from(n) + 0x7fff + u64::from((n >> 16) & 1)) >> 16) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_half_survives_the_round_trip_nan_payloads_too() {
        for h in 0..=u16::MAX {
            assert_eq!(f32_to_f16(f16_to_f32(h)), h, "{h:#06x}");
        }
    }

    #[test]
    fn the_branch_free_rounding_agrees_with_the_textbook_rule() {
        let edges = [
            0x3880_0000u32,
            0x387f_ffff,
            0x477f_efff,
            0x477f_f000,
            0x477f_ffff,
            0x3300_0000,
            0x3300_0001,
            0x7f80_0000,
            0x7f80_0001,
            0x7f80_2000,
            0x7fc0_0000,
            0x7fff_ffff,
        ];
        let sweep = (0..=u32::MAX).step_by(997).chain(edges);
        for bits in sweep.flat_map(|b| [b, b | 0x8000_0000]) {
            let x = f32::from_bits(bits);
            assert_eq!(f32_to_f16(x), f32_to_f16_slow(x), "{bits:#010x}");
        }
    }

    #[test]
    fn halves_round_to_nearest_even() {
        assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00); // tie, even kept
        assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02); // tie, rounds up
        assert_eq!(f32_to_f16(65520.0), 0x7c00); // rounds to infinity
        assert_eq!(f32_to_f16(2f32.powi(-25)), 0); // tie to zero
        assert_eq!(f32_to_f16(3.0 * 2f32.powi(-26)), 1);
        assert_eq!(f32_to_f16(-0.0), 0x8000);
    }

    #[test]
    fn brain_floats_round_and_keep_nan_quiet() {
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
    }
}
