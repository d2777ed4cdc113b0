//! `safeweights.dcp`'s native part: consolidation of a distributed
//! checkpoint through the core's streaming writer.

use std::path::PathBuf;

use pyo3::prelude::*;
use safeweights::checksum;
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

/// The XXH3-128 of the `length` bytes at `address` (a contiguous cpu
/// tensor's `data_ptr()`, which the caller keeps alive and unchanged for
/// the call: the `TensorSpec` contract), as 32 lowercase hex digits: the
/// checksum `serialize_file_checksummed` stores. Hashes with the GIL
/// released. (An address, not a buffer: the abi3 build for Python 3.9 has
/// no buffer protocol.)
///
/// Example: `xxh3_128_hex(t.data_ptr(), t.numel() * t.element_size())`.
#[pyfunction]
pub fn xxh3_128_hex(py: Python<'_>, address: usize, length: usize) -> PyResult<String> {
    if length > 0 && address == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "xxh3_128_hex: a null address for a non-empty range",
        ));
    }
    // SAFETY: the caller's contract above.
    let bytes = unsafe { memory(address, length) };
    Ok(py.detach(|| checksum::xxh3_128_hex(bytes)))
}

/// The `length` bytes at `address`.
///
/// # Safety
/// `address` must point to `length` readable bytes that stay valid and
/// unwritten while the slice is used (or `length` must be 0).
unsafe fn memory<'a>(address: usize, length: usize) -> &'a [u8] {
    if length == 0 {
        return &[];
    }
    // SAFETY: forwarded to the caller.
    unsafe { std::slice::from_raw_parts(address as *const u8, length) }
}
