//! Opening safetensors data for reading: one file (mapped or read with
//! pread), a sharded checkpoint (index file or directory), or a buffer.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::remote::{open_checkpoint, RemoteOptions};
use safeweights::resolve::{resolve_path, Target};
use safeweights::shards::{open_shards, user_metadata};
use safeweights::{Error, Header, HeaderLimits, Metadata, Result, TensorEntry};

use crate::storage::Backing;

/// How one file's tensor bytes are reached.
#[derive(Debug)]
pub enum Bytes {
    /// The whole file is in memory (mapped or a buffer); tensors are views.
    Memory {
        /// The file's bytes.
        backing: Arc<Backing>,
        /// Offset of the data section in `backing`.
        data_start: usize,
    },
    /// Each tensor is read into a new buffer with positioned reads.
    Pread(Box<SafetensorsFile>),
}

/// One validated safetensors file.
#[derive(Debug)]
pub struct OpenedFile {
    pub header: Header,
    pub bytes: Bytes,
    /// End of the data already asked for ahead of `get_tensor` calls
    /// (see [`OpenedFile::read_ahead`]), relative to the data section.
    hinted: AtomicU64,
}

impl OpenedFile {
    /// Parses a buffer holding a whole file; tensors are views of it.
    fn from_backing(backing: Arc<Backing>) -> Result<OpenedFile> {
        let release = &mut |end| backing.release_before(end);
        let (header, data) =
            Header::parse_file_releasing(backing.as_slice(), &HeaderLimits::default(), release)?;
        let data_start = backing.as_slice().len() - data.len();
        Ok(OpenedFile {
            header,
            bytes: Bytes::Memory {
                backing,
                data_start,
            },
            hinted: AtomicU64::new(0),
        })
    }

    /// Reads the data section (`name: None`) or one tensor's bytes of a
    /// mapped file into memory with parallel reads (see `readahead.rs`);
    /// nothing for other inputs, or for a data section that does not fit
    /// in half the available memory.
    ///
    /// For one tensor it also asks the kernel, without waiting, for the
    /// [`WINDOW`] bytes that follow it: `get_tensor` over every key
    /// reads the tensors in data order (keys are sorted, and writers lay
    /// tensors out sorted), so the next tensors' reads are in flight while
    /// this one is read and converted, instead of one tensor's reads at a
    /// time. Each byte is asked for once, so a warm file pays one
    /// residency check per byte in all.
    pub fn read_ahead(&self, tensor: Option<TensorEntry<'_>>) {
        let Bytes::Memory {
            backing,
            data_start,
        } = &self.bytes
        else {
            return;
        };
        let Some(info) = tensor else {
            let len = self.header.data_len();
            if crate::readahead::fits_in_memory(len) {
                crate::readahead::populate(backing, *data_start, len as usize);
            }
            return;
        };
        let at = |offset: u64| data_start + offset as usize;
        crate::readahead::hint(backing, at(info.begin), info.byte_len());
        let ahead_end = info.end.saturating_add(WINDOW).min(self.header.data_len());
        let ahead_start = self
            .hinted
            .fetch_max(ahead_end, Ordering::Relaxed)
            .max(info.end);
        if ahead_start < ahead_end {
            crate::readahead::hint(backing, at(ahead_start), (ahead_end - ahead_start) as usize);
        }
        crate::readahead::populate(backing, at(info.begin), info.byte_len());
    }

    /// A tensor's bytes, when the file is in memory.
    pub fn memory_bytes(&self, info: TensorEntry<'_>) -> Option<&[u8]> {
        match &self.bytes {
            Bytes::Memory {
                backing,
                data_start,
            } => {
                let start = data_start + info.begin as usize;
                Some(&backing.as_slice()[start..start + info.byte_len()])
            }
            Bytes::Pread(_) => None,
        }
    }
}

/// Bytes asked for beyond a tensor that `get_tensor` reads (see
/// [`OpenedFile::read_ahead`]): several of the disk's read-ahead windows.
const WINDOW: u64 = 64 << 20;

/// One or more files opened as a single collection of tensors.
#[derive(Debug)]
pub struct Opened {
    pub files: Vec<OpenedFile>,
    /// Which file holds each tensor; `None` for a single file.
    location: Option<HashMap<String, usize>>,
    /// The user's metadata: the first file's, less a sharded checkpoint's id.
    metadata: Option<Metadata>,
}

