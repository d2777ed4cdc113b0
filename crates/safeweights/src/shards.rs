//! Sharded checkpoints: `model-00001-of-00003.safetensors` files plus a
//! `model.safetensors.index.json` that maps each tensor to its shard, in
//! the layout Hugging Face libraries read and write.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::{Header, Metadata, TensorEntry};
use crate::read::{OpenOptions, SafetensorsFile};
use crate::resolve::{resolve_path, Target};
use crate::write::{serialize_to_file, write_all_at, AtomicFile, TensorRef, WriteOptions};

mod publish;

pub use publish::{new_checkpoint_id, ShardPublisher, CHECKPOINT_ID_KEY};

/// The conventional index file name.
pub const INDEX_FILE_NAME: &str = "model.safetensors.index.json";

/// The contents of an index file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardIndex {
    /// `{"total_size": bytes, ...}`; other keys are kept as they were.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Tensor name to shard file name.
    pub weight_map: BTreeMap<String, String>,
}

impl ShardIndex {
    /// Builds an index from the sum of tensor sizes and the weight map.
    pub fn new(total_size: u64, weight_map: BTreeMap<String, String>) -> Self {
        let mut metadata = serde_json::Map::new();
        metadata.insert("total_size".into(), total_size.into());
        ShardIndex {
            metadata,
            weight_map,
        }
    }

    /// Builds an index from the sum of tensor sizes and each shard's file
    /// name with the names of the tensors it holds, in order (a name listed
    /// twice ends up in the last shard that lists it).
    pub fn from_shards<F, T, N>(total_size: u64, shards: impl IntoIterator<Item = (F, T)>) -> Self
    where
        F: AsRef<str>,
        T: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        let mut weight_map = BTreeMap::new();
        for (file, tensors) in shards {
            for name in tensors {
                weight_map.insert(name.as_ref().to_owned(), file.as_ref().to_owned());
            }
        }
        ShardIndex::new(total_size, weight_map)
    }

    /// Parses index JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        let index: ShardIndex = serde_json::from_str(text).map_err(|e| Error::Shard {
            reason: format!("the index is not valid index JSON: {e}"),
        })?;
        for file in index.weight_map.values() {
            check_shard_name(file)?;
        }
        Ok(index)
    }

    /// Reads an index file.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io(e).in_file(path))?;
        Self::from_json(&text).map_err(|e| e.in_file(path))
    }

    /// The index as Hugging Face writes it: sorted keys, two-space indent,
    /// trailing newline.
    pub fn to_json(&self) -> String {
        let sorted: BTreeMap<&String, &serde_json::Value> = self.metadata.iter().collect();
        let value = serde_json::json!({ "metadata": sorted, "weight_map": self.weight_map });
        let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
        let mut text = ascii_escape(&pretty);
        text.push('\n');
        text
    }

    /// Writes the index to `path` as [`to_json`](ShardIndex::to_json) does,
    /// through a temporary file and a rename so that no reader ever sees
    /// half an index. Like any new file, it gets 0666 minus the umask as
    /// its permissions on Unix (not the 0600 of temporary files), the same
    /// as shards written by this crate.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        self.write_with(path.as_ref(), WriteOptions::default().sync)
    }

    /// [`write`](ShardIndex::write), flushing the file before the rename
    /// and the directory after it when `sync` is set.
    pub fn write_with(&self, path: &Path, sync: bool) -> Result<()> {
        let file = AtomicFile::create(path)?;
        write_all_at(file.file(), self.to_json().as_bytes(), 0)
            .map_err(|e| Error::Io(e).in_file(path))?;
        file.commit(sync)
    }

    /// `metadata.total_size`, if present.
    pub fn total_size(&self) -> Option<u64> {
        self.metadata
            .get("total_size")
            .and_then(serde_json::Value::as_u64)
    }

    /// Distinct shard file names, sorted.
    pub fn shard_files(&self) -> Vec<&str> {
        let mut files: Vec<&str> = self.weight_map.values().map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        files
    }
}

