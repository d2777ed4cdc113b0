//! Distributed checkpoints written by `safeweights.dcp` (the Python
//! package's `torch.distributed.checkpoint` storage layer): opening and
//! checking one, and consolidating it into full tensors.
//!
//! A checkpoint is a directory holding `__R_P.safetensors` shard files
//! (rank R, part P), ordinary safetensors files whose tensors are named by
//! their fully qualified name and hold one chunk each, and the global
//! metadata [`METADATA_FILE`], JSON written last by the coordinator:
//!
//! ```json
//! {"format": "safeweights.dcp", "version": 1, "save_id": "...", "world_size": 4,
//!  "files": {"__0_0.safetensors": {"rank": 0, "bytes": 1234}},
//!  "state": {"model.w": {"tensor": {"dtype": "float32", "size": [8, 4],
//!              "chunks": [{"offsets": [0, 0], "sizes": [2, 4], "file": "__0_0.safetensors", "entry": "model.w"}]}},
//!            "step": {"object": {"file": null, "value": {"version": 2, "root": 7}}}}}
//! ```
//!
//! Each shard's `__metadata__` repeats the save id, its rank and the world
//! size, so files of two saves are never mixed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod consolidate;
pub use consolidate::{consolidate, INDEX_FILE};

use serde::Deserialize;

use crate::error::{DcpProblem, Error, Result};
use crate::format::{Metadata, TensorEntry};
use crate::read::{OpenOptions, SafetensorsFile};

/// The global metadata file of a checkpoint directory.
pub const METADATA_FILE: &str = "safeweights.dcp.json";
/// The `format` value of the global metadata.
pub const FORMAT_NAME: &str = "safeweights.dcp";
/// The version of the layout this crate reads.
pub const FORMAT_VERSION: u64 = 1;
/// Shard metadata keys: the save id, the rank and the world size.
pub const SAVE_ID_KEY: &str = "safeweights.dcp.save_id";
/// See [`SAVE_ID_KEY`].
pub const RANK_KEY: &str = "safeweights.dcp.rank";
/// See [`SAVE_ID_KEY`].
pub const WORLD_SIZE_KEY: &str = "safeweights.dcp.world_size";
/// torch's own DCP format keeps a pickled `Metadata` in this file.
pub const TORCH_METADATA_FILE: &str = ".metadata";
/// The global metadata is refused beyond this size (it holds no tensor data).
const MAX_METADATA_BYTES: u64 = 1 << 30;

/// Whether `path` is a directory holding a `safeweights.dcp` checkpoint.
pub fn is_dcp_directory(path: &Path) -> bool {
    path.is_dir() && path.join(METADATA_FILE).is_file()
}

/// Whether `path` is a directory holding torch's default (pickle-based)
/// DCP format.
pub fn is_torch_dcp_directory(path: &Path) -> bool {
    path.is_dir() && path.join(TORCH_METADATA_FILE).is_file()
}

/// The global metadata as written (the fields this crate needs).
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The layout version.
    pub version: u64,
    /// The id every shard of this save carries.
    pub save_id: String,
    /// How many ranks saved it.
    pub world_size: u64,
    /// Every shard file, by name.
    pub files: BTreeMap<String, FileRecord>,
    /// Every key of the flattened state dict (sorted by name here).
    pub state: BTreeMap<String, StateRecord>,
}

/// One shard file of the metadata.
#[derive(Debug, Clone, Deserialize)]
pub struct FileRecord {
    /// The rank that wrote it.
    pub rank: u64,
    /// Its size when saved.
    pub bytes: u64,
}

/// A key of the state: a tensor in chunks, or a non-tensor value.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateRecord {
    /// A tensor saved in chunks.
    Tensor(TensorRecord),
    /// A non-tensor value (`safeweights.save`'s JSON encoding).
    Object(ObjectRecord),
}

/// A tensor of the state.
#[derive(Debug, Clone, Deserialize)]
pub struct TensorRecord {
    /// torch's name of its dtype (`"float32"`).
    pub dtype: String,
    /// The full tensor's shape.
    pub size: Vec<usize>,
    /// Its chunks, each an entry of a shard file.
    pub chunks: Vec<ChunkRecord>,
}

/// One saved chunk of a tensor.
#[derive(Debug, Clone, Deserialize)]
pub struct ChunkRecord {
    /// Where the chunk starts in the full tensor.
    pub offsets: Vec<usize>,
    /// The chunk's shape.
    pub sizes: Vec<usize>,
    /// The shard file holding it.
    pub file: String,
    /// Its entry in that file.
    pub entry: String,
}

/// A non-tensor value of the state.
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectRecord {
    /// The shard file holding tensors the value names, if any.
    pub file: Option<String>,
    /// The encoded value.
    pub value: serde_json::Value,
}

