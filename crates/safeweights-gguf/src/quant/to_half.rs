//! Dequantization straight to IEEE half, for F16 output without an f32
//! tensor in between.
//!
//! Each value is the f32 that [`super::dequantize`] computes, rounded as
//! numpy's `astype(np.float16)`, so the result equals
//! `gguf.quants.dequantize(...).astype(np.float16)` bit for bit. The block
//! types of 32 whose values are one of 16 or 32 levels per block (Q4_0,
//! Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4) round each level once, into a small
//! table, and then only look values up; Q8_0 rounds each value; the other
//! types decode a block to f32 on the stack and round it.
#![forbid(unsafe_code)]

use super::half::f32_to_f16;
use super::legacy::{e8m0_half, f16_at, five_bit, IQ4NL_LEVELS, MXFP4_LEVELS};
use super::BlockFn;

/// Decodes one block to halves, little-endian.
pub(super) type HalfBlockFn = fn(&[u8], &mut [u8]);

/// Writes one half, little-endian, at value index `i` of `out`.
fn put(out: &mut [u8], i: usize, h: u16) {
    out[2 * i..2 * i + 2].copy_from_slice(&h.to_le_bytes());
}

/// Values `j` and `j + 16` are the low and high nibbles of byte `j`.
fn nibbles(qs: &[u8], levels: &[u16; 16], out: &mut [u8]) {
    let (low, high) = out.split_at_mut(32);
    for (j, &q) in qs[..16].iter().enumerate() {
        put(low, j, levels[usize::from(q & 0x0f)]);
        put(high, j, levels[usize::from(q >> 4)]);
    }
}

fn table16(level: impl Fn(u8) -> f32) -> [u16; 16] {
    std::array::from_fn(|q| f32_to_f16(level(q as u8)))
}

fn q4_0(block: &[u8], out: &mut [u8]) {
    let d = f16_at(block, 0);
    nibbles(&block[2..], &table16(|q| d * f32::from(q as i8 - 8)), out);
}

fn q4_1(block: &[u8], out: &mut [u8]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    nibbles(&block[4..], &table16(|q| d * f32::from(q) + m), out);
}

fn iq4_nl(block: &[u8], out: &mut [u8]) {
    let d = f16_at(block, 0);
    let levels = table16(|q| d * f32::from(IQ4NL_LEVELS[usize::from(q)]));
    nibbles(&block[2..], &levels, out);
}

fn mxfp4(block: &[u8], out: &mut [u8]) {
    let d = e8m0_half(block[0]);
    let levels = table16(|q| d * f32::from(MXFP4_LEVELS[usize::from(q)]));
    nibbles(&block[1..], &levels, out);
}

fn five_bits(qh_at: usize, block: &[u8], out: &mut [u8], level: impl Fn(u8) -> f32) {
    let levels: [u16; 32] = std::array::from_fn(|q| f32_to_f16(level(q as u8)));
    let b = &block[qh_at..qh_at + 4];
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for i in 0..32 {
        let q = five_bit(qh, &block[qh_at + 4..], i);
        put(out, i, levels[usize::from(q)]);
    }
}

fn q5_0(block: &[u8], out: &mut [u8]) {
    let d = f16_at(block, 0);
    five_bits(2, block, out, |q| d * f32::from(q as i8 - 16));
}

fn q5_1(block: &[u8], out: &mut [u8]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    five_bits(4, block, out, |q| d * f32::from(q) + m);
}

fn q8_0(block: &[u8], out: &mut [u8]) {
    let d = f16_at(block, 0);
    for (o, &q) in out.chunks_exact_mut(2).zip(&block[2..34]) {
        o.copy_from_slice(&f32_to_f16(f32::from(q as i8) * d).to_le_bytes());
    }
}

/// The direct decoder of `ty`, where it has one.
pub(super) fn direct(ty: crate::GgmlType) -> Option<HalfBlockFn> {
    use crate::GgmlType as T;
    Some(match ty {
        T::Q4_0 => q4_0,
        T::Q4_1 => q4_1,
        T::Q5_0 => q5_0,
        T::Q5_1 => q5_1,
        T::Q8_0 => q8_0,
        T::Iq4Nl => iq4_nl,
        T::Mxfp4 => mxfp4,
        _ => return None,
    })
}

/// Decodes one block with the f32 decoder `decode` into a stack buffer
/// (every block type has at most 256 values) and rounds it.
pub(super) fn via_f32(decode: BlockFn, block: &[u8], out: &mut [u8]) {
    let mut stack = [0f32; 256];
    let mut heap = Vec::new();
    let values = match stack.get_mut(..out.len() / 2) {
        Some(values) => values,
        None => {
            heap.resize(out.len() / 2, 0f32);
            &mut heap[..]
        }
    };
    decode(block, values);
    for (i, &v) in values.iter().enumerate() {
        put(out, i, f32_to_f16(v));
    }
}
