//! torch.distributed.checkpoint's default format (`FileSystemWriter`): the
//! pickled `.metadata` file decoded as data, and where each saved item sits
//! in the `.distcp` files beside it.
//!
//! The metadata pickle instantiates DCP's own dataclasses (`Metadata`,
//! `TensorStorageMetadata`, `_StorageInfo`...). None of them is imported or
//! run: they go through the safe VM as allowed classes, recorded as data,
//! and are read back here field by field. Anything else in the pickle is
//! refused as in any other file.
//!
//! Each saved item (a tensor chunk, or a non-tensor value the planner
//! turned into bytes) is one `torch.save` zip at the offset and length the
//! metadata records, unless a storage transform (compression) was applied.

use std::path::Path;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{load_pickle, ObjectValue, Policy, Value};
use crate::scalar::ScalarType;
use crate::source::Source;

/// The name of the metadata file in a DCP checkpoint directory.
pub const METADATA_FILE: &str = ".metadata";

const METADATA_MODULE: &str = "torch.distributed.checkpoint.metadata";

/// DCP's classes the metadata pickle may instantiate, recorded as data.
const CLASSES: &[&str] = &[
    "torch.distributed.checkpoint.metadata.Metadata",
    "torch.distributed.checkpoint.metadata.TensorStorageMetadata",
    "torch.distributed.checkpoint.metadata.BytesStorageMetadata",
    "torch.distributed.checkpoint.metadata.ChunkStorageMetadata",
    "torch.distributed.checkpoint.metadata.TensorProperties",
    "torch.distributed.checkpoint.metadata.MetadataIndex",
    "torch.distributed.checkpoint.metadata.StorageMeta",
    "torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING",
    "torch.distributed.checkpoint.filesystem._StorageInfo",
    // `StorageMeta.checkpoint_id`: the directory as FileSystemWriter
    // stores it (only recorded; nothing here reads it).
    "pathlib.PosixPath",
    "pathlib.PurePosixPath",
    "pathlib.WindowsPath",
    "pathlib.PureWindowsPath",
];

/// What `.metadata` records about one key of the state dict.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Entry {
    /// A tensor, saved as one or more chunks.
    Tensor(TensorEntry),
    /// A non-tensor value, saved as a `torch.save` byte stream.
    Bytes,
}

/// A tensor of the state dict: its full shape and the chunks saved.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    /// Element type.
    pub dtype: ScalarType,
    /// Shape of the full tensor.
    pub size: Vec<u64>,
    /// The saved chunks (one per shard of a sharded tensor).
    pub chunks: Vec<Chunk>,
}

/// One chunk of a tensor: where it starts in the full tensor and its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Offset of the chunk in each dimension.
    pub offsets: Vec<u64>,
    /// Shape of the chunk.
    pub sizes: Vec<u64>,
}

/// Where one saved item lives: a byte range of one `.distcp` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageItem {
    /// The state-dict key (dotted).
    pub fqn: String,
    /// The chunk's offsets for a tensor chunk, `None` for a byte item.
    pub chunk_offsets: Option<Vec<u64>>,
    /// The file, relative to the checkpoint directory.
    pub relative_path: String,
    /// First byte of the item in that file.
    pub start: u64,
    /// Its length in bytes.
    pub length: u64,
    /// Storage transforms applied (compression...): when any, the bytes
    /// are not a plain `torch.save` stream.
    pub transforms: Vec<String>,
}

impl StorageItem {
    /// One past the last byte of the item.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.length)
    }
}

/// A decoded `.metadata` file.
#[derive(Debug, Clone, PartialEq)]
pub struct DcpMetadata {
    /// Every key of the saved state dict, in the order saved.
    pub entries: Vec<(String, Entry)>,
    /// Where every saved item lives.
    pub storage: Vec<StorageItem>,
    /// The nesting of each key (`cfg.lr` came from `("cfg", "lr")`), as
    /// the planner recorded it: strings and list indices.
    pub paths: Vec<(String, Vec<Value>)>,
    /// DCP's format version, when recorded.
    pub version: Option<String>,
}

