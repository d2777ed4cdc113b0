//! The core's one format sniffer, for the Python package.

use pyo3::prelude::*;

/// How many leading bytes of a file `sniff_format` looks at.
pub const SNIFF_LEN: usize = safeweights::format::sniff::SNIFF_LEN;

/// What a file is from its first bytes (up to `SNIFF_LEN` are used):
/// `"safetensors"`, `"zip"`, `"pickle"`, `"numpy"`, `"git-lfs-pointer"`,
/// `"html"`, `"gzip"`, `"bzip2"`, `"7z"`, `"xz"`, `"tar"`, `"gguf"` or
/// `"unknown"`. The same rule as every Rust reader and the scanner.
#[pyfunction]
pub fn sniff_format(prefix: &[u8]) -> &'static str {
    safeweights::sniff(prefix).name()
}
