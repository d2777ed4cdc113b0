//! Digests of tensor bytes, taken while a conversion writes them and
//! compared with the output read back, so that `--verify` reads the
//! source once.
//!
//! XXH3-128: the check is against corruption and bugs (a byte flipped on
//! the way to the disk, a tensor written at the wrong offset), where a
//! 128-bit digest misses a change with probability 2^-128, at memory speed.

use xxhash_rust::xxh3::Xxh3;

/// A running digest of one tensor's bytes.
pub(crate) struct Digest(Xxh3);

impl Digest {
    pub(crate) fn new() -> Self {
        Digest(Xxh3::new())
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(&self) -> u128 {
        self.0.digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(pieces: &[&[u8]]) -> u128 {
        let mut digest = Digest::new();
        pieces.iter().for_each(|p| digest.update(p));
        digest.finish()
    }

    #[test]
    fn a_flipped_byte_changes_the_digest_but_the_split_does_not() {
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = of(&[&bytes]);
        assert_eq!(
            whole,
            of(&[&bytes[..3], &bytes[3..70_000], &bytes[70_000..]])
        );
        for at in [0, 1, 4095, 50_000, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x01;
            assert_ne!(of(&[&flipped]), whole, "byte {at}");
        }
    }
}