impl DcpMetadata {
    /// Reads `dir/.metadata`.
    pub fn open(dir: &Path, limits: &Limits) -> Result<DcpMetadata> {
        let path = dir.join(METADATA_FILE);
        let source = Source::open(&path)?;
        DcpMetadata::parse(source.bytes(), limits).map_err(|e| e.within(path.display().to_string()))
    }

    /// Decodes the bytes of a `.metadata` file.
    pub fn parse(data: &[u8], limits: &Limits) -> Result<DcpMetadata> {
        let mut limits = limits.clone();
        limits
            .allowed_classes
            .extend(CLASSES.iter().map(|c| (*c).to_owned()));
        let loaded = load_pickle(data, 0, &limits, Policy::Torch)?;
        if loaded.end != data.len() {
            return Err(bad(format!(
                "{} bytes after the pickle",
                data.len() - loaded.end
            )));
        }
        if !loaded.storages.is_empty() {
            return Err(bad("the pickle references tensor storages"));
        }
        let state = state_of(&loaded.value, "Metadata")?;
        let entries = dict(field(state, "state_dict_metadata")?, "state_dict_metadata")?
            .iter()
            .map(|(key, value)| Ok((string(key, "a state dict key")?, entry(value)?)))
            .collect::<Result<Vec<_>>>()?;
        let storage = match field(state, "storage_data")? {
            Value::None => Vec::new(),
            value => dict(value, "storage_data")?
                .iter()
                .map(|(index, info)| storage_item(index, info))
                .collect::<Result<Vec<_>>>()?,
        };
        let paths = match state.get("planner_data") {
            Some(Value::Dict(items)) => items
                .iter()
                .map(|(key, path)| Ok((string(key, "a planner key")?, path_parts(path)?)))
                .collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let version = state.get("version").and_then(Value::as_str).map(Into::into);
        Ok(DcpMetadata {
            entries,
            storage,
            paths,
            version,
        })
    }

    /// The items stored in the file `relative_path`, in file order.
    pub fn items_in(&self, relative_path: &str) -> Vec<&StorageItem> {
        let mut items: Vec<&StorageItem> = self
            .storage
            .iter()
            .filter(|item| item.relative_path == relative_path)
            .collect();
        items.sort_by_key(|item| (item.start, item.length));
        items
    }
}

fn bad(message: impl Into<String>) -> Error {
    Error::checkpoint(format!(
        "not a torch.distributed.checkpoint .metadata file: {}",
        message.into()
    ))
}

/// The BUILD state of an instance of DCP's class `class`.
fn state_of<'v>(value: &'v Value, class: &str) -> Result<&'v Value> {
    let object = object_of(value, class)?;
    object
        .state
        .as_ref()
        .ok_or_else(|| bad(format!("a {class} without fields")))
}

fn object_of<'v>(value: &'v Value, class: &str) -> Result<&'v ObjectValue> {
    match value {
        Value::Object(object) if is_class(object, class) => Ok(object.as_ref()),
        other => Err(bad(format!(
            "expected a {class}, found {}",
            describe(other)
        ))),
    }
}

fn is_class(object: &ObjectValue, class: &str) -> bool {
    let module = if class == "_StorageInfo" {
        "torch.distributed.checkpoint.filesystem"
    } else {
        METADATA_MODULE
    };
    object
        .global
        .strip_prefix(module)
        .and_then(|rest| rest.strip_prefix('.'))
        == Some(class)
}

fn describe(value: &Value) -> String {
    match value {
        Value::Object(object) => object.global.to_string(),
        other => other.type_name().to_owned(),
    }
}

fn field<'v>(state: &'v Value, name: &str) -> Result<&'v Value> {
    state
        .get(name)
        .ok_or_else(|| bad(format!("no field {name:?}")))
}

fn dict<'v>(value: &'v Value, what: &str) -> Result<&'v [(Value, Value)]> {
    value
        .as_dict()
        .map(|items| &**items)
        .ok_or_else(|| bad(format!("{what} is a {}, not a dict", value.type_name())))
}

fn string(value: &Value, what: &str) -> Result<String> {
    value
        .as_str()
        .map(Into::into)
        .ok_or_else(|| bad(format!("{what} is a {}, not a str", value.type_name())))
}