/// An opened and checked checkpoint.
#[derive(Debug)]
pub struct DcpCheckpoint {
    directory: PathBuf,
    document: Document,
    shards: BTreeMap<String, SafetensorsFile>,
}

fn problem(problem: DcpProblem, detail: String) -> Error {
    Error::DistributedCheckpoint { problem, detail }
}

impl DcpCheckpoint {
    /// Reads the metadata, opens every shard file it names (headers only
    /// with the pread backend) and checks that they agree: every file
    /// exists, is as long as when saved and carries this save's id, its
    /// rank and the world size; every chunk is an entry of its file with
    /// the chunk's shape, inside the tensor, one dtype per tensor; the
    /// chunks of a tensor cover it exactly once.
    pub fn open(directory: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let directory = directory.as_ref().to_owned();
        let document = read_document(&directory)?;
        let mut shards = BTreeMap::new();
        for (name, record) in &document.files {
            let file = open_shard(&directory, &document, name, record, options)?;
            shards.insert(name.clone(), file);
        }
        let checkpoint = DcpCheckpoint {
            directory,
            document,
            shards,
        };
        for (name, record) in &checkpoint.document.state {
            if let StateRecord::Tensor(tensor) = record {
                checkpoint.check_tensor(name, tensor)?;
            }
        }
        Ok(checkpoint)
    }

    /// The checkpoint's directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The global metadata.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// The shard files, by name.
    pub fn shards(&self) -> &BTreeMap<String, SafetensorsFile> {
        &self.shards
    }

    /// The tensors of the state, sorted by name.
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &TensorRecord)> {
        self.document.state.iter().filter_map(|(k, v)| match v {
            StateRecord::Tensor(t) => Some((k.as_str(), t)),
            StateRecord::Object(_) => None,
        })
    }

    /// The non-tensor values of the state, sorted by name.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &ObjectRecord)> {
        self.document.state.iter().filter_map(|(k, v)| match v {
            StateRecord::Object(o) => Some((k.as_str(), o)),
            StateRecord::Tensor(_) => None,
        })
    }

    /// A chunk's shard file and header entry.
    pub fn chunk(&self, chunk: &ChunkRecord) -> Result<(&SafetensorsFile, TensorEntry<'_>)> {
        let file = self.shards.get(&chunk.file).ok_or_else(|| {
            problem(
                DcpProblem::Invalid,
                format!(
                    "{}: a chunk names {:?}, which the metadata does not list",
                    self.directory.display(),
                    chunk.file
                ),
            )
        })?;
        let info = file.info(&chunk.entry).map_err(|_| {
            problem(
                DcpProblem::Invalid,
                format!(
                    "{}: no tensor {:?} in this shard file",
                    file.path().display(),
                    chunk.entry
                ),
            )
        })?;
        Ok((file, info))
    }

    fn check_tensor(&self, name: &str, tensor: &TensorRecord) -> Result<()> {
        let invalid = |why: String| {
            problem(
                DcpProblem::Invalid,
                format!("{}: tensor {name:?}: {why}", self.directory.display()),
            )
        };
        let mut dtype = None;
        let mut covered: u128 = 0;
        for chunk in &tensor.chunks {
            let (_, info) = self.chunk(chunk)?;
            if info.shape != chunk.sizes {
                return Err(invalid(format!(
                    "the chunk in {} has shape {:?}, the metadata says {:?}",
                    chunk.file, info.shape, chunk.sizes
                )));
            }
            if *dtype.get_or_insert(info.dtype) != info.dtype {
                return Err(invalid(format!(
                    "its chunks have two dtypes ({} in {})",
                    info.dtype, chunk.file
                )));
            }
            let inside = chunk.offsets.len() == tensor.size.len()
                && chunk.sizes.len() == tensor.size.len()
                && chunk
                    .offsets
                    .iter()
                    .zip(&chunk.sizes)
                    .zip(&tensor.size)
                    .all(|((o, n), s)| o.checked_add(*n).is_some_and(|end| end <= *s));
            if !inside {
                return Err(invalid(format!(
                    "chunk at {:?} of shape {:?} is outside the tensor's shape {:?}",
                    chunk.offsets, chunk.sizes, tensor.size
                )));
            }
            covered += chunk.sizes.iter().map(|&n| n as u128).product::<u128>();
        }
        let volume: u128 = tensor.size.iter().map(|&n| n as u128).product();
        if covered != volume || overlapping(&tensor.chunks) {
            return Err(invalid(format!(
                "its chunks do not cover its shape {:?} exactly once",
                tensor.size
            )));
        }
        Ok(())
    }
}

