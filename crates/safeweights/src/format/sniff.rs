//! Recognises formats that often sit where a safetensors file should be, so
//! the error can say "this is a git-lfs pointer" instead of "header too large".

use crate::error::ForeignFormat;

/// Guesses what a non-safetensors file is from its first bytes.
pub fn sniff_foreign_format(prefix: &[u8]) -> Option<ForeignFormat> {
    if prefix.starts_with(b"PK\x03\x04") || prefix.starts_with(b"PK\x05\x06") {
        return Some(ForeignFormat::Zip);
    }
    if prefix.starts_with(b"\x93NUMPY") {
        return Some(ForeignFormat::Numpy);
    }
    if prefix.starts_with(b"version https://git-lfs") {
        return Some(ForeignFormat::GitLfsPointer);
    }
    if looks_like_pickle(prefix) {
        return Some(ForeignFormat::Pickle);
    }
    looks_like_html(prefix).then_some(ForeignFormat::Html)
}

/// A pickle of protocol 2 or later starts with PROTO (0x80), its version and
/// an opcode. The opcode must not be zero: `80 02 00 ..` is also how a
/// safetensors length of 640 to 767 bytes begins, and a truncated file of
/// that kind must not be reported as a pickle.
fn looks_like_pickle(prefix: &[u8]) -> bool {
    matches!(prefix, [0x80, 2..=5, opcode, ..] if *opcode != 0)
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
        assert_eq!(
            sniff_foreign_format(b"PK\x03\x04rest"),
            Some(ForeignFormat::Zip)
        );
        assert_eq!(
            sniff_foreign_format(b"version https://git-lfs.github.com/spec/v1\noid sha256:"),
            Some(ForeignFormat::GitLfsPointer)
        );
        assert_eq!(
            sniff_foreign_format(b"\n<!DOCTYPE html><html>"),
            Some(ForeignFormat::Html)
        );
        assert_eq!(
            sniff_foreign_format(b"\x80\x02\x8a\x0a"),
            Some(ForeignFormat::Pickle)
        );
        assert_eq!(
            sniff_foreign_format(b"\x93NUMPY\x01\x00"),
            Some(ForeignFormat::Numpy)
        );
        assert_eq!(
            sniff_foreign_format(b"\x10\x00\x00\x00\x00\x00\x00\x00{"),
            None
        );
        // A safetensors header length of 0x280 bytes, not a pickle.
        assert_eq!(
            sniff_foreign_format(b"\x80\x02\x00\x00\x00\x00\x00\x00{"),
            None
        );
    }
}
