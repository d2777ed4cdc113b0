//! The one format sniffer: what a file is, from its first bytes.
//!
//! Every reader, the pickle crate's converter and scanner, the CLI and the
//! Python package ask this function, so that a file is recognised the same
//! way everywhere. Safetensors is tried first and recognised by a plausible
//! header, because its first byte is the low byte of the header length and
//! can be anything, `0x80` (a pickle's PROTO opcode) included.

use super::header::{DEFAULT_MAX_HEADER_SIZE, PREFIX_LEN};

/// How many bytes of a file [`sniff`] looks at: a tar archive's `ustar`
/// magic ends at offset 262. Fewer bytes are fine; formats whose marks lie
/// beyond the prefix given are not recognised.
pub const SNIFF_LEN: usize = 512;

/// Offset of the `ustar` magic in a tar archive's first block.
const TAR_MAGIC_OFFSET: usize = 257;

/// What a file is, as [`sniff`] recognises it from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FileKind {
    /// A safetensors file: a plausible little-endian header length followed
    /// by the opening `{` of the JSON header.
    Safetensors,
    /// A zip archive, most likely a PyTorch checkpoint or a numpy `.npz`.
    Zip,
    /// A numpy `.npy` file.
    Numpy,
    /// A raw pickle stream of protocol 0 to 5 that starts with PROTO (a
    /// legacy PyTorch checkpoint or `pickle.dump`).
    Pickle,
    /// A git-lfs pointer file: the real file was never downloaded.
    GitLfsPointer,
    /// An HTML (or XML) page, typically an error or login page.
    Html,
    /// A gzip-compressed file.
    Gzip,
    /// A bzip2-compressed file.
    Bzip2,
    /// A 7-Zip archive.
    SevenZip,
    /// An xz-compressed file.
    Xz,
    /// A POSIX or GNU tar archive.
    Tar,
    /// A GGUF file (llama.cpp).
    Gguf,
    /// None of the above.
    Unknown,
}

impl FileKind {
    /// A short lowercase name, stable for scripts (`"safetensors"`,
    /// `"git-lfs-pointer"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Safetensors => "safetensors",
            FileKind::Zip => "zip",
            FileKind::Numpy => "numpy",
            FileKind::Pickle => "pickle",
            FileKind::GitLfsPointer => "git-lfs-pointer",
            FileKind::Html => "html",
            FileKind::Gzip => "gzip",
            FileKind::Bzip2 => "bzip2",
            FileKind::SevenZip => "7z",
            FileKind::Xz => "xz",
            FileKind::Tar => "tar",
            FileKind::Gguf => "gguf",
            FileKind::Unknown => "unknown",
        }
    }

    /// Whether the file is a model's stand-in rather than any model format:
    /// a git-lfs pointer or a web page saved under the model's name.
    pub fn is_placeholder(self) -> bool {
        matches!(self, FileKind::GitLfsPointer | FileKind::Html)
    }

    /// What the file is and what to do about it, for an error message about
    /// a file that should have been safetensors.
    pub(crate) fn advice(self) -> &'static str {
        match self {
            FileKind::Zip => {
                "it is a zip archive, probably a PyTorch checkpoint: convert it with `safeweights convert`"
            }
            FileKind::Pickle => {
                "it is a pickle stream, probably a legacy PyTorch checkpoint: convert it with `safeweights convert`"
            }
            FileKind::GitLfsPointer => {
                "it is a git-lfs pointer, not the file itself: run `git lfs pull` to fetch the real file"
            }
            FileKind::Html => {
                "it is an HTML page, probably an error or login page saved in place of the file: download it again"
            }
            FileKind::Numpy => "it is a numpy .npy file: convert it with `safeweights convert`",
            FileKind::Gzip | FileKind::Bzip2 | FileKind::Xz => {
                "it is a compressed file: decompress it first"
            }
            FileKind::SevenZip | FileKind::Tar => "it is an archive: extract it first",
            FileKind::Gguf => "it is a GGUF file (llama.cpp), a different model format",
            FileKind::Safetensors | FileKind::Unknown => "its format is not recognised",
        }
    }
}

/// Recognises a file from its first bytes (up to [`SNIFF_LEN`] are used).
///
/// Content only, never the name. A prefix too short to decide gives
/// [`FileKind::Unknown`] (or a format whose magic fits in it).
pub fn sniff(prefix: &[u8]) -> FileKind {
    if looks_like_safetensors(prefix) {
        return FileKind::Safetensors;
    }
    const MAGICS: &[(&[u8], FileKind)] = &[
        (b"PK\x03\x04", FileKind::Zip),
        (b"PK\x05\x06", FileKind::Zip),
        (b"\x93NUMPY", FileKind::Numpy),
        (b"version https://git-lfs", FileKind::GitLfsPointer),
        (b"\x1f\x8b", FileKind::Gzip),
        (b"7z\xbc\xaf\x27\x1c", FileKind::SevenZip),
        (b"\xfd7zXZ\x00", FileKind::Xz),
        (b"GGUF", FileKind::Gguf),
    ];
    if let Some((_, kind)) = MAGICS.iter().find(|(magic, _)| prefix.starts_with(magic)) {
        return *kind;
    }
    if matches!(prefix, [b'B', b'Z', b'h', b'1'..=b'9', ..]) {
        return FileKind::Bzip2;
    }
    if prefix
        .get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + 5)
        .is_some_and(|m| m == b"ustar")
    {
        return FileKind::Tar;
    }
    if looks_like_pickle(prefix) {
        return FileKind::Pickle;
    }
    if looks_like_html(prefix) {
        return FileKind::Html;
    }
    FileKind::Unknown
}

