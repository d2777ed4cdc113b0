//! torch.distributed.checkpoint directories in torch's default format
//! (`FileSystemWriter`: a pickled `.metadata` and `.distcp` files), read
//! without executing anything: the metadata through the safe pickle VM,
//! each saved item as the `torch.save` zip it is.
//!
//! Tensors come out whole (their chunks placed at the offsets the metadata
//! records, every element covered exactly once); non-tensor values come
//! back through the safe reader and are nested by the planner's paths into
//! one structure (docs/checkpoint-format.md), so `safeweights.load` of the
//! output equals torch's `dcp_to_torch_save` + `torch.load` of the input.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value as Json};

use safeweights::slice::place_block;
use safeweights_pickle::dcp::{Chunk, DcpMetadata, Entry, StorageItem, METADATA_FILE};
use safeweights_pickle::pickle::Value;
use safeweights_pickle::source::Source;
use safeweights_pickle::torch::{Checkpoint, STRUCTURE_VERSION};
use safeweights_pickle::{Error, Limits, Result};

use crate::input::InputTensor;

/// Whether `path` is a directory holding torch's default DCP format.
pub fn is_torch_dcp_directory(path: &Path) -> bool {
    path.is_dir() && path.join(METADATA_FILE).is_file()
}

/// An opened checkpoint directory: its metadata and where each tensor's
/// chunks are.
#[derive(Debug)]
pub(crate) struct DcpInput {
    directory: PathBuf,
    /// Per output tensor, its chunks and their items.
    tensors: Vec<Vec<(Chunk, StorageItem)>>,
    limits: Limits,
}

/// What opening a directory yields for the converter.
pub(crate) struct Opened {
    pub(crate) input: DcpInput,
    pub(crate) tensors: Vec<InputTensor>,
    pub(crate) structure: Json,
}

/// Reads and checks the metadata, and every non-tensor value.
pub(crate) fn open(directory: &Path, limits: &Limits) -> Result<Opened> {
    let metadata = DcpMetadata::open(directory, limits)?;
    let mut tensors = Vec::new();
    let mut inputs = Vec::new();
    let mut leaves = Vec::new();
    for (fqn, entry) in &metadata.entries {
        let within = |e: Error| e.within(format!("`{fqn}`"));
        let leaf = match entry {
            Entry::Tensor(tensor) => {
                let dtype = tensor.dtype.dtype.ok_or_else(|| {
                    within(Error::checkpoint(format!(
                        "torch.{} has no safetensors dtype",
                        tensor.dtype.name
                    )))
                })?;
                let chunks =
                    place_chunks(&metadata, fqn, &tensor.chunks, &tensor.size).map_err(within)?;
                for (chunk, item) in &chunks {
                    check_fits(directory, item, chunk_bytes(&chunk.sizes, dtype))
                        .map_err(within)?;
                }
                inputs.push(InputTensor {
                    name: fqn.clone(),
                    dtype,
                    shape: tensor.size.clone(),
                });
                tensors.push(chunks);
                tagged("$tensor", Json::String(fqn.clone()))
            }
            Entry::Bytes => read_value(directory, &metadata, fqn, limits).map_err(within)?,
            other => {
                return Err(within(Error::checkpoint(format!(
                    "unknown entry {other:?}"
                ))))
            }
        };
        leaves.push((path_of(&metadata, fqn), leaf));
    }
    let root = nest(leaves)?;
    let mut document = Map::new();
    document.insert("version".to_owned(), Json::from(STRUCTURE_VERSION));
    document.insert("root".to_owned(), root);
    Ok(Opened {
        input: DcpInput {
            directory: directory.to_owned(),
            tensors,
            limits: limits.clone(),
        },
        tensors: inputs,
        structure: Json::Object(document),
    })
}

fn tagged(tag: &str, body: Json) -> Json {
    let mut map = Map::new();
    map.insert(tag.to_owned(), body);
    Json::Object(map)
}

/// The item of `fqn` (and, for a tensor chunk, its offsets).
fn item<'m>(
    metadata: &'m DcpMetadata,
    fqn: &str,
    offsets: Option<&[u64]>,
) -> Result<&'m StorageItem> {
    let found = metadata
        .storage
        .iter()
        .find(|s| s.fqn == fqn && s.chunk_offsets.as_deref() == offsets)
        .ok_or_else(|| Error::checkpoint("the metadata records no storage for it"))?;
    if !found.transforms.is_empty() {
        return Err(Error::usage(format!(
            "it was saved with storage transforms {:?}, which this converter does not undo",
            found.transforms
        )));
    }
    Ok(found)
}

