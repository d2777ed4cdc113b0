//! Streaming tensors from a checkpoint into new files with bounded memory.

use std::path::Path;

use indicatif::ProgressBar;
use safeweights::write::{StreamingWriter, TensorSpec, WriteOptions};
use safeweights::Metadata;

use crate::exit::CliResult;
use crate::source::{Checkpoint, Entry};

/// Writes `tensors` (each an entry and its name in the output) to `path`
/// exactly as `safeweights::write::serialize_to_file` would, pushing the
/// bytes through a [`StreamingWriter`] one piece at a time.
pub fn write_file(
    checkpoint: &Checkpoint,
    tensors: &[(Entry<'_>, String)],
    metadata: Option<&Metadata>,
    path: &Path,
    bar: &ProgressBar,
    sync: bool,
) -> CliResult<()> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(e, name)| TensorSpec::new(name.clone(), e.info.dtype, e.info.shape.to_vec()))
        .collect();
    let options = WriteOptions {
        sync,
        ..WriteOptions::default()
    };
    let mut writer = StreamingWriter::create(path, &specs, metadata, &options)?;
    for (entry, name) in tensors {
        checkpoint.for_each_piece(*entry, |piece| {
            writer.write(name, piece)?;
            bar.inc(piece.len() as u64);
            Ok(())
        })?;
    }
    writer.finish()?;
    Ok(())
}

/// Writes `tensors` and the checkpoint's metadata to the one file `path`,
/// as [`write_file`] does, behind a progress bar labelled `label`.
pub fn write_one_file(
    checkpoint: &Checkpoint,
    tensors: &[(Entry<'_>, String)],
    path: &Path,
    label: &str,
    sync: bool,
) -> CliResult<()> {
    let total = tensors.iter().map(|(e, _)| e.info.end - e.info.begin).sum();
    let bar = checkpoint.progress(total, label);
    write_file(checkpoint, tensors, checkpoint.metadata(), path, &bar, sync)?;
    bar.finish_and_clear();
    Ok(())
}