/// Whether two chunks overlap (quadratic, but a tensor has one chunk per
/// rank or so).
fn overlapping(chunks: &[ChunkRecord]) -> bool {
    chunks.iter().enumerate().any(|(i, a)| {
        chunks[i + 1..].iter().any(|b| {
            a.offsets
                .iter()
                .zip(&a.sizes)
                .zip(b.offsets.iter().zip(&b.sizes))
                .all(|((ao, an), (bo, bn))| {
                    *an > 0 && *bn > 0 && ao < &(bo + bn) && bo < &(ao + an)
                })
        })
    })
}

/// Reads and checks the global metadata of `directory`.
pub fn read_document(directory: &Path) -> Result<Document> {
    let path = directory.join(METADATA_FILE);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(no_document(directory)),
        Err(e) => return Err(Error::Io(e).in_file(&path)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::Io(e).in_file(&path))?
        .len();
    if len > MAX_METADATA_BYTES {
        return Err(problem(
            DcpProblem::Invalid,
            format!(
                "{}: {len} bytes, over the {MAX_METADATA_BYTES}-byte limit for checkpoint metadata",
                path.display()
            ),
        ));
    }
    let text = std::fs::read(&path).map_err(|e| Error::Io(e).in_file(&path))?;
    let document: Document = serde_json::from_slice(&text).map_err(|e| {
        problem(
            DcpProblem::Invalid,
            format!("{}: invalid checkpoint metadata: {e}", path.display()),
        )
    })?;
    if document.format != FORMAT_NAME || document.version != FORMAT_VERSION {
        return Err(problem(
            DcpProblem::Invalid,
            format!(
                "{}: format {:?} version {}; this safeweights reads {FORMAT_NAME:?} version {FORMAT_VERSION}",
                path.display(),
                document.format,
                document.version
            ),
        ));
    }
    for name in document.files.keys() {
        if !is_plain_file_name(name) {
            return Err(problem(
                DcpProblem::Invalid,
                format!("{}: invalid shard file name {name:?}", path.display()),
            ));
        }
    }
    Ok(document)
}

/// A file name inside the directory: no separators, not `.` or `..`.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn no_document(directory: &Path) -> Error {
    if is_torch_dcp_directory(directory) {
        return problem(
            DcpProblem::Pickled,
            format!(
                "{} is a checkpoint in torch's default DCP format (a pickled .metadata and .distcp files)",
                directory.display()
            ),
        );
    }
    problem(
        DcpProblem::Incomplete,
        format!(
            "{} holds no {METADATA_FILE}: the save did not finish (or this is not a safeweights DCP checkpoint)",
            directory.display()
        ),
    )
}

/// The tensors a shard file holds according to the metadata, for messages.
fn held_by<'a>(document: &'a Document, file: &str) -> Vec<&'a str> {
    document
        .state
        .iter()
        .filter(|(_, record)| match record {
            StateRecord::Tensor(t) => t.chunks.iter().any(|c| c.file == file),
            StateRecord::Object(o) => o.file.as_deref() == Some(file),
        })
        .map(|(name, _)| name.as_str())
        .collect()
}

fn listing(names: &[&str]) -> String {
    let shown: Vec<&str> = names.iter().take(4).copied().collect();
    let more = if names.len() > 4 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

fn open_shard(
    directory: &Path,
    document: &Document,
    name: &str,
    record: &FileRecord,
    options: &OpenOptions,
) -> Result<SafetensorsFile> {
    let path = directory.join(name);
    let held = listing(&held_by(document, name));
    let size = match std::fs::metadata(&path) {
        Ok(metadata) => metadata.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(problem(
                DcpProblem::MissingShard,
                format!("{}: shard file missing; it holds {held}", path.display()),
            ))
        }
        Err(e) => return Err(Error::Io(e).in_file(&path)),
    };
    if size != record.bytes {
        return Err(problem(
            if size < record.bytes {
                DcpProblem::Truncated
            } else {
                DcpProblem::Mismatch
            },
            format!(
                "{}: shard file is {size} bytes, {} when saved; it holds {held}",
                path.display(),
                record.bytes
            ),
        ));
    }
    let file = SafetensorsFile::open_with(&path, options)?;
    let meta = file.header().metadata();
    let rank = record.rank.to_string();
    let world = document.world_size.to_string();
    for (key, expected, what) in [
        (SAVE_ID_KEY, document.save_id.as_str(), "save"),
        (RANK_KEY, rank.as_str(), "rank"),
        (WORLD_SIZE_KEY, world.as_str(), "rank count"),
    ] {
        let found = meta.and_then(|m: &Metadata| m.get(key)).map(String::as_str);
        if found != Some(expected) {
            return Err(problem(
                DcpProblem::Mismatch,
                format!(
                    "{}: this shard file belongs to another save ({what}: file says {found:?}, the checkpoint's metadata {expected:?}); it holds {held}",
                    path.display()
                ),
            ));
        }
    }
    Ok(file)
}