/// Pairs each chunk with its item, and checks that the chunks lie inside
/// the tensor and cover every element exactly once (no overlap, and as
/// many elements as the tensor has).
fn place_chunks(
    metadata: &DcpMetadata,
    fqn: &str,
    chunks: &[Chunk],
    size: &[u64],
) -> Result<Vec<(Chunk, StorageItem)>> {
    let numel = |sizes: &[u64]| sizes.iter().try_fold(1u64, |n, &s| n.checked_mul(s));
    let mut covered = 0u64;
    for (i, chunk) in chunks.iter().enumerate() {
        let inside = chunk.offsets.len() == size.len()
            && chunk
                .offsets
                .iter()
                .zip(&chunk.sizes)
                .zip(size)
                .all(|((&o, &s), &n)| o.checked_add(s).is_some_and(|end| end <= n));
        if !inside {
            return Err(Error::checkpoint(format!(
                "chunk at {:?} of shape {:?} lies outside the tensor's shape {size:?}",
                chunk.offsets, chunk.sizes
            )));
        }
        if let Some(other) = chunks[..i].iter().find(|c| overlap(c, chunk)) {
            return Err(Error::checkpoint(format!(
                "chunks at {:?} and {:?} overlap",
                other.offsets, chunk.offsets
            )));
        }
        covered = covered.saturating_add(numel(&chunk.sizes).unwrap_or(u64::MAX));
    }
    if Some(covered) != numel(size) {
        return Err(Error::checkpoint(format!(
            "its chunks hold {covered} elements, not all of shape {size:?}"
        )));
    }
    chunks
        .iter()
        .map(|chunk| {
            let item = item(metadata, fqn, Some(chunk.offsets.as_slice()))?;
            Ok((chunk.clone(), item.clone()))
        })
        .collect()
}

fn overlap(a: &Chunk, b: &Chunk) -> bool {
    (0..a.offsets.len()).all(|d| {
        a.offsets[d] < b.offsets[d] + b.sizes[d] && b.offsets[d] < a.offsets[d] + a.sizes[d]
    })
}

/// Dimensions or offsets as this machine's indices.
fn in_memory(values: &[u64]) -> Result<Vec<usize>> {
    values
        .iter()
        .map(|&n| usize::try_from(n).map_err(|_| Error::usage("tensor too large for this machine")))
        .collect()
}

/// Bytes of a contiguous chunk of `sizes` (saturating: too large fails
/// [`check_fits`]).
fn chunk_bytes(sizes: &[u64], dtype: safeweights_pickle::Dtype) -> u64 {
    let element = dtype.bits().div_ceil(8) as u64;
    sizes
        .iter()
        .try_fold(element, |n, &s| n.checked_mul(s))
        .unwrap_or(u64::MAX)
}

/// Checks, before anything is allocated for it, that an item lies inside
/// its file and is long enough to hold `needed` bytes of tensor data: the
/// output buffers are then bounded by the files' real sizes, whatever
/// shape the metadata claims.
fn check_fits(directory: &Path, item: &StorageItem, needed: u64) -> Result<()> {
    let path = directory.join(&item.relative_path);
    let len = std::fs::metadata(&path)
        .map_err(|e| Error::io(&path, e))?
        .len();
    if item.end() > len || item.start.checked_add(item.length).is_none() {
        return Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the metadata places an item at bytes {}..{}, past the file's end ({len} bytes)",
                    item.start,
                    item.end()
                ),
            ),
        ));
    }
    if item.length < needed {
        return Err(Error::checkpoint(format!(
            "its item in {} at byte {} holds {} bytes, fewer than the {needed} its chunk needs",
            item.relative_path, item.start, item.length
        )));
    }
    Ok(())
}

