//! Memory that tensors handed to Python live in.
//!
//! A [`Storage`] owns (or keeps alive) one region of memory: a private
//! copy-on-write map of a file, a buffer we allocated, or a Python object's
//! buffer. Python wraps it in a `ctypes` array and builds numpy arrays or
//! torch tensors on top with `np.frombuffer` / `torch.frombuffer`; those keep
//! the ctypes array, and through it the `Storage`, alive. So tensors stay
//! valid after the `safe_open` handle that produced them is closed.

use std::fs::File;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;

use memmap2::{Advice, MmapMut, MmapOptions};
use pyo3::prelude::*;
use safeweights::read::bus_error::{register_mapping, MappingRegistration};
use safeweights::read::try_zeroed;

/// A private map of a file, registered so that a truncation of the file
/// under a zero-copy tensor ends the process with a message naming the
/// file instead of a bare "Bus error" (`safeweights::read::bus_error`).
#[derive(Debug)]
pub struct FileMap {
    // Declared first: unregistered before the map goes away.
    _registration: MappingRegistration,
    map: MmapMut,
    /// The file, for errors.
    path: std::path::PathBuf,
    /// The mapped file, to compare its length with the map's before a copy.
    file: File,
}

impl Deref for FileMap {
    type Target = MmapMut;

    fn deref(&self) -> &MmapMut {
        &self.map
    }
}

/// The memory behind a [`Storage`].
#[derive(Debug)]
pub enum Backing {
    /// A `MAP_PRIVATE` map of a whole file: reads come from the page cache
    /// without copying, and a write from Python copies the touched page
    /// instead of reaching the file.
    Map(FileMap),
    /// Memory we allocated (as `u64`s, so every dtype is aligned).
    Owned(Vec<u64>, usize),
    /// Another Python object's buffer (`bytes`, `bytearray`, ...), kept
    /// alive by holding a reference to an object that pins it.
    Borrowed {
        /// Keeps the memory alive (and, for `bytearray`, un-resizable).
        owner: Py<PyAny>,
        /// Start of the memory.
        address: usize,
        /// Length in bytes.
        len: usize,
        /// False for immutable objects such as `bytes`.
        writable: bool,
    },
}

impl Backing {
    /// Maps `file`, opened from `path`, privately (copy-on-write).
    pub fn map_private(file: &File, path: &Path) -> std::io::Result<Backing> {
        // SAFETY: the map is private, so our writes never reach the file.
        // Someone else truncating the file while it is mapped would turn
        // reads into SIGBUS; safeweights' writers replace files by rename,
        // which leaves existing maps intact (the same contract as the
        // reference and as `safeweights::read::SafetensorsFile`).
        let map = unsafe { MmapOptions::new().map_copy(file)? };
        Ok(Backing::Map(FileMap {
            _registration: register_mapping(map.as_ptr(), map.len(), path),
            map,
            path: path.to_owned(),
            file: file.try_clone()?,
        }))
    }

    /// A zero-filled owned buffer of `len` bytes; an `OutOfMemory` error
    /// (Python's `MemoryError`) when it cannot be had, never an abort.
    pub fn zeroed(len: usize) -> std::io::Result<Backing> {
        Ok(Backing::Owned(try_zeroed(len.div_ceil(8))?, len))
    }

    /// An owned copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> std::io::Result<Backing> {
        let mut backing = Backing::zeroed(bytes.len())?;
        backing.as_mut_slice().copy_from_slice(bytes);
        Ok(backing)
    }

    /// Hands the pages of a file map before byte `end` back to the kernel
    /// (`MADV_DONTNEED`), while a large header is parsed from them (see
    /// `Header::parse_file_releasing`); nothing for other memory. Only a
    /// hint: a refusal changes nothing but memory use.
    pub fn release_before(&self, end: usize) {
        let Backing::Map(map) = self else {
            return;
        };
        let end = safeweights::read::page_floor(end.min(map.len()));
        if end == 0 {
            return;
        }
        // SAFETY: DONTNEED discards a private map's changes, and there are
        // none yet: this runs while the header is parsed, before any
        // tensor (the only thing Python could write through) is handed
        // out. The pages read afterwards are the file's, the same bytes.
        #[cfg(target_os = "linux")]
        let _ = unsafe {
            map.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, end)
        };
    }

    /// The memory as bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Backing::Map(map) => map,
            Backing::Owned(words, len) => &bytemuck_bytes(words)[..*len],
            Backing::Borrowed { address, len, .. } => {
                if *len == 0 {
                    return &[];
                }
                // SAFETY: `owner` pins this memory for as long as `self` lives.
                unsafe { std::slice::from_raw_parts(*address as *const u8, *len) }
            }
        }
    }

    /// The memory as mutable bytes: owned buffers only (they are filled
    /// right after allocation, before Python sees them); empty otherwise.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Backing::Owned(words, len) => {
                let len = *len;
                // SAFETY: a u64 slice reinterpreted as bytes, same length in bytes.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8)
                };
                &mut bytes[..len]
            }
            Backing::Map(_) | Backing::Borrowed { .. } => &mut [],
        }
    }

    /// Checks that bytes `[offset, offset + len)` of a file map can still
    /// be read: that the file is not shorter now than their end. Copy paths
    /// call it before copying out of a map, so that a file truncated under
    /// the map is an `UnexpectedEof` error naming the file, not a bus error
    /// in the copy (a truncation during the copy itself still ends the
    /// process, with the bus-error message naming the file). Memory that is
    /// not a file map passes.
    pub fn check_readable(&self, offset: usize, len: usize) -> Result<(), safeweights::Error> {
        let Backing::Map(map) = self else {
            return Ok(());
        };
        let end = offset.saturating_add(len).min(map.len()) as u64;
        let error = match map.file.metadata() {
            Ok(now) if now.len() >= end => return Ok(()),
            Ok(now) => std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the file became shorter while it was open ({} bytes now, {end} needed)",
                    now.len()
                ),
            ),
            Err(error) => error,
        };
        Err(safeweights::Error::Io(error).in_file(&map.path))
    }

    /// Whether Python may write into this memory.
    pub fn writable(&self) -> bool {
        match self {
            Backing::Map(_) | Backing::Owned(..) => true,
            Backing::Borrowed { writable, .. } => *writable,
        }
    }
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: any u64 slice can be viewed as bytes of eight times its length.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}