/// Python's `json.dumps` escapes every non-ASCII character (`ensure_ascii`),
/// as UTF-16 `\uXXXX` escapes. Non-ASCII characters can only occur inside
/// JSON strings, so escaping them in the finished text is safe.
fn ascii_escape(json: &str) -> String {
    use std::fmt::Write;
    if json.is_ascii() {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                // Infallible: writing to a String.
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

/// Shard names come from an untrusted file and become paths: only plain
/// file names inside the index's directory are allowed.
fn check_shard_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && !name.contains(':');
    if plain {
        Ok(())
    } else {
        Err(Error::Shard {
            reason: format!(
                "shard name {name:?} is not a plain file name in the index's directory"
            ),
        })
    }
}

/// `model-00001-of-00003.safetensors` for `index` 0 of 3.
pub fn shard_file_name(prefix: &str, index: usize, count: usize) -> String {
    format!("{prefix}-{:05}-of-{count:05}.safetensors", index + 1)
}

/// Groups consecutive tensors into shards of at most `max_shard_size` bytes.
/// A tensor larger than the maximum gets a shard of its own.
pub fn plan_shards(sizes: &[u64], max_shard_size: u64) -> Vec<Range<usize>> {
    let mut shards = Vec::new();
    let (mut start, mut filled) = (0, 0u64);
    for (i, &size) in sizes.iter().enumerate() {
        if i > start
            && filled
                .checked_add(size)
                .is_none_or(|total| total > max_shard_size)
        {
            shards.push(start..i);
            start = i;
            filled = 0;
        }
        filled = filled.saturating_add(size);
    }
    if start < sizes.len() {
        shards.push(start..sizes.len());
    }
    shards
}

/// Parses sizes like `"5GB"`, `"500MB"`, `"2GiB"` or `"1000"` (bytes).
/// Decimal units are powers of 1000 and binary units powers of 1024, as in
/// Hugging Face's `max_shard_size`.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let multiplier: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        "TIB" => 1 << 40,
        _ => return None,
    };
    let bytes = number * multiplier as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Writes tensors into `directory` as shards of at most `max_shard_size`
/// bytes plus an index, or as one `model.safetensors` when they fit in one
/// shard (as Hugging Face does). Returns the paths written.
///
/// Replacing a checkpoint already in `directory` (refused unless
/// `options.overwrite`) is atomic as a set: see [`ShardPublisher`]. Every
/// shard and the index carry one checkpoint id ([`CHECKPOINT_ID_KEY`]).
pub fn write_sharded<S: AsRef<str>>(
    directory: impl AsRef<Path>,
    tensors: &[(S, TensorRef<'_>)],
    metadata: Option<&Metadata>,
    max_shard_size: u64,
    options: &WriteOptions,
) -> Result<Vec<PathBuf>> {
    let names: Vec<&str> = tensors.iter().map(|(name, _)| name.as_ref()).collect();
    let sizes: Vec<u64> = tensors.iter().map(|(_, t)| t.data.len() as u64).collect();
    let set = ShardSet {
        names: &names,
        sizes: &sizes,
        max_shard_size,
        overwrite: options.overwrite,
        sync: options.sync,
    };
    publish_shards(
        directory.as_ref(),
        &set,
        metadata,
        |range, metadata, path| serialize_to_file(&tensors[range], metadata, path, options),
    )
}

/// The tensors of a sharded write, in file order, and how to publish them.
#[derive(Debug, Clone, Copy)]
pub struct ShardSet<'a> {
    /// Every tensor's name.
    pub names: &'a [&'a str],
    /// Every tensor's data size in bytes.
    pub sizes: &'a [u64],
    /// The largest shard's data size; a larger tensor gets a shard of its own.
    pub max_shard_size: u64,
    /// Replace a checkpoint already in the directory.
    pub overwrite: bool,
    /// `fsync` each file and the directory.
    pub sync: bool,
}

