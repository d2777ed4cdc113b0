//! A GGUF file on disk, memory-mapped so that tensors are read zero-copy.
//!
//! The only `unsafe` of this crate is the mapping in [`map_file`].

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::read::Gguf;

/// An opened GGUF file. [`GgufFile::parse`] validates it and borrows from it.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Mapped(Mmap),
    /// Empty files cannot be mapped.
    Empty,
}

impl GgufFile {
    /// Maps `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let io = |e: std::io::Error| Error::Io {
            path: path.display().to_string(),
            kind: e.kind(),
            message: e.to_string(),
        };
        let file = File::open(&path).map_err(io)?;
        let bytes = if file.metadata().map_err(io)?.len() == 0 {
            Bytes::Empty
        } else {
            Bytes::Mapped(map_file(&file).map_err(io)?)
        };
        Ok(GgufFile { path, bytes })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(map) => map,
            Bytes::Empty => &[],
        }
    }

    /// Parses and validates the file (see [`Gguf::parse`]).
    pub fn parse(&self) -> Result<Gguf<'_>> {
        Gguf::parse(self.bytes())
    }
}

/// Maps `file` read-only.
///
/// # Safety
///
/// This function is safe to call; the `unsafe` inside is the one place the
/// crate trusts something it cannot check. `Mmap::map` makes a read-only
/// shared mapping: another process that writes the file changes bytes
/// under a `&[u8]` that Rust assumes immutable, and one that truncates it
/// turns reads of the lost pages into `SIGBUS`. The mapping is sound only
/// while nobody modifies the file, the assumption the core library and the
/// pickle crate make too (their writers replace files by renaming, never
/// write in place). Callers that cannot rule out a concurrent writer read
/// the file into memory and use [`Gguf::parse`] on the bytes instead.
#[allow(unsafe_code)]
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: a read-only shared mapping, sound while the file is not
    // modified or truncated, as the function's safety section explains.
    unsafe { Mmap::map(file) }
}
