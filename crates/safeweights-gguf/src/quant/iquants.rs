//! The lattice ("IQ") types whose values come from ggml's grids: IQ2_XXS,
//! IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M, decoded exactly as
//! `gguf.quants` does.
//!
//! The grids are ggml's (`ggml-common.h`), in the packed hexadecimal form
//! `gguf.quants` carries them in (each grid byte stored as an index into a
//! short list of values), decoded once on first use.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use super::legacy::f16_at;

/// One grid: `rows` rows of `width` values.
struct Grid {
    width: usize,
    values: Vec<f32>,
}

impl Grid {
    /// Decodes `gguf.quants`' packed hex: each pair of hex digits is a
    /// byte holding `8 / bits` indices into `map`, lowest bits first.
    fn decode(hex: &[u8], map: &[i8], width: usize) -> Grid {
        let bits = usize::BITS - (map.len() - 1).leading_zeros();
        let per_byte = 8 / bits;
        let digit = |c: u8| (if c > 0x40 { c + 9 } else { c }) & 0x0f;
        let mut values = Vec::with_capacity(hex.len() / 2 * per_byte as usize);
        for pair in hex.chunks_exact(2) {
            let byte = (digit(pair[0]) << 4) | digit(pair[1]);
            for k in 0..per_byte {
                let index = (byte >> (k * (8 / per_byte))) & ((1 << bits) - 1);
                values.push(f32::from(map[usize::from(index)]));
            }
        }
        Grid { width, values }
    }

    fn row(&self, index: usize) -> &[f32] {
        &self.values[index * self.width..(index + 1) * self.width]
    }
}

const LATTICE_2BIT: [i8; 3] = [0x08, 0x19, 0x2b];

fn grid(which: usize) -> &'static Grid {
    static GRIDS: [OnceLock<Grid>; 6] = [const { OnceLock::new() }; 6];
    GRIDS[which].get_or_init(|| match which {
        0 => Grid::decode(include_bytes!("grids/iq2xxs.hex"), &LATTICE_2BIT, 8),
        1 => Grid::decode(include_bytes!("grids/iq2xs.hex"), &LATTICE_2BIT, 8),
        2 => Grid::decode(include_bytes!("grids/iq2s.hex"), &LATTICE_2BIT, 8),
        3 => Grid::decode(
            include_bytes!("grids/iq3xxs.hex"),
            &[0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3e],
            4,
        ),
        4 => Grid::decode(
            include_bytes!("grids/iq3s.hex"),
            &[0x01, 0x03, 0x05, 0x07, 0x09, 0x0b, 0x0d, 0x0f],
            4,
        ),
        _ => Grid::decode(include_bytes!("grids/iq1s.hex"), &[-1, 0, 1], 8),
    })
}

/// ggml's `ksigns_iq2xs`: 128 sign patterns of even parity.
fn ksigns() -> &'static [u8; 128] {
    static SIGNS: OnceLock<[u8; 128]> = OnceLock::new();
    SIGNS.get_or_init(|| {
        let hex = include_bytes!("grids/ksigns.hex");
        let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        let mut out = [0u8; 128];
        for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
            *o = (digit(pair[0]) << 4) | digit(pair[1]);
        }
        out
    })
}

fn sign(bits: u8, i: usize) -> f32 {
    if (bits >> i) & 1 == 0 {
        1.0
    } else {
        -1.0
    }
}

