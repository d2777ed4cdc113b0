//! Input bytes: a read-only memory map of a file, or an owned buffer.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use safeweights::read::bus_error::{register_copy_source, MappingRegistration};

use crate::error::{Error, Result};

/// The bytes of an input, mapped or owned.
#[derive(Debug)]
pub enum Source {
    /// The map, registered so that a truncation under it is reported
    /// naming the file (`safeweights::read::bus_error`), and, under
    /// `bus_error::guard`, as an error: its bytes are only copied out
    /// (parsed, converted, checked), never handed out as lasting views.
    Mapped {
        /// Keeps the map registered while it lives.
        _registration: MappingRegistration,
        /// The read-only map.
        map: Mmap,
    },
    /// Bytes held in memory (an empty file, or a caller's buffer).
    Owned(Vec<u8>),
}

impl Source {
    /// Maps a file read-only (empty files are read, as they cannot be mapped).
    pub fn open(path: &Path) -> Result<Source> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Ok(Source::Owned(Vec::new()));
        }
        let map = map_file(&file).map_err(|e| Error::io(path, e))?;
        let registration = register_copy_source(map.as_ptr(), map.len(), path);
        Ok(Source::Mapped {
            _registration: registration,
            map,
        })
    }

    /// The bytes, whole.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped { map, .. } => map,
            Source::Owned(v) => v,
        }
    }
}

/// Runs `read` over mapped inputs so that a file truncated under it is an
/// error naming the file (`Error::Io`, kind `UnexpectedEof`, as a
/// positioned read reports it), never a `SIGBUS` that ends the process:
/// every copy out of an input map in this crate runs under it, and so does
/// the converter (`safeweights-convert`).
pub fn guarded<T>(read: impl FnOnce() -> Result<T>) -> Result<T> {
    safeweights::read::bus_error::guard(read).unwrap_or_else(|fault| {
        let path = fault.path.clone();
        Err(Error::io(path, fault.into()))
    })
}

/// Maps `file` read-only.
///
/// # Safety
///
/// This function is safe to call; the `unsafe` inside is the one place the
/// crate trusts something it cannot check. `Mmap::map` makes a read-only
/// *shared* mapping (`MAP_SHARED`): the bytes we see are the file's, so
/// another process that writes the file changes them under a `&[u8]` that
/// Rust assumes immutable, and one that truncates it turns reads of the
/// lost pages into `SIGBUS`. The mapping is therefore sound only while
/// nobody modifies the file, the same assumption the core library's
/// `map_file` makes (its writers, and ours, replace files by renaming a
/// new one over them, never by writing in place). Callers that cannot rule
/// out a concurrent writer should use the `from_bytes` constructors.
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: a read-only shared mapping, sound while the file is not
    // modified or truncated, as the function's safety section explains.
    unsafe { Mmap::map(file) }
}
