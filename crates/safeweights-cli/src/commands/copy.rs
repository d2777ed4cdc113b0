//! Streaming tensors from a checkpoint into new files with bounded memory.

use std::path::Path;

use indicatif::ProgressBar;
use safeweights::write::{StreamingWriter, TensorSpec, WriteOptions};
use safeweights::Metadata;

use crate::exit::CliResult;
use crate::parallel::PIECE_BYTES;
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
) -> CliResult<()> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(e, name)| TensorSpec::new(name.clone(), e.info.dtype, e.info.shape.clone()))
        .collect();
    let mut writer = StreamingWriter::create(path, &specs, metadata, &WriteOptions::default())?;
    for (entry, name) in tensors {
        let len = entry.info.end - entry.info.begin;
        let mut offset = 0;
        while offset < len {
            let step = PIECE_BYTES.min(len - offset);
            writer.write(name, &checkpoint.read(*entry, offset, step)?)?;
            bar.inc(step);
            offset += step;
        }
    }
    writer.finish()?;
    Ok(())
}
