//! Per-tensor SHA-256 digests and where they are stored.
//!
//! `checksum --write` stores the digests in `__metadata__` under
//! [`METADATA_KEY`] as a compact JSON object mapping each tensor name to
//! the lowercase hex SHA-256 of its raw bytes, keys sorted:
//! `{"safeweights.sha256": "{\"a\":\"9f86...\",\"b\":\"...\"}"}`.
//! The same map, as `{"algorithm": "sha256", "tensors": {...}}`, is the
//! manifest that `checksum` prints and `verify --manifest` reads.

use std::collections::BTreeMap;
use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::exit::{CliError, CliResult};
use crate::parallel::{run_indexed, thread_count, ReadAhead};
use crate::source::{Checkpoint, Entry};

/// The `__metadata__` key holding the digests.
pub const METADATA_KEY: &str = "safeweights.sha256";

/// Tensor name to hex digest.
pub type Digests = BTreeMap<String, String>;

/// Hashes every tensor with SHA-256, several tensors at a time.
pub fn compute(checkpoint: &Checkpoint) -> CliResult<Digests> {
    compute_with(checkpoint, Algorithm::Sha256)
}

/// A digest algorithm of stored checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256, what `checksum --write` stores under [`METADATA_KEY`].
    Sha256,
    /// XXH3-128, what the DCP writer stores while writing, under
    /// [`safeweights::checksum::XXH3_128_KEY`].
    Xxh3_128,
}

/// Hashes every tensor with `algorithm`, several tensors at a time.
pub fn compute_with(checkpoint: &Checkpoint, algorithm: Algorithm) -> CliResult<Digests> {
    compute_entries(checkpoint, &checkpoint.entries(), algorithm)
}

/// Hashes the given tensors, several at a time; of a remote checkpoint
/// only their bytes are fetched (the progress bar then says so).
pub fn compute_entries(
    checkpoint: &Checkpoint,
    entries: &[Entry<'_>],
    algorithm: Algorithm,
) -> CliResult<Digests> {
    let total: u64 = entries.iter().map(|e| e.info.end - e.info.begin).sum();
    let label = match algorithm {
        Algorithm::Sha256 => "sha256",
        Algorithm::Xxh3_128 => "xxh3-128",
    };
    let bar = checkpoint.progress(total, label);
    let ahead = ReadAhead::new(checkpoint, entries);
    let hexes = run_indexed(entries.len(), thread_count(None), |i| {
        let entry = entries[i];
        let mut sha = Sha256::new();
        let mut xxh = safeweights::checksum::Checksum::new();
        let before = |offset| ahead.reached(i, offset);
        checkpoint.for_each_piece_with(entry, before, |piece| {
            match algorithm {
                Algorithm::Sha256 => sha.update(piece),
                Algorithm::Xxh3_128 => xxh.update(piece),
            }
            bar.inc(piece.len() as u64);
            Ok(())
        })?;
        Ok(match algorithm {
            Algorithm::Sha256 => hex(&sha.finalize()),
            Algorithm::Xxh3_128 => xxh.hex(),
        })
    })?;
    bar.finish_and_clear();
    Ok(entries
        .iter()
        .map(|e| e.info.name.to_owned())
        .zip(hexes)
        .collect())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The manifest document.
pub fn manifest(digests: &Digests) -> serde_json::Value {
    serde_json::json!({"algorithm": "sha256", "tensors": digests})
}

/// Reads a manifest document.
pub fn parse_manifest(text: &str) -> CliResult<Digests> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        algorithm: String,
        tensors: Digests,
    }
    let manifest: Manifest = serde_json::from_str(text)
        .map_err(|e| CliError::input(format!("not a checksum manifest: {e}")))?;
    if manifest.algorithm != "sha256" {
        return Err(CliError::input(format!(
            "unsupported checksum algorithm {:?}",
            manifest.algorithm
        )));
    }
    Ok(manifest.tensors)
}

/// Reads the digests stored in metadata.
pub fn parse_stored(text: &str) -> CliResult<Digests> {
    serde_json::from_str(text).map_err(|e| {
        CliError::invalid(format!(
            "the stored {METADATA_KEY} value is not a JSON object of digests: {e}"
        ))
    })
}
