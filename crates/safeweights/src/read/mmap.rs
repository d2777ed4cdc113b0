//! The one place that memory-maps a file.

use std::fs::File;
use std::io;

use memmap2::Mmap;

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
pub(crate) unsafe fn map_file(file: &File) -> io::Result<Mmap> {
    // SAFETY: forwarded to the caller, see above.
    unsafe { Mmap::map(file) }
}
