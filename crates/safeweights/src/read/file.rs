//! Reading safetensors files through a memory map or positioned reads.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::header::foreign_or;
use crate::format::sniff::SNIFF_LEN;
use crate::format::{Header, HeaderLimits, TensorEntry, PREFIX_LEN};
use crate::read::alloc::try_zeroed;
use crate::read::mmap::{map_file, FileMap};
use crate::read::parallel::{read_chunks_parallel, Chunk};
use crate::read::view::TensorView;
use crate::slice::{self, Selection, SliceArg};

/// How a file's bytes are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// Map the file into memory: zero-copy and lazy; the fastest choice on
    /// local disks.
    #[default]
    Mmap,
    /// Read with positioned reads (`pread`) into owned buffers. Slower for
    /// random access but safe on network filesystems, where mmap can be slow
    /// and a file changed by another host raises `SIGBUS`.
    Pread,
}

/// Options for [`SafetensorsFile::open_with`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenOptions {
    /// Backend to read through.
    pub backend: Backend,
    /// Header size limit.
    pub limits: HeaderLimits,
}

#[derive(Debug)]
enum Source {
    Mmap(FileMap),
    Pread(File),
    /// An object read by byte ranges over the network.
    #[cfg(feature = "remote")]
    Remote(Box<crate::remote::RemoteObject>),
}

/// An open, validated safetensors file. The header is parsed once; tensor
/// data is read on demand, so opening a file touches no tensor pages.
///
/// With [`Backend::Mmap`], the file must not be truncated or rewritten in
/// place while it is open (see the `# Safety` notes of the map function);
/// safeweights' writers always replace files by rename, which is safe.
#[derive(Debug)]
pub struct SafetensorsFile {
    path: PathBuf,
    header: Header,
    source: Source,
}

