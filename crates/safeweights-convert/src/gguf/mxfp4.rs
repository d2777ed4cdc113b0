//! MXFP4 blocks (an E8M0 scale, then 32 E2M1 values as ggml packs them:
//! value `i < 16` in the low nibble of byte `i`, value `i + 16` in its high
//! nibble) to safetensors' own `F4` (two values a byte, the first in the
//! low nibble) plus `F8_E8M0` scales, and back. The 4-bit codes are the
//! same E2M1 codes, and ggml's halved scale times its doubled values is
//! the OCP value, so only the order of the nibbles changes.

const BLOCK: usize = 17;

/// The `F4` values (`scales == false`) or the `F8_E8M0` scales of MXFP4 blocks.
pub(crate) fn split(blocks: &[u8], scales: bool) -> Vec<u8> {
    if scales {
        return blocks.chunks_exact(BLOCK).map(|b| b[0]).collect();
    }
    let mut out = Vec::with_capacity(blocks.len() / BLOCK * 16);
    for block in blocks.chunks_exact(BLOCK) {
        let value = |i: usize| {
            let byte = block[1 + i % 16];
            if i < 16 {
                byte & 0x0f
            } else {
                byte >> 4
            }
        };
        out.extend((0..16).map(|k| value(2 * k) | (value(2 * k + 1) << 4)));
    }
    out
}

/// MXFP4 blocks from `F4` values and `F8_E8M0` scales.
pub(crate) fn join(values: &[u8], scales: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(scales.len() * BLOCK);
    for (packed, &scale) in values.chunks_exact(16).zip(scales) {
        let value = |i: usize| (packed[i / 2] >> (4 * (i % 2))) & 0x0f;
        out.push(scale);
        out.extend((0..16).map(|j| value(j) | (value(j + 16) << 4)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_are_inverse() {
        let blocks: Vec<u8> = (0..3 * BLOCK).map(|i| (i * 37 + 11) as u8).collect();
        let values = split(&blocks, false);
        let scales = split(&blocks, true);
        assert_eq!((values.len(), scales.len()), (48, 3));
        assert_eq!(join(&values, &scales), blocks);
        // Value 1 of the first block is the low nibble of its second byte.
        assert_eq!(values[0] >> 4, blocks[2] & 0x0f);
    }
}