/// The kind of a file that failed to parse as safetensors, when it is
/// another format worth naming in the error.
pub(crate) fn foreign(prefix: &[u8]) -> Option<FileKind> {
    match sniff(prefix) {
        FileKind::Safetensors | FileKind::Unknown => None,
        kind => Some(kind),
    }
}

/// A header length no larger than the default limit, followed (after
/// optional JSON whitespace, within the header) by `{`. Lengths over the
/// default limit are not plausible: the first eight bytes of a GGUF or zip
/// file read as lengths of a few gigabytes, those of any text file as more.
fn looks_like_safetensors(prefix: &[u8]) -> bool {
    let Some(len_bytes) = prefix.get(..PREFIX_LEN) else {
        return false;
    };
    let mut raw = [0u8; PREFIX_LEN];
    raw.copy_from_slice(len_bytes);
    let len = u64::from_le_bytes(raw);
    // `{}` is the shortest header.
    if !(2..=DEFAULT_MAX_HEADER_SIZE).contains(&len) {
        return false;
    }
    let header = &prefix[PREFIX_LEN..];
    let header = &header[..header.len().min(len as usize)];
    header
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

/// A pickle of protocol 2 or later (and, rarely, 0 or 1) starts with PROTO
/// (0x80), its version and an opcode. The opcode must not be zero, which is
/// no opcode at all: `80 02 00 ..` is also how a truncated safetensors file
/// with a header length of 640 to 767 bytes begins.
fn looks_like_pickle(prefix: &[u8]) -> bool {
    matches!(prefix, [0x80, 0..=5, opcode, ..] if *opcode != 0)
}

fn looks_like_html(prefix: &[u8]) -> bool {
    let start = prefix
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(prefix.len());
    let head: Vec<u8> = prefix[start..]
        .iter()
        .take(14)
        .map(u8::to_ascii_lowercase)
        .collect();
    head.starts_with(b"<!doctype html") || head.starts_with(b"<html") || head.starts_with(b"<?xml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_common_impostors() {
        let cases: &[(&[u8], FileKind)] = &[
            (b"PK\x03\x04rest", FileKind::Zip),
            (
                b"version https://git-lfs.github.com/spec/v1\noid sha256:",
                FileKind::GitLfsPointer,
            ),
            (b"\n<!DOCTYPE html><html>", FileKind::Html),
            (b"\x80\x02\x8a\x0a", FileKind::Pickle),
            (
                b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}",
                FileKind::Pickle,
            ),
            (b"\x93NUMPY\x01\x00", FileKind::Numpy),
            (b"\x1f\x8b\x08\x00", FileKind::Gzip),
            (b"BZh91AY&SY", FileKind::Bzip2),
            (b"7z\xbc\xaf\x27\x1c\x00\x04", FileKind::SevenZip),
            (b"\xfd7zXZ\x00\x00", FileKind::Xz),
            (b"GGUF\x03\x00\x00\x00{\x00\x00\x00", FileKind::Gguf),
            (b"\x10\x00\x00\x00\x00\x00\x00\x00{", FileKind::Safetensors),
            (
                b"\x10\x00\x00\x00\x00\x00\x00\x00 \n{",
                FileKind::Safetensors,
            ),
            (b"hello world, plain text", FileKind::Unknown),
            (b"", FileKind::Unknown),
        ];
        for (prefix, kind) in cases {
            assert_eq!(sniff(prefix), *kind, "{prefix:?}");
        }
    }

    #[test]
    fn tar_is_recognised_by_its_magic_at_offset_257() {
        let mut block = vec![0u8; SNIFF_LEN];
        block[..8].copy_from_slice(b"data.pkl");
        block[257..263].copy_from_slice(b"ustar\0");
        assert_eq!(sniff(&block), FileKind::Tar);
        assert_eq!(sniff(&block[..260]), FileKind::Unknown);
    }

    // Regression: a safetensors file whose header length has low byte 0x80
    // was taken for a pickle stream (PROTO opcode).
    #[test]
    fn safetensors_header_length_with_low_byte_0x80_is_not_a_pickle() {
        for len in [0x80u64, 0x180, 0x280, 0x0380, 0x1_0080] {
            let mut prefix = len.to_le_bytes().to_vec();
            prefix.extend_from_slice(b"{\"a\":{}}");
            assert_eq!(sniff(&prefix), FileKind::Safetensors, "{len:#x}");
        }
    }

    #[test]
    fn truncated_safetensors_prefix_is_not_a_pickle() {
        // A header length of 0x280 bytes cut off after its length.
        assert_eq!(
            sniff(b"\x80\x02\x00\x00\x00\x00\x00\x00"),
            FileKind::Unknown
        );
        assert_eq!(foreign(b"\x80\x02\x00\x00\x00\x00\x00\x00{"), None);
    }

    #[test]
    fn implausible_lengths_and_missing_brace_are_not_safetensors() {
        let mut huge = (DEFAULT_MAX_HEADER_SIZE + 1).to_le_bytes().to_vec();
        huge.push(b'{');
        assert_eq!(sniff(&huge), FileKind::Unknown);
        assert_eq!(
            sniff(b"\x01\x00\x00\x00\x00\x00\x00\x00{"),
            FileKind::Unknown
        );
        assert_eq!(
            sniff(b"\x10\x00\x00\x00\x00\x00\x00\x00["),
            FileKind::Unknown
        );
        // The brace must lie within the declared header.
        assert_eq!(
            sniff(b"\x02\x00\x00\x00\x00\x00\x00\x00  {}"),
            FileKind::Unknown
        );
    }
}