/// A region of memory that tensors handed to Python point into.
///
/// Python only sees its address, length and writability; the wrappers in
/// `safeweights._frameworks` build a `ctypes` array over it that holds a
/// reference to this object.
#[pyclass(module = "safeweights._safeweights_rust", name = "_Storage", frozen)]
#[derive(Debug)]
pub struct Storage {
    /// The memory, shared with the reader that produced it.
    pub backing: Arc<Backing>,
}

impl Storage {
    /// A storage handing `backing` to Python.
    pub fn new(backing: Arc<Backing>) -> Self {
        Storage { backing }
    }
}

impl Storage {
    fn advise(&self, py: Python<'_>, advice: Advice, offset: usize, len: usize) {
        if let Backing::Map(map) = self.backing.as_ref() {
            let end = offset.saturating_add(len).min(map.len());
            if offset < end {
                // Only a hint: an error (an old kernel, say) is ignored.
                py.detach(|| {
                    let _ = map.advise_range(advice, offset, end - offset);
                });
            }
        }
    }
}

#[pymethods]
impl Storage {
    /// Address of the first byte.
    #[getter]
    fn address(&self) -> usize {
        self.backing.as_slice().as_ptr() as usize
    }

    /// Length in bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.backing.as_slice().len()
    }

    /// Whether the memory may be written (false for `bytes` inputs).
    #[getter]
    fn writable(&self) -> bool {
        self.backing.writable()
    }

    /// Asks the kernel to start reading bytes `[offset, offset + len)` of a
    /// file map into the page cache (`MADV_WILLNEED`), so that a copy made
    /// soon after finds them there. A hint: nothing happens for memory that
    /// is not a file map, and a refused advice changes nothing but speed.
    fn prefetch(&self, py: Python<'_>, offset: usize, len: usize) {
        self.advise(py, Advice::WillNeed, offset, len);
    }

    /// Reads bytes `[offset, offset + len)` of a file map into the page
    /// cache, if they are not there yet, and maps them (`MADV_POPULATE_READ`,
    /// Linux 5.14+): one call instead of a page fault per 4 KiB page when
    /// they are copied next (a hint: a kernel without the advice, or memory
    /// that is not a file map, changes nothing but speed). Copy paths call
    /// it before copying out of a map: if the file is now shorter than the
    /// bytes' end, it raises a `SafetensorError` (an `OSError` with errno
    /// `EIO`) naming the file, instead of a bus error in the copy.
    fn populate(&self, py: Python<'_>, offset: usize, len: usize) -> PyResult<()> {
        self.check_readable(offset, len)?;
        #[cfg(target_os = "linux")]
        self.advise(py, Advice::PopulateRead, offset, len);
        #[cfg(not(target_os = "linux"))]
        let _ = py;
        Ok(())
    }

    /// Raises a `SafetensorError` (an `OSError` with errno `EIO`) naming the
    /// file if it is now shorter than the end of bytes `[offset, offset +
    /// len)` of this file map: what copy paths call before copying out of a
    /// map, where `populate`'s read-ahead is not wanted.
    fn check_readable(&self, offset: usize, len: usize) -> PyResult<()> {
        self.backing
            .check_readable(offset, len)
            .map_err(|error| crate::errors::CoreError::Read(error).into())
    }

    fn __repr__(&self) -> String {
        let kind = match self.backing.as_ref() {
            Backing::Map(_) => "private file map",
            Backing::Owned(..) => "owned",
            Backing::Borrowed { .. } => "borrowed",
        };
        format!("<safeweights storage: {} bytes, {kind}>", self.nbytes())
    }
}
