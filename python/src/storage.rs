//! Memory that tensors handed to Python live in.
//!
//! A [`Storage`] owns (or keeps alive) one region of memory: a private
//! copy-on-write map of a file, a buffer we allocated, or a Python object's
//! buffer. Python wraps it in a `ctypes` array and builds numpy arrays or
//! torch tensors on top with `np.frombuffer` / `torch.frombuffer`; those keep
//! the ctypes array, and through it the `Storage`, alive. So tensors stay
//! valid after the `safe_open` handle that produced them is closed.

use std::fs::File;
use std::sync::Arc;

use memmap2::{Advice, MmapMut, MmapOptions};
use pyo3::prelude::*;

/// The memory behind a [`Storage`].
#[derive(Debug)]
pub enum Backing {
    /// A `MAP_PRIVATE` map of a whole file: reads come from the page cache
    /// without copying, and a write from Python copies the touched page
    /// instead of reaching the file.
    Map(MmapMut),
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
    /// Maps `file` privately (copy-on-write).
    pub fn map_private(file: &File) -> std::io::Result<Backing> {
        // SAFETY: the map is private, so our writes never reach the file.
        // Someone else truncating the file while it is mapped would turn
        // reads into SIGBUS; safeweights' writers replace files by rename,
        // which leaves existing maps intact (the same contract as the
        // reference and as `safeweights::read::SafetensorsFile`).
        let map = unsafe { MmapOptions::new().map_copy(file)? };
        Ok(Backing::Map(map))
    }

    /// A zero-filled owned buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Backing {
        Backing::Owned(vec![0u64; len.div_ceil(8)], len)
    }

    /// An owned copy of `bytes`.
    pub fn copy_of(bytes: &[u8]) -> Backing {
        let mut backing = Backing::zeroed(bytes.len());
        backing.as_mut_slice().copy_from_slice(bytes);
        backing
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
    /// they are copied next. A hint too, like `prefetch`.
    fn populate(&self, py: Python<'_>, offset: usize, len: usize) {
        #[cfg(target_os = "linux")]
        self.advise(py, Advice::PopulateRead, offset, len);
        #[cfg(not(target_os = "linux"))]
        let _ = (py, offset, len);
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
