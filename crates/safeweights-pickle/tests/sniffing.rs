//! The scanner recognises files with the core's one
//! sniffer, which must not take a safetensors file whose header length has
//! low byte `0x80` (a pickle's PROTO opcode) for a pickle stream, as the
//! Python package's own copy of the detection did.

use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Metadata};
use safeweights_pickle::scan::{scan_bytes, FileFormat};
use safeweights_pickle::Limits;

/// A safetensors file from our writer whose header length is `0x80` modulo 256.
fn safetensors_with_header_low_byte_0x80() -> Vec<u8> {
    let data = [1u8, 2, 3, 4];
    let tensor = [("w", TensorRef::new(Dtype::U8, vec![4], &data))];
    (0..512)
        .map(|pad| {
            let metadata = Metadata::from([("pad".to_owned(), "x".repeat(pad))]);
            serialize(&tensor, Some(&metadata), &WriteOptions::default()).unwrap()
        })
        .find(|bytes| bytes[0] == 0x80)
        .expect("some padding gives a header length ending in 0x80")
}

#[test]
fn scan_takes_a_safetensors_file_with_header_low_byte_0x80_for_safetensors() {
    let bytes = safetensors_with_header_low_byte_0x80();
    let report = scan_bytes("model.safetensors", &bytes, &Limits::default());
    assert_eq!(report.format, FileFormat::Safetensors);
    assert_eq!(report.issues().count(), 0, "{:?}", report.findings);
}
