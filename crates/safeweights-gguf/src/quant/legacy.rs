//! Blocks of 32: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and MXFP4.
//!
//! Each function decodes one block into `out` exactly as `gguf.quants`
//! does: the same f32 operations in the same order (no fused multiply-add),
//! so results, NaN included, are bit-identical.
#![forbid(unsafe_code)]

use super::half::f16_to_f32;

pub(super) fn f16_at(block: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

/// The `i`-th 4-bit value of a 32-value block packed as ggml does: the low
/// nibbles hold values 0..16, the high nibbles 16..32.
fn nibble(qs: &[u8], i: usize) -> u8 {
    if i < 16 {
        qs[i] & 0x0f
    } else {
        qs[i - 16] >> 4
    }
}

/// Decodes 16 bytes of packed nibbles with `put`: value `j` is the low
/// nibble of byte `j`, value `j + 16` its high nibble.
fn split_nibbles(qs: &[u8], out: &mut [f32], mut put: impl FnMut(u8) -> f32) {
    let (low, high) = out.split_at_mut(16);
    for ((&q, l), h) in qs[..16].iter().zip(low).zip(high) {
        *l = put(q & 0x0f);
        *h = put(q >> 4);
    }
}

pub(super) fn q4_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    split_nibbles(&block[2..], out, |q| d * f32::from(q as i8 - 8));
}

pub(super) fn q4_1(block: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    split_nibbles(&block[4..], out, |q| d * f32::from(q) + m);
}

pub(super) fn five_bit(qh: u32, qs: &[u8], i: usize) -> u8 {
    nibble(qs, i) | ((((qh >> i) & 1) as u8) << 4)
}

pub(super) fn q5_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(five_bit(qh, &block[6..], i) as i8 - 16);
    }
}

pub(super) fn q5_1(block: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    for (i, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(five_bit(qh, &block[8..], i)) + m;
    }
}

pub(super) fn q8_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    for (o, &q) in out.iter_mut().zip(&block[2..]) {
        *o = f32::from(q as i8) * d;
    }
}

/// IQ4_NL's non-linear levels (ggml's `kvalues_iq4nl`).
pub(super) const IQ4NL_LEVELS: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

pub(super) fn iq4_nl(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    split_nibbles(&block[2..], out, |q| {
        d * f32::from(IQ4NL_LEVELS[usize::from(q)])
    });
}

/// E2M1 values, doubled (the scale below is halved to match).
pub(super) const MXFP4_LEVELS: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of an E8M0 scale, as ggml's `ggml_e8m0_to_fp32_half`.
pub(crate) fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

pub(super) fn mxfp4(block: &[u8], out: &mut [f32]) {
    let d = e8m0_half(block[0]);
    split_nibbles(&block[1..], out, |q| {
        d * f32::from(MXFP4_LEVELS[usize::from(q)])
    });
}
