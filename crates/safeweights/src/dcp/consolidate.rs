//! Consolidation: a distributed checkpoint's chunks into full tensors, in
//! a standard Hugging Face layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{ChunkRecord, DcpCheckpoint, TensorRecord};
use crate::error::{DcpProblem, Error, Result};
use crate::format::{Dtype, Metadata};
use crate::read::try_zeroed;
use crate::shards::{plan_shards, shard_file_name, ShardIndex};
use crate::slice::place_block;
use crate::write::{StreamingWriter, TensorSpec, WriteOptions};

/// The index file of the output.
pub const INDEX_FILE: &str = "model.safetensors.index.json";

/// Bytes copied per read while streaming a chunk.
const PIECE: usize = 16 << 20;

/// A tensor to write: its name, record and dtype (from its chunks).
struct Planned<'a> {
    name: &'a str,
    record: &'a TensorRecord,
    dtype: Dtype,
    bytes: u64,
}

/// Writes every tensor of `checkpoint`, whole, into `output` as
/// `model-0000N-of-0000M.safetensors` shards of at most `max_shard_size`
/// bytes (a larger tensor gets a shard of its own) plus
/// [`INDEX_FILE`], and returns the paths written (index last).
///
/// Memory stays bounded by the largest tensor, never the model: tensors
/// sharded on their first dimension (FSDP, DTensor `Shard(0)`) stream
/// from the chunks' byte ranges straight into the output in 16 MiB
/// pieces; a tensor sharded on another dimension is assembled in one
/// buffer first. Every file is written to a temporary file and renamed
/// into place, the index last.
pub fn consolidate(
    checkpoint: &DcpCheckpoint,
    output: &Path,
    max_shard_size: u64,
    options: &WriteOptions,
) -> Result<Vec<PathBuf>> {
    let planned = plan(checkpoint)?;
    let sizes: Vec<u64> = planned.iter().map(|p| p.bytes).collect();
    let groups = plan_shards(&sizes, max_shard_size);
    std::fs::create_dir_all(output).map_err(|e| Error::Io(e).in_file(output))?;
    let mut metadata = Metadata::new();
    metadata.insert("format".to_owned(), "pt".to_owned());
    let mut weight_map = BTreeMap::new();
    let mut written = Vec::with_capacity(groups.len() + 1);
    for (number, range) in groups.iter().enumerate() {
        let name = shard_file_name("model", number, groups.len());
        let path = output.join(&name);
        let members = &planned[range.clone()];
        let specs: Vec<TensorSpec> = members
            .iter()
            .map(|p| TensorSpec::new(p.name, p.dtype, p.record.size.clone()))
            .collect();
        let mut writer = StreamingWriter::create(&path, &specs, Some(&metadata), options)?;
        for member in members {
            write_tensor(checkpoint, member, &mut writer)?;
            weight_map.insert(member.name.to_owned(), name.clone());
        }
        writer.finish()?;
        written.push(path);
    }
    let index_path = output.join(INDEX_FILE);
    ShardIndex::new(sizes.iter().sum(), weight_map).write_with(&index_path, options.sync)?;
    written.push(index_path);
    Ok(written)
}

fn plan(checkpoint: &DcpCheckpoint) -> Result<Vec<Planned<'_>>> {
    checkpoint
        .tensors()
        .map(|(name, record)| {
            let first = record
                .chunks
                .first()
                .ok_or_else(|| Error::DistributedCheckpoint {
                    problem: DcpProblem::Invalid,
                    detail: format!(
                        "{}: tensor {name:?} has no chunks",
                        checkpoint.directory().display()
                    ),
                })?;
            let dtype = checkpoint.chunk(first)?.1.dtype;
            let bytes = TensorSpec::new(name, dtype, record.size.clone()).byte_len()? as u64;
            Ok(Planned {
                name,
                record,
                dtype,
                bytes,
            })
        })
        .collect()
}

/// Whether every chunk spans all but the first dimension: each is then
/// one contiguous byte range of the full tensor.
fn row_sharded(record: &TensorRecord) -> bool {
    record
        .chunks
        .iter()
        .all(|c| c.sizes.get(1..) == record.size.get(1..))
}