fn uint(value: &Value, what: &str) -> Result<u64> {
    value
        .as_int()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| bad(format!("{what} is not a non-negative int")))
}

/// A `torch.Size` (or a plain tuple) of non-negative ints.
fn size(value: &Value, what: &str) -> Result<Vec<u64>> {
    match value {
        Value::Object(object) if &*object.global == "torch.Size" => match &*object.args {
            [inner] => size(inner, what),
            _ => Err(bad(format!("{what}: a torch.Size without one tuple"))),
        },
        Value::Tuple(items) | Value::List(items) => {
            items.iter().map(|item| uint(item, what)).collect()
        }
        other => Err(bad(format!(
            "{what} is a {}, not a size",
            other.type_name()
        ))),
    }
}

fn entry(value: &Value) -> Result<Entry> {
    if let Value::Object(object) = value {
        if is_class(object, "BytesStorageMetadata") {
            return Ok(Entry::Bytes);
        }
    }
    let state = state_of(value, "TensorStorageMetadata")?;
    let properties = state_of(field(state, "properties")?, "TensorProperties")?;
    // TensorProperties pickles its fields as a tuple, dtype first.
    let dtype = match properties {
        Value::Tuple(fields) => fields.first(),
        other => other.get("dtype"),
    };
    let dtype = match dtype {
        Some(Value::Dtype(scalar)) => *scalar,
        _ => return Err(bad("a tensor's properties hold no torch dtype")),
    };
    let chunks = match field(state, "chunks")? {
        Value::List(items) => items.iter().map(chunk).collect::<Result<Vec<_>>>()?,
        other => return Err(bad(format!("chunks is a {}", other.type_name()))),
    };
    Ok(Entry::Tensor(TensorEntry {
        dtype,
        size: size(field(state, "size")?, "size")?,
        chunks,
    }))
}

fn chunk(value: &Value) -> Result<Chunk> {
    let state = state_of(value, "ChunkStorageMetadata")?;
    let chunk = Chunk {
        offsets: size(field(state, "offsets")?, "chunk offsets")?,
        sizes: size(field(state, "sizes")?, "chunk sizes")?,
    };
    if chunk.offsets.len() != chunk.sizes.len() {
        return Err(bad("a chunk whose offsets and sizes differ in rank"));
    }
    Ok(chunk)
}

fn storage_item(index: &Value, info: &Value) -> Result<StorageItem> {
    let index = state_of(index, "MetadataIndex")?;
    let info = state_of(info, "_StorageInfo")?;
    let chunk_offsets = match index.get("offset") {
        None | Some(Value::None) => None,
        Some(offset) => Some(size(offset, "an index offset")?),
    };
    let transforms = match info.get("transform_descriptors") {
        None | Some(Value::None) => Vec::new(),
        Some(Value::List(items) | Value::Tuple(items)) => items
            .iter()
            .map(|t| string(t, "a transform descriptor"))
            .collect::<Result<_>>()?,
        Some(other) => return Err(bad(format!("transforms are a {}", other.type_name()))),
    };
    let relative_path = string(field(info, "relative_path")?, "relative_path")?;
    if relative_path.is_empty()
        || relative_path.contains(['/', '\\', '\0'])
        || relative_path == ".."
        || relative_path == "."
    {
        return Err(bad(format!(
            "the storage file {relative_path:?} is not a plain file name"
        )));
    }
    Ok(StorageItem {
        fqn: string(field(index, "fqn")?, "an index fqn")?,
        chunk_offsets,
        relative_path,
        start: uint(field(info, "offset")?, "a storage offset")?,
        length: uint(field(info, "length")?, "a storage length")?,
        transforms,
    })
}

/// A planner path: a tuple of strings and list indices.
fn path_parts(value: &Value) -> Result<Vec<Value>> {
    match value {
        Value::Tuple(items) | Value::List(items) => items
            .iter()
            .map(|item| match item {
                Value::Str(_) | Value::Int(_) => Ok(item.clone()),
                other => Err(bad(format!("a planner path holds a {}", other.type_name()))),
            })
            .collect(),
        other => Err(bad(format!("a planner path is a {}", other.type_name()))),
    }
}
