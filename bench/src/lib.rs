//! Shared fixtures for the core benchmarks (see `benches/core.rs` and
//! `run_core.sh`). Nothing here is timed.

use std::path::Path;

use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::Dtype;

/// A file of `count` small F32 tensors (`[4]`, 16 bytes each), named
/// `t0`, `t1`, ..., as our writer (and the reference) lays it out.
pub fn many_tensor_file(count: usize) -> Vec<u8> {
    let data = [0u8; 16];
    let names: Vec<String> = (0..count).map(|i| format!("t{i}")).collect();
    let refs: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), TensorRef::new(Dtype::F32, vec![4], &data)))
        .collect();
    serialize(&refs, None, &WriteOptions::default()).expect("valid tensors")
}

/// The JSON header of a file (without the length prefix and the data).
pub fn header_json(file: &[u8]) -> &[u8] {
    let len = u64::from_le_bytes(file[..8].try_into().expect("8 bytes")) as usize;
    &file[8..8 + len]
}

/// `count` F32 tensors of `total / count` bytes (rounded down to a multiple
/// of 4), filled with a cheap non-zero pattern.
#[derive(Debug)]
pub struct BigModel {
    /// Tensor names.
    pub names: Vec<String>,
    /// Tensor bytes.
    pub data: Vec<Vec<u8>>,
}

impl BigModel {
    /// Builds the model in memory.
    pub fn new(total: usize, count: usize) -> BigModel {
        let each = total / count / 4 * 4;
        BigModel {
            names: (0..count)
                .map(|i| format!("model.layers.{i}.weight"))
                .collect(),
            data: (0..count)
                .map(|i| {
                    let mut v = vec![0u8; each];
                    for (k, chunk) in v.chunks_mut(4096).enumerate() {
                        chunk[0] = (i + k) as u8;
                    }
                    v
                })
                .collect(),
        }
    }

    /// Total bytes of tensor data.
    pub fn bytes(&self) -> u64 {
        self.data.iter().map(|d| d.len() as u64).sum()
    }

    /// Our writer's input.
    pub fn refs(&self) -> Vec<(&str, TensorRef<'_>)> {
        self.names
            .iter()
            .zip(&self.data)
            .map(|(n, d)| (n.as_str(), TensorRef::new(Dtype::F32, vec![d.len() / 4], d)))
            .collect()
    }

    /// The reference writer's input.
    pub fn reference_views(&self) -> Vec<(&str, safetensors::tensor::TensorView<'_>)> {
        self.names
            .iter()
            .zip(&self.data)
            .map(|(n, d)| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![d.len() / 4],
                    d,
                )
                .expect("valid view");
                (n.as_str(), view)
            })
            .collect()
    }
}

/// Sums a buffer eight bytes at a time, so that every byte is read.
pub fn touch(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut sum = 0u64;
    for chunk in &mut chunks {
        sum = sum.wrapping_add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
    }
    chunks
        .remainder()
        .iter()
        .fold(sum, |acc, &b| acc.wrapping_add(u64::from(b)))
}

/// Flushes dirty pages, so that write benchmarks start from the same state.
pub fn sync_disks() {
    let _ = std::process::Command::new("sync").status();
}

/// Removes a file if it exists.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
