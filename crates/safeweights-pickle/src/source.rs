//! Input bytes: a read-only memory map of a file, or an owned buffer.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;
use safeweights::read::bus_error::{register_mapping, MappingRegistration};

use crate::error::{Error, Result};

/// The bytes of an input, mapped or owned.
#[derive(Debug)]
pub(crate) enum Source {
    /// The map, registered so that a truncation under it is reported
    /// naming the file (`safeweights::read::bus_error`).
    Mapped {
        _registration: MappingRegistration,
        map: Mmap,
    },
    Owned(Vec<u8>),
}

impl Source {
    /// Maps a file read-only (empty files are read, as they cannot be mapped).
    pub(crate) fn open(path: &Path) -> Result<Source> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Ok(Source::Owned(Vec::new()));
        }
        let map = map_file(&file).map_err(|e| Error::io(path, e))?;
        let registration = register_mapping(map.as_ptr(), map.len(), path);
        Ok(Source::Mapped {
            _registration: registration,
            map,
        })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Source::Mapped { map, .. } => map,
            Source::Owned(v) => v,
        }
    }
}

/// Maps `file` read-only.
///
/// # Safety
///
/// This function is safe to call; the `unsafe` inside is the one place the
/// crate trusts something it cannot check. A memory map is only sound while
/// no other process truncates or rewrites the file: truncation turns reads
/// into `SIGBUS`, rewriting changes bytes under our feet. Parsing never
/// assumes bytes stay put between two reads beyond what bounds checks
/// cover, so a concurrent writer can corrupt results but not memory
/// safety of our own code; truncation remains the caller's responsibility,
/// as with every memory-mapping reader. Callers that cannot rule it out
/// should use the `from_bytes` constructors instead.
fn map_file(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: read-only private mapping; see the function's safety section.
    unsafe { Mmap::map(file) }
}