/// Plans `set` into shards and publishes them atomically as a set (see
/// [`ShardPublisher`]): `write(range, metadata, path)` writes the tensors
/// `range` with `metadata` (stamped with the checkpoint id when there are
/// several shards) as one complete file at `path`. A failed write abandons
/// the new set and leaves any old checkpoint loadable. Returns the paths
/// written, index last.
///
/// [`write_sharded`] writes tensors from memory through it; writers with a
/// source of their own (the CLI's `shard`, streaming from another file) call
/// it with theirs.
pub fn publish_shards<E: From<Error>>(
    directory: &Path,
    set: &ShardSet<'_>,
    metadata: Option<&Metadata>,
    mut write: impl FnMut(Range<usize>, Option<&Metadata>, &Path) -> std::result::Result<(), E>,
) -> std::result::Result<Vec<PathBuf>, E> {
    let plan = plan_shards(set.sizes, set.max_shard_size);
    let publisher = ShardPublisher::begin(directory, "model", plan.len(), set.overwrite, set.sync)?;
    if plan.len() <= 1 {
        let path = publisher.single_path();
        write(0..set.names.len(), metadata, &path)?;
        publisher.finish_single()?;
        return Ok(vec![path]);
    }
    let stamped = publisher.shard_metadata(metadata);
    let mut written = Vec::with_capacity(plan.len() + 1);
    for (i, range) in plan.iter().enumerate() {
        let path = publisher.shard_path(i);
        if let Err(error) = write(range.clone(), Some(&stamped), &path) {
            publisher.abandon();
            return Err(error);
        }
        publisher.shard_written(i);
        written.push(path);
    }
    let shards = publisher
        .shard_names()
        .iter()
        .zip(&plan)
        .map(|(name, range)| (name, set.names[range.clone()].iter()));
    let index = ShardIndex::from_shards(set.sizes.iter().sum(), shards);
    written.push(publisher.finish(index)?);
    Ok(written)
}

/// A sharded checkpoint opened as one collection of tensors.
#[derive(Debug)]
pub struct ShardedCheckpoint {
    /// Built on first use for a single file: a million-tensor file would
    /// otherwise pay two owned strings per tensor just to be opened.
    index: OnceLock<ShardIndex>,
    shards: Vec<SafetensorsFile>,
    /// Which shard holds each tensor; `None` for a single file (shard 0).
    location: Option<HashMap<String, usize>>,
    metadata: Option<Metadata>,
}

impl ShardedCheckpoint {
    /// Opens an index file and every shard it names, and checks that they
    /// agree: every shard exists, every tensor is in the shard the index
    /// names, no tensor is in two shards, and no shard holds unlisted tensors.
    pub fn open(index_path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        let shards = open_shards(
            index_path.as_ref(),
            |path| SafetensorsFile::open_with(path, options),
            SafetensorsFile::header,
        )?;
        let metadata = user_metadata(shards.files.first().and_then(|f| f.header().metadata()));
        Ok(ShardedCheckpoint {
            index: OnceLock::from(shards.index),
            shards: shards.files,
            location: Some(shards.location),
            metadata,
        })
    }

    /// Opens a directory holding an index file, or a single safetensors file.
    pub fn open_dir(directory: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        Self::open_path(directory, options)
    }

