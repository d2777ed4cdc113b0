//! Opening safetensors data for reading: one file (mapped or read with
//! pread), a sharded checkpoint (index file or directory), or a buffer.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::shards::ShardedCheckpoint;
use safeweights::{Error, Header, HeaderLimits, Metadata, Result, TensorInfo};

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
    Pread(SafetensorsFile),
}

/// One validated safetensors file.
#[derive(Debug)]
pub struct OpenedFile {
    pub header: Header,
    pub bytes: Bytes,
}

impl OpenedFile {
    /// Parses a buffer holding a whole file; tensors are views of it.
    fn from_backing(backing: Arc<Backing>) -> Result<OpenedFile> {
        let (header, data) = Header::parse_file(backing.as_slice(), &HeaderLimits::default())?;
        let data_start = backing.as_slice().len() - data.len();
        Ok(OpenedFile {
            header,
            bytes: Bytes::Memory {
                backing,
                data_start,
            },
        })
    }

    /// A tensor's bytes, when the file is in memory.
    pub fn memory_bytes(&self, info: &TensorInfo) -> Option<&[u8]> {
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
    /// Opens a file, an index file (`*.json`) or a directory holding a
    /// checkpoint.
    pub fn open_path(path: &Path, backend: Backend) -> Result<Opened> {
        let is_dir = std::fs::metadata(path).map(|m| m.is_dir()).unwrap_or(false);
        let is_index = path.extension().is_some_and(|e| e == "json");
        if is_dir || is_index {
            return Self::open_sharded(path, is_dir, backend);
        }
        let file = open_file(path, backend).map_err(|e| e.in_file(path))?;
        Ok(Opened {
            metadata: file.header.metadata().cloned(),
            files: vec![file],
            location: None,
        })
    }

    fn open_sharded(path: &Path, is_dir: bool, backend: Backend) -> Result<Opened> {
        // The core checks that index and shards agree (headers only, with
        // pread); we then open the shards with the backend asked for.
        let options = OpenOptions {
            backend: Backend::Pread,
            ..OpenOptions::default()
        };
        let checkpoint = if is_dir {
            ShardedCheckpoint::open_dir(path, &options)?
        } else {
            ShardedCheckpoint::open(path, &options)?
        };
        let paths: Vec<PathBuf> = checkpoint
            .shards()
            .iter()
            .map(|s| s.path().to_owned())
            .collect();
        let metadata = checkpoint.metadata().cloned();
        drop(checkpoint);
        let mut files = Vec::with_capacity(paths.len());
        let mut location = HashMap::new();
        for (i, shard) in paths.iter().enumerate() {
            let file = open_file(shard, backend).map_err(|e| e.in_file(shard))?;
            for tensor in file.header.tensors() {
                location.insert(tensor.name.clone(), i);
            }
            files.push(file);
        }
        Ok(Opened {
            files,
            location: Some(location),
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
    pub fn lookup(&self, name: &str) -> Result<(usize, &TensorInfo)> {
        let index = match &self.location {
            None => 0,
            Some(location) => *location.get(name).ok_or_else(|| Error::TensorNotFound {
                name: name.to_owned(),
            })?,
        };
        Ok((index, self.files[index].header.tensor(name)?))
    }

    /// Names sorted alphabetically, as the reference's `keys()`.
    pub fn sorted_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.offset_order().map(|(_, t)| t.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Every tensor in storage order: file by file, by data offset.
    pub fn offset_order(&self) -> impl Iterator<Item = (usize, &TensorInfo)> {
        self.files
            .iter()
            .enumerate()
            .flat_map(|(i, f)| f.header.tensors().iter().map(move |t| (i, t)))
    }

    /// Metadata of the first file (shards carry the same metadata),
    /// without the checkpoint id that stamps a sharded checkpoint's files.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }
}

fn open_file(path: &Path, backend: Backend) -> Result<OpenedFile> {
    if backend == Backend::Pread {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let file = SafetensorsFile::open_with(path, &options)?;
        return Ok(OpenedFile {
            header: file.header().clone(),
            bytes: Bytes::Pread(file),
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