impl Opened {
    /// Opens a file, an index file or a directory holding a checkpoint, as
    /// the core's resolver tells them apart.
    pub fn open_path(path: &Path, backend: Backend) -> Result<Opened> {
        match resolve_path(path)? {
            Target::Index(index) => Self::open_sharded(&index, backend),
            Target::File(file) => {
                let opened = open_file(&file, backend).map_err(|e| e.in_file(&file))?;
                Ok(Opened {
                    metadata: opened.header.metadata().cloned(),
                    files: vec![opened],
                    location: None,
                })
            }
            other => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("{other:?} is not a local file or index"),
            ))),
        }
    }

    /// Opens a URL (`s3://`, `http(s)://`): one file, or a sharded
    /// checkpoint's index and its shards beside it, read by byte ranges.
    pub fn open_url(url: &str, remote: &RemoteOptions) -> Result<Opened> {
        let checkpoint = open_checkpoint(url, &OpenOptions::default(), remote)?;
        let sharded = checkpoint.shards().len() > 1 || {
            let prefix = checkpoint.shards().first().map(|s| s.path().to_owned());
            prefix.is_some_and(|p| p.to_string_lossy() != url)
        };
        let metadata = if sharded {
            user_metadata(checkpoint.metadata())
        } else {
            checkpoint.metadata().cloned()
        };
        let mut location = HashMap::new();
        let mut files = Vec::new();
        for (i, _) in checkpoint.shards().iter().enumerate() {
            for tensor in checkpoint.shards()[i].header().tensors() {
                location.insert(tensor.name.to_owned(), i);
            }
        }
        for file in checkpoint.into_shards() {
            files.push(OpenedFile {
                header: file.header().clone(),
                bytes: Bytes::Pread(Box::new(file)),
                hinted: AtomicU64::new(0),
            });
        }
        Ok(Opened {
            files,
            location: sharded.then_some(location),
            metadata,
        })
    }

    /// Opens each shard once, with the backend asked for; the core checks
    /// that index and shards agree.
    fn open_sharded(index: &Path, backend: Backend) -> Result<Opened> {
        let shards = open_shards(
            index,
            |shard| open_file(shard, backend).map_err(|e| e.in_file(shard)),
            |file| &file.header,
        )?;
        let metadata = user_metadata(shards.files.first().and_then(|f| f.header.metadata()));
        Ok(Opened {
            files: shards.files,
            location: Some(shards.location),
            metadata,
        })
    }

    /// Parses a buffer holding a whole file.
    pub fn from_backing(backing: Arc<Backing>) -> Result<Opened> {
        let file = OpenedFile::from_backing(backing)?;
        Ok(Opened {
            metadata: file.header.metadata().cloned(),
            files: vec![file],
            location: None,
        })
    }

    /// The file holding `name`, and its header entry.
    pub fn lookup(&self, name: &str) -> Result<(usize, TensorEntry<'_>)> {
        let index = match &self.location {
            None => 0,
            Some(location) => *location.get(name).ok_or_else(|| Error::TensorNotFound {
                name: name.to_owned(),
            })?,
        };
        Ok((index, self.files[index].header.tensor(name)?))
    }

    /// Names sorted alphabetically, as the reference's `keys()`. One file's
    /// come straight from its header, with no list in between (a million
    /// names as `&str` would be 16 MB more at the peak of `keys()`).
    pub fn sorted_names(&self) -> SortedNames<'_> {
        match &self.files[..] {
            [file] => SortedNames::One(file.header.names_alphabetical()),
            _ => {
                let mut names: Vec<&str> = self.offset_order().map(|(_, t)| t.name).collect();
                names.sort_unstable();
                SortedNames::Many(names.into_iter())
            }
        }
    }

    /// Every tensor in storage order: file by file, by data offset.
    pub fn offset_order(&self) -> impl Iterator<Item = (usize, TensorEntry<'_>)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.header.tensors().map(move |t| (i, t)))
    }

    /// Metadata of the first file, without a sharded checkpoint's id. Shards may carry different metadata (a
    /// training checkpoint's structure, tied-weight aliases per shard):
    /// `_all_metadata` in `safe_open` gives each file's, and `load_checkpoint`
    /// reads the aliases of every shard through it.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }
}

/// Names in alphabetical order, see [`Opened::sorted_names`].
#[derive(Debug)]
pub enum SortedNames<'a> {
    /// One file's, from its header.
    One(safeweights::SortedNames<'a>),
    /// Several files' names, sorted together.
    Many(std::vec::IntoIter<&'a str>),
}

impl<'a> Iterator for SortedNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            SortedNames::One(names) => names.next(),
            SortedNames::Many(names) => names.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            SortedNames::One(names) => names.size_hint(),
            SortedNames::Many(names) => names.size_hint(),
        }
    }
}

impl ExactSizeIterator for SortedNames<'_> {}

fn open_file(path: &Path, backend: Backend) -> Result<OpenedFile> {
    if backend == Backend::Pread {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let file = SafetensorsFile::open_with(path, &options)?;
        return Ok(OpenedFile {
            header: file.header().clone(),
            bytes: Bytes::Pread(Box::new(file)),
            hinted: AtomicU64::new(0),
        });
    }
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let backing = if len < safeweights::format::PREFIX_LEN as u64 {
        // Too short to be valid: read it so the parser reports why (an
        // empty file cannot be mapped at all).
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Backing::copy_of(&bytes)?
    } else {
        Backing::map_private(&file, path)?
    };
    OpenedFile::from_backing(Arc::new(backing))
}