    /// Opens whatever a local path names, as [`resolve_path`] decides: a
    /// directory, an index file, or one safetensors file.
    pub fn open_path(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Self> {
        Self::open_target(resolve_path(path.as_ref())?, options)
    }

    /// Opens a resolved target. A URL is read with the default
    /// [`RemoteOptions`](crate::remote::RemoteOptions) (see
    /// [`crate::remote::open_checkpoint`] for others); without the `remote`
    /// feature it is refused.
    pub fn open_target(target: Target, options: &OpenOptions) -> Result<Self> {
        match target {
            Target::Index(index) => Self::open(index, options),
            Target::File(file) => Self::single(SafetensorsFile::open_with(file, options)?),
            #[cfg(feature = "remote")]
            Target::Url(url) => crate::remote::open_checkpoint(&url, options, &Default::default()),
            #[cfg(not(feature = "remote"))]
            Target::Url(url) => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("{url} is a URL: build safeweights with the `remote` feature to read it"),
            ))),
        }
    }

    /// Builds a checkpoint from shards opened and checked by
    /// [`assemble_shards`].
    #[cfg(feature = "remote")]
    pub(crate) fn from_opened(shards: OpenedShards<SafetensorsFile>) -> Self {
        let metadata = user_metadata(shards.files.first().and_then(|f| f.header().metadata()));
        ShardedCheckpoint {
            index: OnceLock::from(shards.index),
            shards: shards.files,
            location: Some(shards.location),
            metadata,
        }
    }

    /// Wraps one ordinary file as a one-shard checkpoint.
    pub fn single(file: SafetensorsFile) -> Result<Self> {
        let metadata = file.header().metadata().cloned();
        Ok(ShardedCheckpoint {
            index: OnceLock::new(),
            shards: vec![file],
            location: None,
            metadata,
        })
    }

    /// The index (for a single file, one listing every tensor in it).
    pub fn index(&self) -> &ShardIndex {
        self.index.get_or_init(|| {
            let file = &self.shards[0];
            let name = file
                .path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let weight_map = file
                .header()
                .tensors()
                .map(|t| (t.name.to_owned(), name.clone()))
                .collect();
            ShardIndex::new(file.header().data_len(), weight_map)
        })
    }

    /// The open shard files.
    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }

    /// The open shard files, owned, in index order.
    pub fn into_shards(self) -> Vec<SafetensorsFile> {
        self.shards
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        match &self.location {
            None => self.shards[0].header().sorted_names(),
            Some(_) => self.index().weight_map.keys().map(String::as_str).collect(),
        }
    }

    /// The shard holding a tensor, and its header entry.
    pub fn get(&self, name: &str) -> Result<(&SafetensorsFile, TensorEntry<'_>)> {
        let position = match &self.location {
            None => Some(0),
            Some(location) => location.get(name).copied(),
        };
        let shard =
            position
                .and_then(|i| self.shards.get(i))
                .ok_or_else(|| Error::TensorNotFound {
                    name: name.to_owned(),
                })?;
        Ok((shard, shard.info(name)?))
    }

    /// Metadata of the first shard (Hugging Face writes the same in all),
    /// without the checkpoint id of a sharded checkpoint.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }
}

/// A sharded checkpoint's metadata as the user wrote it: the shard's
/// `__metadata__` without the checkpoint id (bookkeeping of the set), and
/// `None` when the id was all there was.
pub fn user_metadata(metadata: Option<&Metadata>) -> Option<Metadata> {
    let mut user = metadata?.clone();
    let stamped = user.remove(CHECKPOINT_ID_KEY).is_some();
    (!(stamped && user.is_empty())).then_some(user)
}

/// The shards of an index, each opened once by the caller's own opener.
#[derive(Debug)]
pub struct OpenedShards<T> {
    /// The index.
    pub index: ShardIndex,
    /// The shards, in the order of [`ShardIndex::shard_files`].
    pub files: Vec<T>,
    /// Which of `files` holds each tensor.
    pub location: HashMap<String, usize>,
}

/// Reads the index at `index_path`, opens each shard it names once with
/// `open` (the caller picks how: mapped, read, copied), and checks that
/// index and shards agree, as [`ShardedCheckpoint::open`] does. Errors name
/// the index file.
pub fn open_shards<T>(
    index_path: &Path,
    mut open: impl FnMut(&Path) -> Result<T>,
    header_of: impl Fn(&T) -> &Header,
) -> Result<OpenedShards<T>> {
    let index = ShardIndex::read(index_path)?;
    let directory = index_path.parent().unwrap_or(Path::new("."));
    assemble_shards(
        index,
        |name| {
            let path = directory.join(name);
            if !path.exists() {
                return Err(Error::Shard {
                    reason: format!("shard {name:?} listed in the index is missing"),
                });
            }
            open(&path)
        },
        header_of,
    )
    .map_err(|e| e.in_file(index_path))
}

