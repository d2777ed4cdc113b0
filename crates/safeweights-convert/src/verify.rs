//! Re-reading a written output with the core safetensors reader and
//! comparing every tensor with the input, one bounded chunk at a time.

use std::path::{Path, PathBuf};

use safeweights::read::{OpenOptions, SafetensorsFile};
use safeweights::shards::{ShardIndex, ShardedCheckpoint, CHECKPOINT_ID_KEY};
use safeweights::Metadata;

use crate::cast;
use crate::digest::Digest;
use crate::input::Input;
use crate::output::{Item, Target};
use crate::Reporter;
use safeweights_pickle::Dtype;
use safeweights_pickle::{Error, Result};

/// Finds the written output for a path given to `convert`: the file
/// itself, else the single file or index that path stands for.
pub(crate) fn find_output(output: &Path) -> Result<PathBuf> {
    let target = Target::resolve(output);
    [
        output.to_owned(),
        target.single().to_owned(),
        target.index(),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .ok_or_else(|| {
        Error::io(
            output,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no converted output found"),
        )
    })
}

/// Index files are small; a larger file is never parsed as one.
const MAX_INDEX_LEN: u64 = 64 << 20;

/// Opens an output file: one safetensors file, or an index with its shards.
fn open(main: &Path) -> Result<ShardedCheckpoint> {
    let failed = |e: safeweights::Error| Error::Verify {
        path: main.to_owned(),
        message: format!("the output cannot be read back: {e}"),
    };
    let single_error = match SafetensorsFile::open(main) {
        Ok(file) => return ShardedCheckpoint::single(file).map_err(failed),
        Err(e) => e,
    };
    let len = std::fs::metadata(main)
        .map_err(|e| Error::io(main, e))?
        .len();
    if len <= MAX_INDEX_LEN && ShardIndex::read(main).is_ok() {
        ShardedCheckpoint::open(main, &OpenOptions::default()).map_err(failed)
    } else {
        Err(failed(single_error))
    }
}

/// Checks that the output at `main` holds exactly the input's tensors:
/// names, dtypes (after the cast), shapes and bytes, plus the metadata.
pub(crate) fn verify(
    input: &Input,
    cast_to: Option<Dtype>,
    metadata: &Metadata,
    main: &Path,
    progress: &mut Reporter<'_>,
) -> Result<()> {
    let out = open(main)?;
    let expected: usize = input.parts.iter().map(|p| p.tensors.len()).sum();
    check_listing(&out, expected, metadata, main)?;
    for part in &input.parts {
        for i in 0..part.tensors.len() {
            compare_tensor(part, i, cast_to, &out, progress)
                .map_err(|(path, message)| fail(&path, message))?;
        }
    }
    Ok(())
}

/// Bytes hashed between two progress reports when reading an output back.
const PIECE: usize = 16 << 20;

/// Checks the output at `main` against what the write pass recorded: the
/// count, names, dtypes and shapes of the tensors, the metadata, and each
/// tensor's bytes, read back once and hashed, against the digest of the
/// bytes written (hashed from the source as it was read and cast). The
/// source is not read a second time: for models larger than the page
/// cache, that second read went back to the disk.
pub(crate) fn verify_written(
    items: &[Item],
    digests: &[u128],
    metadata: &Metadata,
    main: &Path,
    progress: &mut Reporter<'_>,
) -> Result<()> {
    let out = open(main)?;
    check_listing(&out, items.len(), metadata, main)?;
    for (item, &written) in items.iter().zip(digests) {
        let name = &item.name;
        let (file, info) = out
            .get(name)
            .map_err(|_| fail(main, format!("tensor `{name}` is missing")))?;
        let differs = |what: String| fail(file.path(), format!("tensor `{name}`: {what}"));
        if info.dtype != item.dtype {
            return Err(differs(format!(
                "dtype {} instead of {}",
                info.dtype, item.dtype
            )));
        }
        if info.shape != &item.shape[..] {
            return Err(differs(format!(
                "shape {:?} instead of {:?}",
                info.shape, item.shape
            )));
        }
        let got = file
            .bytes_of(info)
            .map_err(|e| differs(format!("cannot be read back: {e}")))?;
        let mut digest = Digest::new();
        for piece in got.chunks(PIECE) {
            digest.update(piece);
            progress.advance(name, piece.len() as u64);
        }
        if digest.finish() != written {
            return Err(differs(
                "its bytes differ from those written (their digests differ)".into(),
            ));
        }
    }
    Ok(())
}

fn fail(path: &Path, message: String) -> Error {
    Error::Verify {
        path: path.to_owned(),
        message,
    }
}

/// The number of tensors and every shard's metadata.
fn check_listing(
    out: &ShardedCheckpoint,
    expected: usize,
    metadata: &Metadata,
    main: &Path,
) -> Result<()> {
    if out.names().len() != expected {
        return Err(fail(
            main,
            format!(
                "it holds {} tensors but the input has {expected}",
                out.names().len()
            ),
        ));
    }
    for shard in out.shards() {
        // Shards of a sharded output also carry its checkpoint id.
        let mut stored = shard.header().metadata().cloned().unwrap_or_default();
        if out.shards().len() > 1 {
            stored.remove(CHECKPOINT_ID_KEY);
        }
        if stored != *metadata {
            return Err(fail(shard.path(), "its metadata differs".into()));
        }
    }
    Ok(())
}

/// A mismatch: the output file and what differs.
type Mismatch = (PathBuf, String);

fn compare_tensor(
    part: &crate::input::Part,
    i: usize,
    cast_to: Option<Dtype>,
    out: &ShardedCheckpoint,
    progress: &mut Reporter<'_>,
) -> Result<(), Mismatch> {
    let tensor = &part.tensors[i];
    let name = &tensor.name;
    let (file, info) = out
        .get(name)
        .map_err(|_| (part.path.clone(), format!("tensor `{name}` is missing")))?;
    let differs = |what: String| (file.path().to_owned(), format!("tensor `{name}`: {what}"));
    let dtype = cast::output_dtype(tensor.dtype, cast_to);
    if info.dtype != dtype {
        return Err(differs(format!("dtype {} instead of {dtype}", info.dtype)));
    }
    if !info
        .shape
        .iter()
        .map(|&d| d as u64)
        .eq(tensor.shape.iter().copied())
    {
        return Err(differs(format!(
            "shape {:?} instead of {:?}",
            info.shape, tensor.shape
        )));
    }
    let got = file
        .bytes_of(info)
        .map_err(|e| differs(format!("cannot be read back: {e}")))?;
    let want = part
        .read(i)
        .map_err(|e| differs(format!("the input cannot be read again: {e}")))?;
    let mut pos = 0usize;
    let compared = cast::for_each_chunk(tensor.dtype, dtype, &want, |chunk| {
        let end = pos + chunk.len();
        let have = got.get(pos..end).unwrap_or_default();
        if have != chunk {
            let first = have.iter().zip(chunk).position(|(a, b)| a != b);
            let at = pos + first.unwrap_or(have.len());
            return Err(Error::usage(format!(
                "bytes differ from the input at byte {at}"
            )));
        }
        pos = end;
        progress.advance(name, chunk.len() as u64);
        Ok(())
    });
    compared.map_err(|e| differs(e.to_string()))?;
    if pos != got.len() {
        return Err(differs(format!("{} bytes instead of {pos}", got.len())));
    }
    Ok(())
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
