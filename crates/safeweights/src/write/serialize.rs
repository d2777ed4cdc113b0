//! Writing tensors that are already in memory, to a buffer or a file.

use std::path::Path;

use crate::checksum::{Checksum, Checksums, PLACEHOLDER};
use crate::error::{Error, Result};
use crate::format::{Dtype, Metadata};
use crate::pool::{run_grouped, threads_at_most};
use crate::write::atomic::{write_all_at, write_all_at_interruptible, AtomicFile};
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

/// In-memory serialization above this size copies on several threads.
const PARALLEL_COPY_THRESHOLD: usize = 64 << 20;
const COPY_CHUNK: usize = 8 << 20;

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
    let file_len = usize::try_from(layout.file_len()).map_err(|_| Error::InvalidTensor {
        tensor: String::new(),
        reason: "the file would not fit in memory".into(),
    })?;
    // A zeroed allocation this large comes straight from the OS, untouched.
    let mut out = vec![0u8; file_len];
    serialize_into(&layout, tensors, &mut out)?;
    Ok(out)
}

/// Writes the file that `layout` (planned with [`Layout::plan`] from
/// `tensors`, in the same order) describes into `out`, which must be exactly
/// `layout.file_len()` bytes long.
///
/// Large outputs are copied on several threads: copying into new memory is
/// bound by its page faults, so several threads fault and copy disjoint
/// parts of it.
pub fn serialize_into<S: AsRef<str>>(
    layout: &Layout,
    tensors: &[(S, TensorRef<'_>)],
    out: &mut [u8],
) -> Result<()> {
    if out.len() as u64 != layout.file_len() || out.len() < layout.header.len() {
        return Err(Error::InvalidTensor {
            tensor: String::new(),
            reason: format!(
                "an output buffer of {} bytes for a file of {}",
                out.len(),
                layout.file_len()
            ),
        });
    }
    let (header, mut rest) = out.split_at_mut(layout.header.len());
    header.copy_from_slice(&layout.header);
    let mut pieces: Vec<(&mut [u8], &[u8])> = Vec::new();
    for (info, &i) in layout.tensors.iter().zip(&layout.input_index) {
        let data = tensors
            .get(i)
            .map(|(_, tensor)| tensor.data)
            .filter(|data| data.len() == info.byte_len() && data.len() <= rest.len())
            .ok_or_else(|| Error::InvalidTensor {
                tensor: info.name.clone(),
                reason: "its data does not match the layout it was planned with".into(),
            })?;
        for chunk in data.chunks(COPY_CHUNK) {
            let (target, tail) = std::mem::take(&mut rest).split_at_mut(chunk.len());
            pieces.push((target, chunk));
            rest = tail;
        }
    }
    let data_len = pieces.iter().map(|piece| piece.1.len()).sum();
    let threads = threads_at_most(4);
    let copy = |(target, source): (&mut [u8], &[u8])| {
        target.copy_from_slice(source);
        Ok(())
    };
    if data_len < PARALLEL_COPY_THRESHOLD || threads < 2 {
        return pieces.into_iter().try_for_each(copy);
    }
    run_grouped(pieces, |piece| piece.1.len(), data_len, threads, copy)
}

/// Writes the file sequentially to `writer`, straight from the tensors'
/// buffers: memory stays bounded by what `writer` buffers (a multipart
/// upload's part). Returns the number of bytes written.
pub fn serialize_to_writer<S: AsRef<str>, W: std::io::Write>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    options: &WriteOptions,
    writer: &mut W,
) -> std::io::Result<u64> {
    let layout = plan(tensors, metadata, options).map_err(std::io::Error::other)?;
    writer.write_all(&layout.header)?;
    let mut position = 0u64;
    for (info, &i) in layout.tensors.iter().zip(&layout.input_index) {
        // Alignment may leave zero padding before a tensor.
        let padding = vec![0u8; (info.begin - position) as usize];
        writer.write_all(&padding)?;
        let data = tensors.get(i).map(|(_, t)| t.data).unwrap_or_default();
        for chunk in data.chunks(COPY_CHUNK) {
            writer.write_all(chunk)?;
        }
        position = info.end;
    }
    Ok(layout.header.len() as u64 + position)
}

/// Writes tensors to `path` through a temporary file and a rename.
///
/// The file's blocks are allocated up front and the tensors are then
/// written in file order straight from the caller's buffers, with no
/// intermediate copy.
pub fn serialize_to_file<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    path: impl AsRef<Path>,
    options: &WriteOptions,
) -> Result<()> {
    let path = path.as_ref();
    let layout = plan(tensors, metadata, options).map_err(|e| e.in_file(path))?;
    let file = AtomicFile::create(path)?;
    let io = |e| Error::Io(e).in_file(path);
    file.preallocate(layout.file_len()).map_err(io)?;
    write_all_at(file.file(), &layout.header, 0).map_err(io)?;
    for (info, &i) in layout.tensors.iter().zip(&layout.input_index) {
        let start = layout.data_start() + info.begin;
        write_all_at_interruptible(file.file(), tensors[i].1.data, start).map_err(io)?;
    }
    file.commit(options.sync)
}

/// Bytes written (and hashed) at a time by [`serialize_to_file_with_checksums`]:
/// small enough that the hash reads them back from cache.
const HASH_CHUNK: usize = 4 << 20;

/// Like [`serialize_to_file`], and hashes each tensor's bytes (XXH3-128,
/// see [`crate::checksum`]) as it writes them, storing the digests in the
/// header's metadata under `checksum_key` and returning them.
///
/// The header is planned with fixed-width placeholder digests, the data
/// written and hashed in one pass, and the header with the real digests
/// (of the same length) written last, before the rename.
pub fn serialize_to_file_with_checksums<S: AsRef<str>>(
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    checksum_key: &str,
    path: impl AsRef<Path>,
    options: &WriteOptions,
) -> Result<Checksums> {
    let path = path.as_ref();
    let placeholders: Checksums = tensors
        .iter()
        .map(|(name, _)| (name.as_ref().to_owned(), PLACEHOLDER.to_owned()))
        .collect();
    let with_digests = |digests: &Checksums| {
        let mut all = metadata.cloned().unwrap_or_default();
        let text = serde_json::to_string(digests).expect("a map of strings serializes");
        all.insert(checksum_key.to_owned(), text);
        all
    };
    let planned =
        plan(tensors, Some(&with_digests(&placeholders)), options).map_err(|e| e.in_file(path))?;
    let file = AtomicFile::create(path)?;
    let io = |e| Error::Io(e).in_file(path);
    file.preallocate(planned.file_len()).map_err(io)?;
    let mut digests = Checksums::new();
    for (info, &i) in planned.tensors.iter().zip(&planned.input_index) {
        let mut offset = planned.data_start() + info.begin;
        let mut checksum = Checksum::new();
        for chunk in tensors[i].1.data.chunks(HASH_CHUNK) {
            write_all_at_interruptible(file.file(), chunk, offset).map_err(io)?;
            checksum.update(chunk);
            offset += chunk.len() as u64;
        }
        digests.insert(info.name.clone(), checksum.hex());
    }
    let layout =
        plan(tensors, Some(&with_digests(&digests)), options).map_err(|e| e.in_file(path))?;
    if layout.header.len() != planned.header.len() {
        return Err(Error::InvalidTensor {
            tensor: String::new(),
            reason: "the header with checksums changed length (a bug in safeweights)".into(),
        }
        .in_file(path));
    }
    write_all_at(file.file(), &layout.header, 0).map_err(io)?;
    file.commit(options.sync)?;
    Ok(digests)
}
