//! `safeweights.dcp`'s native part: consolidation of a distributed
//! checkpoint through the core's streaming writer.

use std::path::PathBuf;

use pyo3::prelude::*;
use safeweights::dcp::{consolidate, DcpCheckpoint};
use safeweights::read::{Backend, OpenOptions};
use safeweights::write::WriteOptions;
use safeweights::HeaderLimits;

use crate::errors::CoreError;

/// Writes the full tensors of the `safeweights.dcp` checkpoint in
/// `directory` to `output` as `model-0000N-of-0000M.safetensors` shards of
/// at most `max_shard_size` bytes plus `model.safetensors.index.json`;
/// returns the paths written. Streams with the GIL released: memory stays
/// bounded by the largest tensor. The checkpoint is checked first (every
/// shard present, complete and of this save).
#[pyfunction]
#[pyo3(signature = (directory, output, max_shard_size, *, durable = true))]
pub fn dcp_consolidate(
    py: Python<'_>,
    directory: PathBuf,
    output: PathBuf,
    max_shard_size: u64,
    durable: bool,
) -> PyResult<Vec<PathBuf>> {
    py.detach(|| {
        let options = OpenOptions {
            backend: Backend::Pread,
            limits: HeaderLimits::default(),
        };
        let checkpoint = DcpCheckpoint::open(&directory, &options)?;
        let write = WriteOptions {
            sync: durable,
            ..WriteOptions::default()
        };
        consolidate(&checkpoint, &output, max_shard_size, &write)
    })
    .map_err(|error| CoreError::from(error).into())
}
