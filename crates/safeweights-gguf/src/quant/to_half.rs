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
//!
//! The hot loops work on fixed-size arrays, so that they
//! carry no bounds checks and the compiler vectorises the scaling and the
//! branch-free rounding.
#![forbid(unsafe_code)]

use super::half::{f16_to_f32, f32_to_f16};
use super::legacy::{e8m0_half, IQ4NL_LEVELS, MXFP4_LEVELS};
use super::{arrays, arrays_mut, BlockFn};

/// Decodes whole blocks (`bytes`) to halves, little-endian (`out`, whose
/// length the caller has checked).
pub(super) type HalfBlocksFn = fn(&[u8], &mut [u8]);

/// The f16 at byte `at` of a block, widened.
fn scale<const N: usize>(block: &[u8; N], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]))
}

/// Runs `decode` over every `N`-byte block of `bytes`, each giving 32
/// halves, stored little-endian in `out`.
#[inline(always)]
fn blocks_of_32<const N: usize>(
    bytes: &[u8],
    out: &mut [u8],
    decode: impl Fn(&[u8; N], &mut [u16; 32]),
) {
    for (block, out) in arrays::<u8, N>(bytes).zip(arrays_mut::<u8, 64>(out)) {
        let mut halves = [0u16; 32];
        decode(block, &mut halves);
        for (pair, h) in arrays_mut::<u8, 2>(out).zip(halves) {
            *pair = h.to_le_bytes();
        }
    }
}

/// The 16 levels `level(0..16)`, rounded to half.
#[inline(always)]
fn table16(level: impl Fn(u8) -> f32) -> [u16; 16] {
    let values: [f32; 16] = std::array::from_fn(|q| level(q as u8));
    values.map(f32_to_f16)
}

/// Values `j` and `j + 16` are the low and high nibbles of byte `j`.
#[inline(always)]
fn nibbles(qs: &[u8], levels: &[u16; 16], out: &mut [u16; 32]) {
    let (low, high) = out.split_at_mut(16);
    for ((&q, l), h) in qs.iter().zip(low).zip(high) {
        *l = levels[usize::from(q & 0x0f)];
        *h = levels[usize::from(q >> 4)];
    }
}

fn q4_0(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<18>(bytes, out, |block, halves| {
        let d = scale(block, 0);
        nibbles(
            &block[2..],
            &table16(|q| d * f32::from(q as i8 - 8)),
            halves,
        );
    });
}

fn q4_1(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<20>(bytes, out, |block, halves| {
        let (d, m) = (scale(block, 0), scale(block, 2));
        nibbles(&block[4..], &table16(|q| d * f32::from(q) + m), halves);
    });
}

fn iq4_nl(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<18>(bytes, out, |block, halves| {
        let d = scale(block, 0);
        let levels = table16(|q| d * f32::from(IQ4NL_LEVELS[usize::from(q)]));
        nibbles(&block[2..], &levels, halves);
    });
}

fn mxfp4(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<17>(bytes, out, |block, halves| {
        let d = e8m0_half(block[0]);
        let levels = table16(|q| d * f32::from(MXFP4_LEVELS[usize::from(q)]));
        nibbles(&block[1..], &levels, halves);
    });
}

/// Q5_0 and Q5_1: the fifth bits (a little-endian `u32` at `qh_at`) over
/// the nibbles that follow them; 32 levels per block.
#[inline(always)]
fn five_bits<const N: usize>(
    qh_at: usize,
    block: &[u8; N],
    halves: &mut [u16; 32],
    level: impl Fn(u8) -> f32,
) {
    let values: [f32; 32] = std::array::from_fn(|q| level(q as u8));
    let levels = values.map(f32_to_f16);
    let b = &block[qh_at..qh_at + 4];
    let qh = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let qs = &block[qh_at + 4..qh_at + 20];
    let (low, high) = halves.split_at_mut(16);
    for (j, ((&q, l), h)) in qs.iter().zip(low).zip(high).enumerate() {
        let low_bit = ((qh >> j) & 1) as u8;
        let high_bit = ((qh >> (j + 16)) & 1) as u8;
        *l = levels[usize::from((q & 0x0f) | (low_bit << 4))];
        *h = levels[usize::from((q >> 4) | (high_bit << 4))];
    }
}

fn q5_0(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<22>(bytes, out, |block, halves| {
        let d = scale(block, 0);
        five_bits(2, block, halves, |q| d * f32::from(q as i8 - 16));
    });
}

fn q5_1(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<24>(bytes, out, |block, halves| {
        let (d, m) = (scale(block, 0), scale(block, 2));
        five_bits(4, block, halves, |q| d * f32::from(q) + m);
    });
}

fn q8_0(bytes: &[u8], out: &mut [u8]) {
    blocks_of_32::<34>(bytes, out, |block, halves| {
        let d = scale(block, 0);
        for (h, &q) in halves.iter_mut().zip(&block[2..]) {
            *h = f32_to_f16(f32::from(q as i8) * d);
        }
    });
}

/// The direct decoder of `ty`, where it has one.
pub(super) fn direct(ty: crate::GgmlType) -> Option<HalfBlocksFn> {
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
    for (pair, &v) in arrays_mut::<u8, 2>(out).zip(values.iter()) {
        *pair = f32_to_f16(v).to_le_bytes();
    }
}
