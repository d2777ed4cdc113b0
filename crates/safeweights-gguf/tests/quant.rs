//! Dequantization and quantization against the real `gguf` package:
//! every type `gguf.quants` can dequantize (quantized data and random
//! blocks, so NaN and infinite scales too, and every half-float bit
//! pattern) decodes to exactly its f32 bits, and every type it can
//! quantize encodes to exactly its bytes.
mod common;

use std::path::Path;
use std::process::Command;

use safeweights_gguf::quant::half::f32_to_f16;
use safeweights_gguf::quant::{can_dequantize, dequantize, dequantize_f16, quantize};
use safeweights_gguf::{GgmlType, GgufFile};

fn oracle(dir: &Path) -> bool {
    let Some(python) = common::require(
        "a Python with the gguf package",
        common::python_with(&["gguf", "numpy"]),
    ) else {
        return false;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/quant_oracle.py");
    let run = Command::new(python).arg(script).arg(dir).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    true
}

fn f32_bits(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn every_type_dequantizes_bit_for_bit_as_gguf_quants() {
    let dir = tempfile::tempdir().unwrap();
    if !oracle(dir.path()) {
        return;
    }
    let file = GgufFile::open(dir.path().join("types.gguf")).unwrap();
    let gguf = file.parse().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut nans = 0;
    for info in gguf.tensors() {
        let bytes = gguf.bytes_of(info);
        let mut ours = vec![0f32; info.numel() as usize];
        dequantize(info.ggml_type, bytes, &mut ours).unwrap();
        let theirs = std::fs::read(dir.path().join(format!("{}.f32", info.name))).unwrap();
        let theirs = f32_bits(&theirs);
        let ours: Vec<u32> = ours.iter().map(|v| v.to_bits()).collect();
        assert_eq!(ours.len(), theirs.len(), "{}", info.name);
        if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
            panic!(
                "{} ({}): value {i} is {:#010x}, gguf.quants says {:#010x}",
                info.name, info.ggml_type, ours[i], theirs[i]
            );
        }
        nans += ours.iter().filter(|b| f32::from_bits(**b).is_nan()).count();
        seen.insert(info.ggml_type.name());
    }
    let dequantizable = GgmlType::all().filter(|t| can_dequantize(*t) && *t != GgmlType::F32);
    assert_eq!(seen.len(), dequantizable.count(), "{seen:?}");
    assert!(nans > 100, "only {nans} NaNs were compared");
}

fn first_difference(ours: &[u8], theirs: &[u8]) -> Option<usize> {
    (0..ours.len()).find(|&i| ours[i] != theirs[i])
}

#[test]
fn every_type_dequantizes_to_half_as_numpy_rounds_gguf_quants() {
    let dir = tempfile::tempdir().unwrap();
    if !oracle(dir.path()) {
        return;
    }
    let file = GgufFile::open(dir.path().join("types.gguf")).unwrap();
    let gguf = file.parse().unwrap();
    for info in gguf.tensors() {
        let mut ours = vec![0u8; 2 * info.numel() as usize];
        dequantize_f16(info.ggml_type, gguf.bytes_of(info), &mut ours).unwrap();
        let theirs = std::fs::read(dir.path().join(format!("{}.f16", info.name))).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{}", info.name);
        if let Some(i) = first_difference(&ours, &theirs) {
            panic!(
                "{} ({}): byte {i} differs from numpy",
                info.name, info.ggml_type
            );
        }
    }
    let sweep = std::fs::read(dir.path().join("sweep.f32")).unwrap();
    let ours: Vec<u8> = f32_bits(&sweep)
        .into_iter()
        .flat_map(|bits| f32_to_f16(f32::from_bits(bits)).to_le_bytes())
        .collect();
    let theirs = std::fs::read(dir.path().join("sweep.f16")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    if let Some(i) = first_difference(&ours, &theirs) {
        let value = f32_bits(&sweep)[i / 2];
        panic!("f32 {value:#010x} rounds differently from numpy");
    }
}

#[test]
fn quantization_matches_gguf_quants_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    if !oracle(dir.path()) {
        return;
    }
    let input = std::fs::read(dir.path().join("quantize_input.f32")).unwrap();
    let values: Vec<f32> = f32_bits(&input).into_iter().map(f32::from_bits).collect();
    for ty in [
        GgmlType::F16,
        GgmlType::Bf16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
    ] {
        let theirs = std::fs::read(dir.path().join(format!("quantize_{}.bin", ty.name()))).unwrap();
        let mut ours = Vec::new();
        quantize(ty, &values, &mut ours).unwrap();
        assert_eq!(ours.len(), theirs.len(), "{ty}");
        if let Some(i) = (0..ours.len()).find(|&i| ours[i] != theirs[i]) {
            let block = i / ty.block_bytes() as usize;
            panic!(
                "{ty}: byte {i} (block {block}) is {:#04x}, gguf.quants says {:#04x}",
                ours[i], theirs[i]
            );
        }
    }
}