impl SafetensorsFile {
    /// Opens and validates a file with the mmap backend and default limits.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &OpenOptions::default())
    }

    /// Opens and validates a file with explicit options.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        Self::open_inner(path, options).map_err(|error| error.in_file(path))
    }

    fn open_inner(path: &Path, options: &OpenOptions) -> Result<Self> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let (header, source) = match options.backend {
            Backend::Mmap if file_len >= PREFIX_LEN as u64 => {
                // SAFETY: see the type-level docs: files are replaced by
                // rename, never modified in place, by our writers.
                let map = unsafe { map_file(&file, path)? };
                let (header, _) = Header::parse_file_releasing(&map, &options.limits, &mut |n| {
                    map.release_before(n)
                })?;
                (header, Source::Mmap(map))
            }
            _ => (
                read_header(&file, file_len, &options.limits)?,
                Source::Pread(file),
            ),
        };
        Ok(SafetensorsFile {
            path: path.to_owned(),
            header,
            source,
        })
    }

    /// A remote file whose header has been fetched and validated; its
    /// path is the URL.
    #[cfg(feature = "remote")]
    pub(crate) fn from_remote(object: crate::remote::RemoteObject, header: Header) -> Self {
        SafetensorsFile {
            path: PathBuf::from(object.url()),
            header,
            source: Source::Remote(Box::new(object)),
        }
    }

    /// The remote object, for a file opened from a URL.
    #[cfg(feature = "remote")]
    pub fn remote(&self) -> Option<&crate::remote::RemoteObject> {
        match &self.source {
            Source::Remote(object) => Some(object),
            _ => None,
        }
    }

    /// The path the file was opened from (the URL of a remote file).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The validated header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The backend in use (a remote file reads into owned buffers, as
    /// [`Backend::Pread`] does).
    pub fn backend(&self) -> Backend {
        match self.source {
            Source::Mmap(_) => Backend::Mmap,
            _ => Backend::Pread,
        }
    }

    /// The whole file as mapped bytes (mmap backend only).
    pub fn mapped_bytes(&self) -> Option<&[u8]> {
        match &self.source {
            Source::Mmap(map) => Some(map),
            _ => None,
        }
    }

    /// Header entry of one tensor.
    pub fn info(&self, name: &str) -> Result<TensorEntry<'_>> {
        self.header.tensor(name).map_err(|e| e.in_file(&self.path))
    }

    /// A tensor's bytes: borrowed from the map, or read into a new buffer.
    pub fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>> {
        let info = self.info(name)?;
        self.bytes_of(info)
    }

    /// The bytes of a tensor given its header entry from this file.
    pub fn bytes_of(&self, info: TensorEntry<'_>) -> Result<Cow<'_, [u8]>> {
        match &self.source {
            Source::Mmap(map) => Ok(Cow::Borrowed(self.mapped_range(map, info))),
            _ => {
                let mut buffer =
                    try_zeroed(info.byte_len()).map_err(|e| Error::Io(e).in_file(&self.path))?;
                self.read_at(info.begin, &mut buffer)?;
                Ok(Cow::Owned(buffer))
            }
        }
    }

    /// Reads `buffer.len()` bytes of a tensor, starting `offset` bytes into
    /// it. With the pread backend a file truncated meanwhile is an error
    /// here, where a map would raise `SIGBUS`.
    pub fn read_range(&self, info: TensorEntry<'_>, offset: u64, buffer: &mut [u8]) -> Result<()> {
        let end = offset.checked_add(buffer.len() as u64);
        if end.is_none_or(|end| end > info.byte_len() as u64) {
            return Err(Error::BufferSize {
                tensor: info.name.to_owned(),
                expected: info.byte_len(),
                actual: buffer.len(),
            });
        }
        self.read_at(info.begin + offset, buffer)
    }

    /// Asks the kernel to start reading `len` bytes of a tensor, `offset`
    /// bytes into it, into the page cache, without waiting for them
    /// (`posix_fadvise(WILLNEED)`, or `madvise` for a map): a reader that
    /// hints the next pieces before it works on the current one keeps the
    /// disk busy while it computes. Only a hint: nothing for a remote file
    /// or off Linux, and a refusal changes nothing but speed.
    pub fn advise_will_need(&self, info: TensorEntry<'_>, offset: u64, len: u64) {
        let start = self.header.data_start() + info.begin + offset;
        let len = len.min(info.end.saturating_sub(info.begin + offset));
        if len == 0 {
            return;
        }
        match &self.source {
            #[cfg(target_os = "linux")]
            Source::Pread(file) => {
                use std::os::fd::AsRawFd;
                let (Ok(start), Ok(len)) = (i64::try_from(start), i64::try_from(len)) else {
                    return;
                };
                // SAFETY: a plain system call on a descriptor we own; it
                // reads no memory of ours.
                unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_WILLNEED)
                };
            }
            #[cfg(unix)]
            Source::Mmap(map) => {
                let _ = map.advise_range(memmap2::Advice::WillNeed, start as usize, len as usize);
            }
            #[cfg(not(target_os = "linux"))]
            Source::Pread(_) => {}
            #[cfg(not(unix))]
            Source::Mmap(_) => {}
            #[cfg(feature = "remote")]
            Source::Remote(_) => {}
        }
    }

    /// A zero-copy view of a tensor (mmap backend only).
    pub fn view(&self, name: &str) -> Result<Option<TensorView<'_>>> {
        let info = self.info(name)?;
        Ok(match &self.source {
            Source::Mmap(map) => Some(TensorView::new(info, self.mapped_range(map, info))),
            _ => None,
        })
    }

    fn mapped_range<'m>(&self, map: &'m [u8], info: TensorEntry<'_>) -> &'m [u8] {
        // The header was validated against the mapped length.
        let start = self.header.data_start() as usize;
        &map[start + info.begin as usize..start + info.end as usize]
    }

    /// Reads a tensor into `buffer`, which must be exactly its size.
    pub fn read_into(&self, name: &str, buffer: &mut [u8]) -> Result<()> {
        let info = self.info(name)?;
        check_buffer(info, buffer.len())?;
        self.read_at(info.begin, buffer)
    }

    /// Reads many tensors into caller-provided buffers, splitting the work
    /// across threads. Each buffer must be exactly its tensor's size.
    pub fn read_many_into(&self, requests: &mut [(&str, &mut [u8])]) -> Result<()> {
        let mut chunks = Vec::with_capacity(requests.len());
        for (name, buffer) in requests.iter_mut() {
            let info = self.info(name)?;
            check_buffer(info, buffer.len())?;
            chunks.push(Chunk {
                offset: info.begin,
                buffer,
            });
        }
        #[cfg(feature = "remote")]
        if let Source::Remote(object) = &self.source {
            // One coalesced batch of ranged requests, run concurrently.
            let start = self.header.data_start();
            let mut targets: Vec<(u64, &mut [u8])> = chunks
                .into_iter()
                .map(|c| (start + c.offset, c.buffer))
                .collect();
            return object.read_into(&mut targets);
        }
        read_chunks_parallel(chunks, &|offset, buffer| self.read_at(offset, buffer))
    }

    /// Reads a slice of a tensor; returns its shape and bytes. Only the
    /// selected bytes are read.
    pub fn read_slice(&self, name: &str, args: &[SliceArg]) -> Result<(Vec<usize>, Vec<u8>)> {
        let info = self.info(name)?;
        let selection = slice::plan(name, info.shape, args)?;
        let bytes = self.read_selection(info, &selection)?;
        Ok((selection.shape(), bytes))
    }

    /// Reads a planned slice of a tensor (see [`slice::plan`]); only the
    /// selected bytes are read.
    pub fn read_selection(&self, info: TensorEntry<'_>, selection: &Selection) -> Result<Vec<u8>> {
        let name = info.name;
        match &self.source {
            Source::Mmap(map) => {
                self.check_covers(map, self.header.data_start() + info.end)?;
                let data = self.mapped_range(map, info);
                slice::gather(name, info.dtype, info.shape, data, selection)
            }
            Source::Pread(_) => {
                slice::gather_with(name, info.dtype, info.shape, selection, |offset, out| {
                    self.read_at(info.begin + offset as u64, out)
                })
            }
            #[cfg(feature = "remote")]
            Source::Remote(object) => {
                let start = self.header.data_start() + info.begin;
                crate::remote::gather_remote(object, start, info, selection)
            }
        }
    }

    /// Before a copy out of the map: a file cut under it (shorter than
    /// `end` now) is an error naming it, not a bus error in the copy.
    fn check_covers(&self, map: &FileMap, end: u64) -> Result<()> {
        match map.covers(end) {
            Ok(true) => Ok(()),
            Ok(false) => Err(truncated(&self.path)),
            Err(error) => Err(Error::Io(error).in_file(&self.path)),
        }
    }

    /// Reads bytes at `offset` from the start of the data section.
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<()> {
        let start = self.header.data_start() + offset;
        match &self.source {
            Source::Mmap(map) => {
                let start = start as usize;
                self.check_covers(map, (start + buffer.len()) as u64)?;
                let bytes = map
                    .get(start..start + buffer.len())
                    .ok_or_else(|| truncated(&self.path))?;
                buffer.copy_from_slice(bytes);
                Ok(())
            }
            Source::Pread(file) => read_exact_at(file, buffer, start).map_err(|error| {
                if error.kind() == std::io::ErrorKind::UnexpectedEof {
                    truncated(&self.path)
                } else {
                    Error::Io(error).in_file(&self.path)
                }
            }),
            #[cfg(feature = "remote")]
            Source::Remote(object) => object.read_into(&mut [(start, buffer)]),
        }
    }
}

