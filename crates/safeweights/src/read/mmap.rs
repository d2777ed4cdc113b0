//! The one place that memory-maps a file.

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

use crate::read::bus_error::{register_mapping, MappingRegistration};

/// A read-only map of a file, registered for the bus-error message (see
/// [`bus_error`](crate::read::bus_error)) for as long as it lives.
#[derive(Debug)]
pub(crate) struct FileMap {
    // Declared first: unregistered before the map goes away.
    _registration: MappingRegistration,
    map: Mmap,
    /// The mapped file, to check its length before a copy (`covers`).
    file: File,
}

impl FileMap {
    /// Whether the file still holds the first `end` bytes of the map.
    /// Copy paths check this before copying out of the map, so that a file
    /// truncated under it is an error rather than a bus error in the copy.
    pub(crate) fn covers(&self, end: u64) -> io::Result<bool> {
        Ok(self.file.metadata()?.len() >= end)
    }
}

impl FileMap {
    /// `madvise` on bytes `[start, start + len)` of the map; a hint.
    #[cfg(unix)]
    pub(crate) fn advise_range(
        &self,
        advice: memmap2::Advice,
        start: usize,
        len: usize,
    ) -> io::Result<()> {
        let end = start.saturating_add(len).min(self.map.len());
        if start >= end {
            return Ok(());
        }
        self.map.advise_range(advice, start, end - start)
    }

    /// Hands the map's pages before byte `end` back to the kernel
    /// (`MADV_DONTNEED`): they leave this process's memory and stay in the
    /// page cache, and a later read maps them again from the file. Used
    /// while a large header is parsed (see
    /// [`Header::parse_file_releasing`](crate::Header::parse_file_releasing)).
    /// Only a hint: a refusal changes nothing but memory use.
    pub(crate) fn release_before(&self, end: usize) {
        let end = page_floor(end.min(self.map.len()));
        if end == 0 {
            return;
        }
        // SAFETY: the map is shared and read-only, so it holds no private
        // changes for DONTNEED to discard: the pages read afterwards are
        // the file's, the same bytes as before (the file is not modified
        // while mapped, see `map_file`).
        #[cfg(target_os = "linux")]
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, end)
        };
    }
}

/// `len` rounded down to a whole number of memory pages.
pub fn page_floor(len: usize) -> usize {
    // SAFETY: sysconf has no preconditions.
    #[cfg(target_os = "linux")]
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    #[cfg(not(target_os = "linux"))]
    let page = 4096;
    len & !(page.max(1) - 1)
}

impl Deref for FileMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// Maps `file` read-only.
///
/// # Safety
///
/// The caller guarantees that nobody truncates or writes to the file while
/// the map is alive: a shrinking file turns reads of the lost pages into
/// `SIGBUS`, and writes change bytes that safe code assumes are immutable.
/// safeweights' own writers never modify a file in place (they write a
/// temporary file and rename it over the destination), so this holds for
/// files it writes; for files shared with other writers or on network
/// filesystems, use the pread backend instead.
pub(crate) unsafe fn map_file(file: &File, path: &Path) -> io::Result<FileMap> {
    // SAFETY: forwarded to the caller, see above.
    let map = unsafe { Mmap::map(file)? };
    Ok(FileMap {
        _registration: register_mapping(map.as_ptr(), map.len(), path),
        map,
        file: file.try_clone()?,
    })
}