/// The bytes of one item, copied out of its file.
fn item_bytes(directory: &Path, item: &StorageItem) -> Result<Vec<u8>> {
    let path = directory.join(&item.relative_path);
    let source = Source::open(&path)?;
    let range = usize::try_from(item.start)
        .ok()
        .zip(usize::try_from(item.end()).ok())
        .filter(|&(_, end)| end <= source.bytes().len());
    let Some((start, end)) = range else {
        return Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the metadata places an item at bytes {}..{}, past the file's end ({} bytes)",
                    item.start,
                    item.end(),
                    source.bytes().len()
                ),
            ),
        ));
    };
    safeweights_pickle::source::guarded(|| Ok(source.bytes()[start..end].to_vec()))
}

/// A non-tensor value: its `torch.save` stream through the safe reader.
fn read_value(
    directory: &Path,
    metadata: &DcpMetadata,
    fqn: &str,
    limits: &Limits,
) -> Result<Json> {
    let item = item(metadata, fqn, None)?;
    let checkpoint =
        Checkpoint::from_bytes_with_limits(item_bytes(directory, item)?, limits.clone())
            .map_err(|e| e.within(format!("{} at byte {}", item.relative_path, item.start)))?;
    if !checkpoint.tensors().is_empty() {
        return Err(Error::checkpoint(
            "a non-tensor value that holds tensors (DCP saves tensors as tensor items)",
        ));
    }
    let mut document = checkpoint.structure()?;
    Ok(document
        .as_object_mut()
        .and_then(|d| d.remove("root"))
        .unwrap_or(Json::Null))
}