fn truncated(path: &Path) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "the file became shorter while it was open",
    ))
    .in_file(path)
}

fn check_buffer(info: TensorEntry<'_>, len: usize) -> Result<()> {
    if info.byte_len() == len {
        Ok(())
    } else {
        Err(Error::BufferSize {
            tensor: info.name.to_owned(),
            expected: info.byte_len(),
            actual: len,
        })
    }
}

/// Reads the header with positioned reads, allocating only after the
/// declared length has been checked against the file size and the limit.
pub(crate) fn read_header(file: &File, file_len: u64, limits: &HeaderLimits) -> Result<Header> {
    let mut prefix = vec![0u8; file_len.min(SNIFF_LEN as u64) as usize];
    read_exact_at(file, &mut prefix, 0)?;
    let len = Header::read_header_len(&prefix, file_len, limits)?;
    let mut json = try_zeroed(len as usize)?;
    read_exact_at(file, &mut json, PREFIX_LEN as u64)?;
    let data_len = file_len - PREFIX_LEN as u64 - len;
    Header::parse_owned(json, data_len).map_err(|error| foreign_or(error, &prefix))
}

#[cfg(unix)]
fn read_exact_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buffer, offset)
}

#[cfg(windows)]
fn read_exact_at(file: &File, mut buffer: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buffer.is_empty() {
        match file.seek_read(buffer, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buffer = &mut buffer[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