/// Opens each shard an index names with `open` (given the shard's file
/// name, local or remote) and checks that index and shards agree.
pub(crate) fn assemble_shards<T>(
    index: ShardIndex,
    mut open: impl FnMut(&str) -> Result<T>,
    header_of: impl Fn(&T) -> &Header,
) -> Result<OpenedShards<T>> {
    let names = index.shard_files();
    let mut files = Vec::with_capacity(names.len());
    for name in &names {
        files.push(open(name)?);
    }
    let headers: Vec<&Header> = files.iter().map(&header_of).collect();
    let location = locate_tensors(&names, &headers, &index)?;
    let stamps = names.iter().zip(&headers);
    publish::check_checkpoint_ids(
        &index,
        stamps.map(|(name, header)| (*name, header.metadata())),
    )?;
    drop(headers);
    Ok(OpenedShards {
        index,
        files,
        location,
    })
}

fn locate_tensors(
    files: &[&str],
    headers: &[&Header],
    index: &ShardIndex,
) -> Result<HashMap<String, usize>> {
    let mut location: HashMap<String, usize> = HashMap::new();
    for (i, header) in headers.iter().enumerate() {
        for tensor in header.tensors() {
            if let Some(&other) = location.get(tensor.name) {
                return Err(Error::Shard {
                    reason: format!(
                        "tensor {:?} is in both {:?} and {:?}",
                        tensor.name, files[other], files[i]
                    ),
                });
            }
            let Some(listed) = index.weight_map.get(tensor.name) else {
                return Err(Error::Shard {
                    reason: format!(
                        "tensor {:?} in {:?} is not listed in the index",
                        tensor.name, files[i]
                    ),
                });
            };
            if listed != files[i] {
                return Err(Error::Shard {
                    reason: format!(
                        "tensor {:?} is listed in {listed:?} but stored in {:?}",
                        tensor.name, files[i]
                    ),
                });
            }
            location.insert(tensor.name.to_owned(), i);
        }
    }
    for (name, file) in &index.weight_map {
        if !location.contains_key(name) {
            return Err(Error::Shard {
                reason: format!(
                    "tensor {name:?} is listed in {file:?} but that shard does not hold it"
                ),
            });
        }
    }
    Ok(location)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_size_understands_decimal_and_binary_units() {
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("5GB"), Some(5_000_000_000));
        assert_eq!(parse_size("500MB"), Some(500_000_000));
        assert_eq!(parse_size("10kb"), Some(10_000));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1 TiB"), Some(1 << 40));
        assert_eq!(parse_size(" 0.5GB "), Some(500_000_000));
        assert_eq!(parse_size("7B"), Some(7));
    }

    #[test]
    fn parse_size_rejects_nonsense() {
        for bad in [
            "",
            "GB",
            "abc",
            "5XB",
            "-5GB",
            "0",
            "0.1",
            "1e3",
            "1.2.3GB",
            "99999999999TB",
        ] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn shard_file_names_are_numbered_from_one() {
        assert_eq!(
            shard_file_name("model", 0, 3),
            "model-00001-of-00003.safetensors"
        );
        assert_eq!(
            shard_file_name("model", 11, 12),
            "model-00012-of-00012.safetensors"
        );
    }

    #[test]
    fn index_json_escapes_non_ascii_like_python() {
        let mut map = BTreeMap::new();
        map.insert(
            "poids.é😀".to_owned(),
            "model-00001-of-00001.safetensors".to_owned(),
        );
        let text = ShardIndex::new(4, map).to_json();
        assert!(text.contains(r#""poids.\u00e9\ud83d\ude00""#), "{text}");
        assert!(text.is_ascii());
        let back = ShardIndex::from_json(&text).unwrap();
        assert!(back.weight_map.contains_key("poids.é😀"));
    }
}
