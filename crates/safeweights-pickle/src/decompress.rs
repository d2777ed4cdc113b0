//! Bounded decompression: zip member methods (deflate, bzip2, LZMA) and
//! whole-file wrappers (gzip, bzip2, xz) that joblib, pandas and numpy
//! open transparently.
//!
//! Output is produced incrementally into a buffer that never grows past a
//! cap, so a bomb fails when it reaches the cap instead of when memory runs
//! out; there is no compression-ratio test, because highly compressible
//! data (a zero-initialised LoRA matrix) is perfectly normal.

use std::io::{self, Read, Write};

/// What to do when the output reaches the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtCap {
    /// Stop and return the bytes so far (peeking at a prefix).
    Stop,
    /// Fail: the data holds more than the cap.
    Fail,
}

/// Why decompression did not produce the output.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The output would pass the cap (only with [`AtCap::Fail`]); holds
    /// the bytes up to the cap.
    TooLarge(Vec<u8>),
    /// The compressed data is corrupt; holds what was decoded before the
    /// error and the decoder's message.
    Corrupt(Vec<u8>, String),
}

/// A writer that keeps at most `cap` bytes and notes when more came.
struct Capped {
    out: Vec<u8>,
    cap: usize,
    overflow: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.cap - self.out.len();
        if room == 0 && !buf.is_empty() {
            self.overflow = true;
            return Err(io::Error::other("output cap reached"));
        }
        let n = room.min(buf.len());
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capped {
    fn new(cap: usize) -> Capped {
        // Grows with the data: a lying declared size allocates nothing.
        Capped {
            out: Vec::with_capacity(cap.min(1 << 20)),
            cap,
            overflow: false,
        }
    }

    /// Turns a decoder's result into the output or the failure.
    fn finish<E: std::fmt::Display>(
        self,
        result: Result<(), E>,
        at_cap: AtCap,
    ) -> Result<Vec<u8>, Failure> {
        match (result, self.overflow, at_cap) {
            (_, true, AtCap::Stop) | (Ok(()), false, _) => Ok(self.out),
            (_, true, AtCap::Fail) => Err(Failure::TooLarge(self.out)),
            (Err(e), false, _) => Err(Failure::Corrupt(self.out, e.to_string())),
        }
    }
}

/// Copies everything `reader` yields into a capped buffer.
fn drain(mut reader: impl Read, cap: usize, at_cap: AtCap) -> Result<Vec<u8>, Failure> {
    let mut sink = Capped::new(cap);
    let result = io::copy(&mut reader, &mut sink).map(|_| ());
    sink.finish(result, at_cap)
}

/// Raw deflate (zip method 8).
pub(crate) fn deflate(raw: &[u8], cap: usize, at_cap: AtCap) -> Result<Vec<u8>, Failure> {
    drain(flate2::read::DeflateDecoder::new(raw), cap, at_cap)
}

/// One bzip2 stream (zip method 12, as Python's `zipfile` reads it).
pub(crate) fn bzip2(raw: &[u8], cap: usize, at_cap: AtCap) -> Result<Vec<u8>, Failure> {
    drain(bzip2::read::BzDecoder::new(raw), cap, at_cap)
}

/// Zip method 14 as Python's `zipfile` writes it: a 2-byte version, a
/// 2-byte properties length, the LZMA properties, then a raw LZMA stream,
/// ended by an end marker when `has_end_marker` (flag bit 1), else by
/// `size`.
pub(crate) fn zip_lzma(
    raw: &[u8],
    size: u64,
    has_end_marker: bool,
    cap: usize,
    at_cap: AtCap,
) -> Result<Vec<u8>, Failure> {
    let corrupt = |m: &str| Failure::Corrupt(Vec::new(), m.to_owned());
    let props_len = raw
        .get(2..4)
        .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
        .ok_or_else(|| corrupt("truncated LZMA header"))?;
    if props_len != 5 {
        return Err(corrupt("LZMA properties are not 5 bytes long"));
    }
    let stream = raw
        .get(4..)
        .ok_or_else(|| corrupt("truncated LZMA header"))?;
    let options = lzma_rs::decompress::Options {
        unpacked_size: lzma_rs::decompress::UnpackedSize::UseProvided(
            (!has_end_marker).then_some(size),
        ),
        // The window never needs to be larger than the whole output; a
        // prefix may need the window to fill before anything is written.
        memlimit: Some(match at_cap {
            AtCap::Fail => cap.max(4096),
            AtCap::Stop => cap.max(64 << 20),
        }),
        allow_incomplete: false,
    };
    let mut sink = Capped::new(cap);
    let result = lzma_rs::lzma_decompress_with_options(&mut { stream }, &mut sink, &options);
    sink.finish(result, at_cap)
}

/// A whole-file compression wrapper that loaders open transparently
/// (recognised by the core's sniffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrapper {
    /// gzip (`\x1f\x8b`): joblib, pandas, `gzip.open` + `pickle.load`.
    Gzip,
    /// bzip2 (`BZh`): joblib, pandas.
    Bzip2,
    /// xz (`\xfd7zXZ\0`): joblib, pandas.
    Xz,
}

impl Wrapper {
    /// The wrapper's usual name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Wrapper::Gzip => "gzip",
            Wrapper::Bzip2 => "bzip2",
            Wrapper::Xz => "xz",
        }
    }

    /// Decompresses every concatenated stream, as Python's `gzip`, `bz2`
    /// and `lzma` modules do, up to `cap` bytes.
    pub(crate) fn decompress(self, data: &[u8], cap: usize) -> Result<Vec<u8>, Failure> {
        match self {
            Wrapper::Gzip => drain(flate2::read::MultiGzDecoder::new(data), cap, AtCap::Fail),
            Wrapper::Bzip2 => drain(bzip2::read::MultiBzDecoder::new(data), cap, AtCap::Fail),
            Wrapper::Xz => {
                let mut sink = Capped::new(cap);
                let result = lzma_rs::xz_decompress(&mut { data }, &mut sink);
                sink.finish(result, AtCap::Fail)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_output_stops_or_fails_at_the_cap() {
        let zeros = miniz_oxide::deflate::compress_to_vec(&[0u8; 100_000], 6);
        assert_eq!(deflate(&zeros, 1000, AtCap::Stop).unwrap(), vec![0u8; 1000]);
        assert!(matches!(
            deflate(&zeros, 1000, AtCap::Fail),
            Err(Failure::TooLarge(v)) if v.len() == 1000
        ));
        assert_eq!(
            deflate(&zeros, 100_000, AtCap::Fail).unwrap().len(),
            100_000
        );
        assert!(matches!(
            deflate(b"\xff\xff\xff", 10, AtCap::Fail),
            Err(Failure::Corrupt(..))
        ));
    }
}
