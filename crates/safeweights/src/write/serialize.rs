//! Writing tensors that are already in memory, to a buffer or a file.

use std::path::Path;
use std::thread;

use crate::error::{Error, Result};
use crate::format::{Dtype, Metadata};
use crate::write::atomic::{write_all_at, AtomicFile};
use crate::write::layout::{Layout, TensorSpec, WriteOptions};

/// A tensor in memory, ready to be written.
#[derive(Debug, Clone)]
pub struct TensorRef<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Row-major, little-endian bytes; the length must match shape and dtype.
    pub data: &'a [u8],
}

impl<'a> TensorRef<'a> {
    /// Creates a tensor reference.
    pub fn new(dtype: Dtype, shape: Vec<usize>, data: &'a [u8]) -> Self {
        TensorRef { dtype, shape, data }
    }
}

/// Writes above this size go through several threads.
const PARALLEL_WRITE_THRESHOLD: usize = 64 << 20;
const WRITE_CHUNK: usize = 8 << 20;

fn plan<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    options: &WriteOptions,
) -> Result<Layout> {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, t)| TensorSpec::new(name.as_ref(), t.dtype, t.shape.clone()))
        .collect();
    for (spec, (_, tensor)) in specs.iter().zip(tensors) {
        let expected = spec.byte_len()?;
        if expected != tensor.data.len() {
            return Err(Error::InvalidTensor {
                tensor: spec.name.clone(),
                reason: format!(
                    "shape {:?} of {} needs {expected} bytes but {} were given",
                    spec.shape,
                    spec.dtype,
                    tensor.data.len()
                ),
            });
        }
    }
    Layout::plan(&specs, metadata, options)
}

/// Serializes tensors into a new buffer, byte-identical to the reference's
/// `serialize` for the same tensors and metadata.
pub fn serialize<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    options: &WriteOptions,
) -> Result<Vec<u8>> {
    let layout = plan(tensors, metadata, options)?;
    let mut out = Vec::with_capacity(layout.file_len() as usize);
    out.extend_from_slice(&layout.header);
    for &i in &layout.input_index {
        out.extend_from_slice(tensors[i].1.data);
    }
    Ok(out)
}

/// Writes tensors to `path` through a temporary file and a rename. Large
/// files are written by several threads at precomputed offsets.
pub fn serialize_to_file<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    path: impl AsRef<Path>,
    options: &WriteOptions,
) -> Result<()> {
    let path = path.as_ref();
    let layout = plan(tensors, metadata, options).map_err(|e| e.in_file(path))?;
    let file = AtomicFile::create(path)?;
    let mut pieces: Vec<(u64, &[u8])> = vec![(0, &layout.header)];
    for (info, &i) in layout.tensors.iter().zip(&layout.input_index) {
        let start = layout.data_start() + info.begin;
        for (k, chunk) in tensors[i].1.data.chunks(WRITE_CHUNK).enumerate() {
            pieces.push((start + (k * WRITE_CHUNK) as u64, chunk));
        }
    }
    write_pieces(&file, layout.file_len(), &pieces).map_err(|e| Error::Io(e).in_file(path))?;
    file.commit(options.sync)
}

fn write_pieces(file: &AtomicFile, file_len: u64, pieces: &[(u64, &[u8])]) -> std::io::Result<()> {
    let handle = file.file();
    let total: usize = pieces.iter().map(|(_, p)| p.len()).sum();
    let threads = thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if total < PARALLEL_WRITE_THRESHOLD || threads < 2 {
        return pieces
            .iter()
            .try_for_each(|(offset, piece)| write_all_at(handle, piece, *offset));
    }
    // Setting the length first lets threads write anywhere without
    // extending the file concurrently.
    handle.set_len(file_len)?;
    let per_thread = total.div_ceil(threads);
    let mut groups: Vec<&[(u64, &[u8])]> = Vec::with_capacity(threads);
    let (mut start, mut filled) = (0, 0);
    for (i, (_, piece)) in pieces.iter().enumerate() {
        filled += piece.len();
        if filled >= per_thread {
            groups.push(&pieces[start..=i]);
            start = i + 1;
            filled = 0;
        }
    }
    groups.push(&pieces[start..]);
    thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                scope.spawn(move || {
                    group
                        .iter()
                        .try_for_each(|(offset, piece)| write_all_at(handle, piece, *offset))
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    })
}