fn write_tensor(
    checkpoint: &DcpCheckpoint,
    member: &Planned<'_>,
    writer: &mut StreamingWriter,
) -> Result<()> {
    if row_sharded(member.record) {
        let mut chunks: Vec<&ChunkRecord> = member.record.chunks.iter().collect();
        chunks.sort_by_key(|c| c.offsets.first().copied().unwrap_or(0));
        let mut piece = try_zeroed::<u8>(PIECE.min(member.bytes as usize)).map_err(Error::Io)?;
        for chunk in chunks {
            let (file, info) = checkpoint.chunk(chunk)?;
            let len = info.byte_len() as u64;
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(piece.len() as u64) as usize;
                file.read_range(info, done, &mut piece[..n])?;
                writer.write(member.name, &piece[..n])?;
                done += n as u64;
            }
        }
        return Ok(());
    }
    let item = member.dtype.byte_size().ok_or_else(|| Error::DistributedCheckpoint {
        problem: DcpProblem::Invalid,
        detail: format!(
            "{}: tensor {:?} of sub-byte dtype {} is split along an inner dimension, which cannot be consolidated",
            checkpoint.directory().display(),
            member.name,
            member.dtype
        ),
    })?;
    let mut full = try_zeroed::<u8>(member.bytes as usize).map_err(Error::Io)?;
    for chunk in &member.record.chunks {
        let (file, info) = checkpoint.chunk(chunk)?;
        let mut bytes = try_zeroed::<u8>(info.byte_len()).map_err(Error::Io)?;
        file.read_range(info, 0, &mut bytes)?;
        place_block(
            &bytes,
            &chunk.offsets,
            &chunk.sizes,
            &member.record.size,
            item,
            &mut full,
        );
    }
    writer.write(member.name, &full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offsets: &[usize], sizes: &[usize]) -> ChunkRecord {
        ChunkRecord {
            offsets: offsets.to_vec(),
            sizes: sizes.to_vec(),
            file: String::new(),
            entry: String::new(),
        }
    }

    fn scatter(bytes: &[u8], chunk: &ChunkRecord, size: &[usize], item: usize, full: &mut [u8]) {
        place_block(bytes, &chunk.offsets, &chunk.sizes, size, item, full);
    }

    #[test]
    fn scatter_places_column_chunks_of_a_matrix() {
        // A 3x4 matrix of u8 0..12 split into two 3x2 column chunks.
        let full_expected: Vec<u8> = (0..12).collect();
        let left: Vec<u8> = vec![0, 1, 4, 5, 8, 9];
        let right: Vec<u8> = vec![2, 3, 6, 7, 10, 11];
        let mut full = vec![0u8; 12];
        scatter(&left, &chunk(&[0, 0], &[3, 2]), &[3, 4], 1, &mut full);
        scatter(&right, &chunk(&[0, 2], &[3, 2]), &[3, 4], 1, &mut full);
        assert_eq!(full, full_expected);
    }

    #[test]
    fn scatter_places_a_block_of_a_three_dimensional_tensor() {
        // 2x2x2 of u16, the chunk is [1.., 1.., 0..] of shape 1x1x2.
        let mut full = vec![0u8; 16];
        scatter(
            &[1, 0, 2, 0],
            &chunk(&[1, 1, 0], &[1, 1, 2]),
            &[2, 2, 2],
            2,
            &mut full,
        );
        assert_eq!(&full[12..16], &[1, 0, 2, 0]);
        assert!(full[..12].iter().all(|&b| b == 0));
    }

    #[test]
    fn row_sharding_is_recognised() {
        let mut record = TensorRecord {
            dtype: "float32".into(),
            size: vec![4, 3],
            chunks: vec![chunk(&[0, 0], &[2, 3]), chunk(&[2, 0], &[2, 3])],
        };
        assert!(row_sharded(&record));
        record.chunks = vec![chunk(&[0, 0], &[4, 1]), chunk(&[0, 1], &[4, 2])];
        assert!(!row_sharded(&record));
    }
}
