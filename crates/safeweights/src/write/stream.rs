//! Writing a file whose tensors arrive piece by piece.
//!
//! Names, dtypes and shapes are declared up front, which fixes the layout
//! and the header; then each tensor's bytes are pushed in order, in chunks
//! of any size, with tensors in any order. Memory stays bounded by the
//! header, so files larger than RAM can be written.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{Metadata, TensorInfo};
use crate::write::atomic::{write_all_at, write_all_at_interruptible, AtomicFile};
use crate::write::layout::{Layout, TensorSpec, WriteOptions};

/// A file being written tensor by tensor. Nothing reaches the destination
/// until [`finish`](StreamingWriter::finish) succeeds; dropping the writer
/// deletes the temporary file.
#[derive(Debug)]
pub struct StreamingWriter {
    file: AtomicFile,
    data_start: u64,
    tensors: Vec<TensorInfo>,
    written: Vec<u64>,
    index: HashMap<String, usize>,
    sync: bool,
}

impl StreamingWriter {
    /// Plans the file and writes its header to a temporary file beside `path`.
    pub fn create(
        path: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: Option<&Metadata>,
        options: &WriteOptions,
    ) -> Result<Self> {
        let path = path.as_ref();
        let layout = Layout::plan(specs, metadata, options).map_err(|e| e.in_file(path))?;
        let file = AtomicFile::create(path)?;
        let io = |e| Error::Io(e).in_file(path);
        write_all_at(file.file(), &layout.header, 0).map_err(io)?;
        file.preallocate(layout.file_len()).map_err(io)?;
        let index = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(StreamingWriter {
            file,
            data_start: layout.data_start(),
            written: vec![0; layout.tensors.len()],
            tensors: layout.tensors,
            index,
            sync: options.sync,
        })
    }

    /// The planned tensors in file order, with their offsets.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// Appends the next `chunk` of tensor `name`'s bytes.
    pub fn write(&mut self, name: &str, chunk: &[u8]) -> Result<()> {
        let &i = self.index.get(name).ok_or_else(|| Error::TensorNotFound {
            name: name.to_owned(),
        })?;
        let info = &self.tensors[i];
        let done = self.written[i];
        let len = info.end - info.begin;
        if done + chunk.len() as u64 > len {
            return Err(Error::InvalidTensor {
                tensor: name.to_owned(),
                reason: format!(
                    "{} bytes pushed but the tensor holds only {len}",
                    done + chunk.len() as u64
                ),
            });
        }
        let offset = self.data_start + info.begin + done;
        write_all_at_interruptible(self.file.file(), chunk, offset)
            .map_err(|e| Error::Io(e).in_file(self.file.destination()))?;
        self.written[i] = done + chunk.len() as u64;
        Ok(())
    }

    /// Checks that every tensor is complete, then renames the file into
    /// place. An incomplete tensor is an error and the destination is left
    /// as it was.
    pub fn finish(self) -> Result<()> {
        for (info, &done) in self.tensors.iter().zip(&self.written) {
            let len = info.end - info.begin;
            if done != len {
                return Err(Error::InvalidTensor {
                    tensor: info.name.clone(),
                    reason: format!("incomplete: {done} of {len} bytes were written"),
                }
                .in_file(self.file.destination()));
            }
        }
        self.file.commit(self.sync)
    }
}
