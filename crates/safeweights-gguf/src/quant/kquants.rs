//! Super-blocks of 256: the K-quants (Q2_K to Q6_K), IQ4_XS and the
//! ternary TQ1_0 and TQ2_0, decoded exactly as `gguf.quants` does.
#![forbid(unsafe_code)]

use super::legacy::{f16_at, IQ4NL_LEVELS};

pub(super) fn q2_k(block: &[u8], out: &mut [f32]) {
    let (scales, qs) = (&block[..16], &block[16..80]);
    let (d, dmin) = (f16_at(block, 80), f16_at(block, 82));
    for (e, o) in out.iter_mut().enumerate() {
        let (g, s, j) = (e / 128, (e / 32) % 4, e % 32);
        let q = f32::from((qs[g * 32 + j] >> (2 * s)) & 3);
        let sc = scales[e / 16];
        let dl = d * f32::from(sc & 0x0f);
        let ml = dmin * f32::from(sc >> 4);
        *o = dl * q - ml;
    }
}

pub(super) fn q3_k(block: &[u8], out: &mut [f32]) {
    let (hmask, qs, packed) = (&block[..32], &block[32..96], &block[96..108]);
    let d = f16_at(block, 108);
    let mut dl = [0f32; 16];
    for (s, slot) in dl.iter_mut().enumerate() {
        let low = (packed[s % 8] >> (4 * (s / 8))) & 0x0f;
        let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 0x03;
        *slot = d * f32::from((low | (high << 4)) as i8 - 32);
    }
    for (e, o) in out.iter_mut().enumerate() {
        let (g, k, j) = (e / 128, (e / 32) % 4, e % 32);
        let low = ((qs[g * 32 + j] >> (2 * k)) & 3) as i8;
        // The offset of 4 applies when the mask bit is clear.
        let high = ((hmask[j] >> (e / 32)) & 1) ^ 1;
        *o = dl[e / 16] * f32::from(low - ((high << 2) as i8));
    }
}

/// The eight 6-bit scales and minimums of Q4_K and Q5_K.
fn scale_min(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (d, m, md) = (&packed[..4], &packed[4..8], &packed[8..12]);
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for i in 0..4 {
        sc[i] = d[i] & 0x3f;
        sc[i + 4] = (md[i] & 0x0f) | ((d[i] >> 2) & 0x30);
        mn[i] = m[i] & 0x3f;
        mn[i + 4] = (md[i] >> 4) | ((m[i] >> 2) & 0x30);
    }
    (sc, mn)
}

fn k_scales(block: &[u8]) -> ([f32; 8], [f32; 8]) {
    let (d, dmin) = (f16_at(block, 0), f16_at(block, 2));
    let (sc, mn) = scale_min(&block[4..16]);
    (
        sc.map(|s| d * f32::from(s)),
        mn.map(|m| dmin * f32::from(m)),
    )
}

pub(super) fn q4_k(block: &[u8], out: &mut [f32]) {
    let (ds, dm) = k_scales(block);
    let qs = &block[16..144];
    for (e, o) in out.iter_mut().enumerate() {
        let (sb, j) = (e / 32, e % 32);
        let q = (qs[(sb / 2) * 32 + j] >> (4 * (sb % 2))) & 0x0f;
        *o = ds[sb] * f32::from(q) - dm[sb];
    }
}

pub(super) fn q5_k(block: &[u8], out: &mut [f32]) {
    let (ds, dm) = k_scales(block);
    let (qh, qs) = (&block[16..48], &block[48..176]);
    for (e, o) in out.iter_mut().enumerate() {
        let (sb, j) = (e / 32, e % 32);
        let low = (qs[(sb / 2) * 32 + j] >> (4 * (sb % 2))) & 0x0f;
        let high = (qh[j] >> sb) & 1;
        *o = ds[sb] * f32::from(low | (high << 4)) - dm[sb];
    }
}

pub(super) fn q6_k(block: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&block[..128], &block[128..192], &block[192..208]);
    let d = f16_at(block, 208);
    for (e, o) in out.iter_mut().enumerate() {
        let g = e / 128;
        let low = (ql[g * 64 + e % 64] >> (4 * ((e / 64) % 2))) & 0x0f;
        let high = (qh[g * 32 + e % 32] >> (2 * ((e / 32) % 4))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        *o = (d * f32::from(scales[e / 16] as i8)) * f32::from(q);
    }
}

pub(super) fn iq4_xs(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 0);
    let high_bits = u16::from_le_bytes([block[2], block[3]]);
    let (low_bits, qs) = (&block[4..8], &block[8..136]);
    for (e, o) in out.iter_mut().enumerate() {
        let ib = e / 32;
        let low = (low_bits[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        let high = ((high_bits >> (2 * ib)) as u8) & 0x03;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        let (k, j) = ((e % 32) / 16, e % 16);
        let q = (qs[ib * 16 + j] >> (4 * k)) & 0x0f;
        *o = dl * f32::from(IQ4NL_LEVELS[usize::from(q)]);
    }
}

/// TQ1_0 packs five base-3 digits per byte (four in the last bytes); a
/// digit is recovered by multiplying (wrapping, in 8 bits) and keeping the
/// top bits of `3 * byte`.
pub(super) fn tq1_0(block: &[u8], out: &mut [f32]) {
    const POWERS: [u8; 5] = [1, 3, 9, 27, 81];
    let (qs0, qs1, qh) = (&block[..32], &block[32..48], &block[48..52]);
    let d = f16_at(block, 52);
    let trit = |byte: u8, power: u8| (((u16::from(byte.wrapping_mul(power)) * 3) >> 8) as i8) - 1;
    for (e, o) in out.iter_mut().enumerate() {
        let q = match e {
            0..160 => trit(qs0[e % 32], POWERS[e / 32]),
            160..240 => trit(qs1[(e - 160) % 16], POWERS[(e - 160) / 16]),
            _ => trit(qh[(e - 240) % 4], POWERS[(e - 240) / 4]),
        };
        *o = d * f32::from(q);
    }
}

pub(super) fn tq2_0(block: &[u8], out: &mut [f32]) {
    let d = f16_at(block, 64);
    for (e, o) in out.iter_mut().enumerate() {
        let (g, k, j) = (e / 128, (e / 32) % 4, e % 32);
        let q = ((block[g * 32 + j] >> (2 * k)) & 3) as i8 - 1;
        *o = d * f32::from(q);
    }
}
