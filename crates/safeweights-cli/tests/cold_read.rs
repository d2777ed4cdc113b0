//! `stats`, `checksum` and `verify` read with hints ahead of the workers
//! (`parallel::ReadAhead`) and reuse one buffer per tensor: from a cold
//! page cache and a warm one they give the same answers, digests equal to
//! an independent SHA-256, and a byte flipped anywhere (in a later piece
//! of a tensor larger than a piece, in a small tensor after it) fails.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use sha2::{Digest, Sha256};

/// Larger than one 16 MiB piece, so it is read in two.
const BIG_VALUES: usize = (17 << 20) / 4;

/// Drops the file's pages from the page cache (`posix_fadvise(DONTNEED)`
/// through GNU dd), with no privileges and no effect on other files.
fn evict(path: &Path) {
    let status = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A file of one big F32 tensor and 40 small ones, written in name order.
fn write_model(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut tensors = vec![(
        "a.big".to_owned(),
        (0..BIG_VALUES)
            .map(|i| ((i % 1000) as f32 - 500.0) * 0.25)
            .collect::<Vec<f32>>(),
    )];
    for i in 0..40 {
        tensors.push((
            format!("b.small.{i:02}"),
            (0..1000).map(|j| (i * 1000 + j) as f32).collect(),
        ));
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let refs: Vec<(&str, safeweights::write::TensorRef<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, values), data)| {
            let tensor = safeweights::write::TensorRef::new(
                safeweights::Dtype::F32,
                vec![values.len()],
                data,
            );
            (name.as_str(), tensor)
        })
        .collect();
    safeweights::write::serialize_to_file(
        &refs,
        None,
        path,
        &safeweights::write::WriteOptions::default(),
    )
    .unwrap();
    tensors
}

fn sha256_hex(values: &[f32]) -> String {
    let mut sha = Sha256::new();
    for v in values {
        sha.update(v.to_le_bytes());
    }
    sha.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn cold_and_warm_checksums_match_sha256_and_a_flipped_byte_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = write_model(&path);
    let file = path.display().to_string();
    evict(&path);
    let cold = json(&["checksum", &file], 0);
    let warm = json(&["checksum", &file], 0);
    assert_eq!(cold, warm);
    for (name, values) in &tensors {
        assert_eq!(cold["tensors"][name], sha256_hex(values), "{name}");
    }
    json(&["checksum", &file, "--write"], 0);
    evict(&path);
    assert_eq!(code(&run(&["verify", &file])), 0);
    assert_eq!(code(&run(&["verify", &file])), 0);

    let clean = std::fs::read(&path).unwrap();
    let data_start = clean.len() - (BIG_VALUES + 40 * 1000) * 4;
    // A byte in the big tensor's second piece, and one in the last tensor.
    for (offset, name) in [
        (data_start + (16 << 20) + 12_345, "a.big"),
        (clean.len() - 3, "b.small.39"),
    ] {
        let mut bytes = clean.clone();
        bytes[offset] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        evict(&path);
        let doc = json(&["verify", &file], 1);
        assert_eq!(doc["mismatched"], serde_json::json!([name]));
        assert_eq!(json(&["verify", &file], 1)["mismatched"], doc["mismatched"]);
    }
}

#[test]
fn cold_and_warm_stats_are_equal_and_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let tensors = write_model(&path);
    let file = path.display().to_string();
    evict(&path);
    let cold = json(&["stats", &file], 0);
    let warm = json(&["stats", &file], 0);
    assert_eq!(cold, warm);
    let rows = cold["tensors"].as_array().unwrap();
    assert_eq!(rows.len(), tensors.len());
    for (row, (name, values)) in rows.iter().zip(&tensors) {
        assert_eq!(row["name"], name.as_str());
        assert_eq!(row["count"], values.len());
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(row["min"].as_f64().unwrap(), f64::from(min), "{name}");
        assert_eq!(row["max"].as_f64().unwrap(), f64::from(max), "{name}");
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64;
        let got = row["mean"].as_f64().unwrap();
        assert!(
            (got - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{name}: {got} {mean}"
        );
        let zeros = values.iter().filter(|&&v| v == 0.0).count();
        assert_eq!(row["zeros"], zeros, "{name}");
    }
}