/// The planner's path of `fqn`, or its dotted parts when none is recorded.
fn path_of(metadata: &DcpMetadata, fqn: &str) -> Vec<Key> {
    match metadata.paths.iter().find(|(key, _)| key == fqn) {
        Some((_, parts)) => parts
            .iter()
            .map(|part| match part {
                Value::Int(i) => Key::Index(*i),
                Value::Str(s) => Key::Name(s.to_string()),
                other => Key::Name(format!("{other:?}")),
            })
            .collect(),
        None => vec![Key::Name(fqn.to_owned())],
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Key {
    Name(String),
    Index(i64),
}

enum Node {
    Leaf(Json),
    Dict(Vec<(String, Option<Node>)>),
    List(Vec<Option<Node>>),
}

/// Nests the leaves by their paths, as torch's `unflatten_state_dict`
/// (`set_element`) does: string keys make dicts, integer keys lists
/// (padded with `None`).
fn nest(leaves: Vec<(Vec<Key>, Json)>) -> Result<Json> {
    let mut root = Node::Dict(Vec::new());
    for (path, leaf) in leaves {
        insert(&mut root, &path, leaf)?;
    }
    Ok(to_json(root))
}

fn insert(node: &mut Node, path: &[Key], leaf: Json) -> Result<()> {
    let clash = || Error::checkpoint("two saved keys claim the same place in the state");
    let Some((key, rest)) = path.split_first() else {
        return Err(clash());
    };
    let slot = match (node, key) {
        (Node::Dict(items), Key::Name(name)) => {
            let at = match items.iter().position(|(k, _)| k == name) {
                Some(at) => at,
                None => {
                    items.push((name.clone(), None));
                    items.len() - 1
                }
            };
            &mut items[at].1
        }
        (Node::List(items), Key::Index(i)) => {
            let i = usize::try_from(*i).map_err(|_| Error::checkpoint("a negative list index"))?;
            if i >= items.len() {
                items.resize_with(i + 1, || None);
            }
            &mut items[i]
        }
        _ => return Err(clash()),
    };
    match rest.first() {
        None if slot.is_none() => {
            *slot = Some(Node::Leaf(leaf));
            Ok(())
        }
        None => Err(clash()),
        Some(next) => {
            let inner = slot.get_or_insert_with(|| match next {
                Key::Index(_) => Node::List(Vec::new()),
                Key::Name(_) => Node::Dict(Vec::new()),
            });
            insert(inner, rest, leaf)
        }
    }
}

fn to_json(node: Node) -> Json {
    match node {
        Node::Leaf(json) => json,
        Node::Dict(items) => tagged(
            "$dict",
            Json::Array(
                items
                    .into_iter()
                    .map(|(k, v)| Json::Array(vec![Json::String(k), v.map_or(Json::Null, to_json)]))
                    .collect(),
            ),
        ),
        Node::List(items) => Json::Array(
            items
                .into_iter()
                .map(|n| n.map_or(Json::Null, to_json))
                .collect(),
        ),
    }
}

impl DcpInput {
    /// Tensor `i` whole: contiguous, row-major, little-endian.
    pub(crate) fn read(&self, i: usize, tensor: &InputTensor) -> Result<Cow<'_, [u8]>> {
        let chunks = self
            .tensors
            .get(i)
            .ok_or_else(|| Error::usage("tensor index out of range"))?;
        let element = tensor.dtype.bits().div_ceil(8);
        // Checked when opened: the chunks tile the tensor and each fits its
        // item, so this is at most the files' size.
        let total = usize::try_from(chunk_bytes(&tensor.shape, tensor.dtype))
            .map_err(|_| Error::usage("tensor too large for this machine"))?;
        let mut out = vec![0u8; total];
        let shape = in_memory(&tensor.shape)?;
        for (chunk, item) in chunks {
            let bytes = self.read_chunk(tensor, chunk, item)?;
            let (offsets, sizes) = (in_memory(&chunk.offsets)?, in_memory(&chunk.sizes)?);
            place_block(&bytes, &offsets, &sizes, &shape, element, &mut out);
        }
        Ok(Cow::Owned(out))
    }

    /// One chunk's bytes, checked against what the metadata says of it.
    fn read_chunk(
        &self,
        tensor: &InputTensor,
        chunk: &Chunk,
        item: &StorageItem,
    ) -> Result<Vec<u8>> {
        let within = |e: Error| {
            e.within(format!(
                "chunk at {:?} of `{}` ({} at byte {})",
                chunk.offsets, tensor.name, item.relative_path, item.start
            ))
        };
        let checkpoint = Checkpoint::from_bytes_with_limits(
            item_bytes(&self.directory, item)?,
            self.limits.clone(),
        )
        .map_err(within)?;
        let [entry] = checkpoint.tensors() else {
            return Err(within(Error::checkpoint(format!(
                "holds {} tensors, not one",
                checkpoint.tensors().len()
            ))));
        };
        if entry.dtype != tensor.dtype || entry.shape != chunk.sizes {
            return Err(within(Error::checkpoint(format!(
                "holds a {:?} tensor of shape {:?}, the metadata says {:?} of shape {:?}",
                entry.dtype, entry.shape, tensor.dtype, chunk.sizes
            ))));
        }
        Ok(checkpoint.read_tensor(entry).map_err(within)?.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(out: &mut [u8], bytes: &[u8], shape: &[u64], chunk: &Chunk, element: usize) {
        let usize_of = |v: &[u64]| in_memory(v).unwrap();
        place_block(
            bytes,
            &usize_of(&chunk.offsets),
            &usize_of(&chunk.sizes),
            &usize_of(shape),
            element,
            out,
        );
    }

    #[test]
    fn chunks_are_placed_row_by_row() {
        // A 3x4 byte matrix from two column blocks of width 2.
        let shape = [3u64, 4];
        let mut out = vec![0u8; 12];
        let left = Chunk {
            offsets: vec![0, 0],
            sizes: vec![3, 2],
        };
        let right = Chunk {
            offsets: vec![0, 2],
            sizes: vec![3, 2],
        };
        place(&mut out, &[0, 1, 4, 5, 8, 9], &shape, &left, 1);
        place(&mut out, &[2, 3, 6, 7, 10, 11], &shape, &right, 1);
        assert_eq!(out, (0..12).collect::<Vec<u8>>());
    }

    #[test]
    fn nesting_follows_planner_paths() {
        let name = |s: &str| Key::Name(s.into());
        let root = nest(vec![
            (vec![name("model"), name("w")], Json::from(1)),
            (vec![name("opt"), Key::Index(1)], Json::from(2)),
            (vec![name("step")], Json::from(3)),
        ])
        .unwrap();
        let pairs = |items: Vec<(&str, Json)>| {
            tagged(
                "$dict",
                Json::Array(
                    items
                        .into_iter()
                        .map(|(k, v)| serde_json::json!([k, v]))
                        .collect(),
                ),
            )
        };
        let want = pairs(vec![
            ("model", pairs(vec![("w", Json::from(1))])),
            ("opt", serde_json::json!([null, 2])),
            ("step", Json::from(3)),
        ]);
        assert_eq!(root, want);
        assert!(nest(vec![
            (vec![name("a")], Json::from(1)),
            (vec![name("a"), name("b")], Json::from(2)),
        ])
        .is_err());
    }
}