fn u32_at(block: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

fn u16_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

pub(super) fn iq2_xxs(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let grid = grid(0);
    for ib in 0..8 {
        let (aux0, aux1) = (&block[2 + 8 * ib..6 + 8 * ib], u32_at(block, 6 + 8 * ib));
        let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
        for l in 0..4 {
            let signs = ksigns()[((aux1 >> (7 * l)) & 0x7f) as usize];
            let row = grid.row(usize::from(aux0[l]));
            for i in 0..8 {
                out[ib * 32 + l * 8 + i] = db * row[i] * sign(signs, i);
            }
        }
    }
}

/// The sixteen 4-bit scales of IQ2_XS and IQ2_S, as `d * (0.5 + s) / 4`.
fn iq2_scales(d: f32, packed: &[u8]) -> [f32; 16] {
    std::array::from_fn(|i| {
        let s = (packed[i / 2] >> (4 * (i % 2))) & 0x0f;
        d * (0.5 + f32::from(s)) * 0.25
    })
}

pub(super) fn iq2_xs(block: &[u8], out: &mut [f32]) {
    let db = iq2_scales(f16_at(block, 0), &block[66..74]);
    let grid = grid(1);
    for t in 0..32 {
        let q = u16_at(block, 2 + 2 * t);
        let signs = ksigns()[usize::from(q >> 9)];
        let row = grid.row(usize::from(q & 511));
        for i in 0..8 {
            out[t * 8 + i] = db[t / 2] * row[i] * sign(signs, i);
        }
    }
}

pub(super) fn iq2_s(block: &[u8], out: &mut [f32]) {
    let (qs, signs, qh) = (&block[2..34], &block[34..66], &block[66..74]);
    let db = iq2_scales(f16_at(block, 0), &block[74..82]);
    let grid = grid(2);
    for t in 0..32 {
        let high = u16::from((qh[t / 4] >> (2 * (t % 4))) & 0x03);
        let row = grid.row(usize::from(u16::from(qs[t]) | (high << 8)));
        for i in 0..8 {
            out[t * 8 + i] = db[t / 2] * row[i] * sign(signs[t], i);
        }
    }
}

pub(super) fn iq3_xxs(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let (qs, grid) = (&block[2..66], grid(3));
    for ib in 0..8 {
        let aux = u32_at(block, 66 + 4 * ib);
        let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
        for l in 0..4 {
            let signs = ksigns()[((aux >> (7 * l)) & 0x7f) as usize];
            for i in 0..8 {
                let row = grid.row(usize::from(qs[ib * 8 + 2 * l + i / 4]));
                out[ib * 32 + l * 8 + i] = db * row[i % 4] * sign(signs, i);
            }
        }
    }
}

pub(super) fn iq3_s(block: &[u8], out: &mut [f32]) {
    let (qs, qh, signs, scales) = (
        &block[2..66],
        &block[66..74],
        &block[74..106],
        &block[106..110],
    );
    let d = f16_at(block, 0);
    let grid = grid(4);
    for (e, o) in out.iter_mut().enumerate() {
        let ib = e / 32;
        let s = (scales[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        let db = d * f32::from(1 + 2 * s);
        let t = e / 4;
        let high = u16::from((qh[t / 8] >> (t % 8)) & 1);
        let row = grid.row(usize::from(u16::from(qs[t]) | (high << 8)));
        *o = db * row[e % 4] * sign(signs[e / 8], e % 8);
    }
}

const IQ1_DELTA: f32 = 0.125;

pub(super) fn iq1_s(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let (qs, grid) = (&block[2..34], grid(5));
    for ib in 0..8 {
        let qh = u16_at(block, 34 + 2 * ib);
        let dl = d * f32::from(2 * ((qh >> 12) & 7) + 1);
        let delta = if qh & 0x8000 == 0 {
            IQ1_DELTA
        } else {
            -IQ1_DELTA
        };
        for l in 0..4 {
            let index = u16::from(qs[ib * 4 + l]) | (((qh >> (3 * l)) & 7) << 8);
            let row = grid.row(usize::from(index));
            for i in 0..8 {
                out[ib * 32 + l * 8 + i] = dl * (row[i] + delta);
            }
        }
    }
}

/// IQ1_M, the one type whose half-float scale is split over several bytes.
pub(super) fn iq1_m(block: &[u8], out: &mut [f32]) {
    let (qs, qh) = (&block[..32], &block[32..48]);
    let packed: [u16; 4] = std::array::from_fn(|i| u16_at(block, 48 + 2 * i));
    let d_bits = ((packed[0] & 0xf000) >> 12)
        | ((packed[1] & 0xf000) >> 8)
        | ((packed[2] & 0xf000) >> 4)
        | (packed[3] & 0xf000);
    let d = super::half::f16_to_f32(d_bits);
    let grid = grid(5);
    for t in 0..32 {
        let s = (packed[t / 8] >> (3 * ((t / 2) % 4))) & 0x07;
        let dl = d * f32::from(2 * s + 1);
        let nibble = (qh[t / 2] >> (4 * (t % 2))) & 0x0f;
        let row = grid.row(usize::from(
            u16::from(qs[t]) | (u16::from(nibble & 0x07) << 8),
        ));
        let delta = if nibble & 0x08 == 0 {
            IQ1_DELTA
        } else {
            -IQ1_DELTA
        };
        for i in 0..8 {
            out[t * 8 + i] = dl * (row[i] + delta);
        }
    }
}
