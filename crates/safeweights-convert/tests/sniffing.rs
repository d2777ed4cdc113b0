//! The converter recognises files with the core's one sniffer, which must
//! not take a safetensors file whose header length has low byte `0x80` (a
//! pickle's PROTO opcode) for a pickle stream.

use std::path::PathBuf;

use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Metadata};
use safeweights_convert::{convert, ConvertOptions, Error};

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn convert_says_a_safetensors_file_with_header_low_byte_0x80_needs_no_conversion() {
    let dir = temp_dir("sniffing_convert");
    let input = dir.join("model.safetensors");
    std::fs::write(&input, safetensors_with_header_low_byte_0x80()).unwrap();
    let output = dir.join("out.safetensors");
    let error = convert(&input, &output, &ConvertOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("already is safetensors"),
        "{error}"
    );
    assert!(!output.exists());
}

#[test]
fn convert_reports_a_corrupt_safetensors_file_as_such() {
    let dir = temp_dir("sniffing_corrupt");
    let input = dir.join("model.safetensors");
    let mut bytes = safetensors_with_header_low_byte_0x80();
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&input, &bytes).unwrap();
    let error = convert(
        &input,
        &dir.join("out.safetensors"),
        &ConvertOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(error.root(), Error::Safetensors { .. }),
        "{error:?}"
    );
}
