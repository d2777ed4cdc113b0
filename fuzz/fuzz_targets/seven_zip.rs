//! The scanner on mutated 7z archives (seeds written by py7zr,
//! make_7z_corpus.py): never panics, never allocates past its limits,
//! and always recognises the archive as 7z. Inputs that lose the
//! signature get it back, so every run reaches the 7z reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use safeweights_pickle::scan::{scan_bytes, FileFormat};
use safeweights_pickle::Limits;

const SIGNATURE: &[u8] = b"7z\xbc\xaf\x27\x1c";

fuzz_target!(|data: &[u8]| {
    // Small output limits, so bombs stop in microseconds.
    let limits = Limits {
        max_decompressed: 1 << 20,
        max_total_decompressed: 4 << 20,
        ..Limits::default()
    };
    let input: Vec<u8> = if data.starts_with(SIGNATURE) {
        data.to_vec()
    } else {
        SIGNATURE.iter().chain(data).copied().collect()
    };
    let report = scan_bytes("fuzz.7z", &input, &limits);
    assert_eq!(report.format, FileFormat::SevenZip);
});
