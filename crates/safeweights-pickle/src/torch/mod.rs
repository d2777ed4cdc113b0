//! PyTorch checkpoints (`torch.save` zip and legacy formats), read without
//! torch and without executing anything.
//!
//! ```no_run
//! # fn main() -> safeweights_pickle::Result<()> {
//! let ckpt = safeweights_pickle::torch::Checkpoint::open("model.pt".as_ref())?;
//! for entry in ckpt.tensors() {
//!     let bytes = ckpt.read_tensor(entry)?; // one tensor at a time
//!     println!("{} {:?} {:?} {}", entry.name, entry.dtype, entry.shape, bytes.len());
//! }
//! # Ok(()) }
//! ```

mod flatten;
mod gather;
mod legacy;
mod structure;
mod zipfmt;

use std::borrow::Cow;
use std::path::Path;

use safeweights::FileKind;
use serde_json::{Map, Value as Json};

pub use flatten::{Skipped, TensorEntry};
pub(crate) use gather::tensor_bytes;
pub use structure::{STRUCTURE_KEY, STRUCTURE_VERSION};
pub(crate) use zipfmt::is_torchscript_member;

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{StorageRef, Value};
use crate::source::{guarded, Source};

/// The container format of a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// The zip format written by `torch.save` since torch 1.6.
    Zip,
    /// The legacy stream of pickles (`_use_new_zipfile_serialization=False`).
    Legacy,
}

/// Where storages live, per format.
#[derive(Debug)]
enum Storages {
    Zip(zipfmt::ZipStorages),
    Legacy(legacy::LegacyStorages),
}

/// An opened checkpoint: the object tree, its flattened tensors, and
/// on-demand access to each tensor's bytes.
#[derive(Debug)]
pub struct Checkpoint {
    source: Source,
    limits: Limits,
    format: Format,
    storages: Storages,
    root: Value,
    flat: flatten::Flat,
}

/// Whether `data` looks like a legacy torch checkpoint: its first pickle
/// is the literal magic number.
pub fn is_legacy(data: &[u8]) -> bool {
    legacy::is_legacy(data)
}

impl Checkpoint {
    /// Opens and memory-maps a checkpoint with default limits. The format
    /// is detected from the content, never from the file name.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        Checkpoint::open_with_limits(path, Limits::default())
    }

    /// Opens a checkpoint with explicit limits.
    pub fn open_with_limits(path: &Path, limits: Limits) -> Result<Checkpoint> {
        let source = Source::open(path)?;
        Checkpoint::from_source(source, limits).map_err(|e| e.within(path.display().to_string()))
    }

    /// Reads a checkpoint held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Checkpoint> {
        Checkpoint::from_bytes_with_limits(bytes, Limits::default())
    }

    /// Reads a checkpoint held in memory, with explicit limits.
    pub fn from_bytes_with_limits(bytes: Vec<u8>, limits: Limits) -> Result<Checkpoint> {
        Checkpoint::from_source(Source::Owned(bytes), limits)
    }

    /// Reads a checkpoint from an opened [`Source`].
    pub fn from_source(source: Source, limits: Limits) -> Result<Checkpoint> {
        let parts = guarded(|| load_parts(source.bytes(), &limits))?;
        Ok(Checkpoint {
            source,
            limits,
            format: parts.format,
            storages: parts.storages,
            root: parts.root,
            flat: parts.flat,
        })
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The rebuilt object tree; tensors are descriptors.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Tensors by dotted name, in pickle order, without aliases.
    pub fn tensors(&self) -> &[TensorEntry] {
        &self.flat.tensors
    }

    /// `(alias, kept)`: names whose tensor covers exactly the same bytes as
    /// the kept tensor (tied weights); only the kept one is in `tensors()`.
    pub fn aliases(&self) -> &[(String, String)] {
        &self.flat.aliases
    }

    /// Plain values (numbers, strings, bools, None, lists of those) by
    /// dotted path, e.g. `epoch` or `optimizer.param_groups.0.lr`.
    pub fn metadata(&self) -> &Map<String, Json> {
        &self.flat.metadata
    }

    /// Values that are neither tensors nor representable metadata.
    pub fn skipped(&self) -> &[Skipped] {
        &self.flat.skipped
    }

    /// The whole object tree as the `safeweights.checkpoint` document
    /// (docs/checkpoint-format.md): what `safeweights.load` needs to
    /// rebuild what `torch.load(weights_only=True)` returns, tensors named
    /// as in [`tensors`](Self::tensors). Values that [`metadata`](Self::metadata)
    /// skips (NaN, bytes, complex...) are kept; `Err` names the first value
    /// it cannot hold (a tensor that was not converted, a bare storage...).
    pub fn structure(&self) -> Result<Json> {
        structure::document(&self.root, &self.flat.names, &self.limits)
    }

    /// Where `bytes` lie in the checkpoint's data (the file, for
    /// [`Checkpoint::open`]) when [`read_tensor`](Self::read_tensor)
    /// borrowed them from it; `None` for bytes it had to copy. Lets a
    /// caller map the same file itself and hand out zero-copy views.
    pub fn file_range(&self, bytes: &[u8]) -> Option<std::ops::Range<usize>> {
        let data = self.source.bytes();
        let start = (bytes.as_ptr() as usize).checked_sub(data.as_ptr() as usize)?;
        let end = start.checked_add(bytes.len())?;
        (end <= data.len()).then_some(start..end)
    }

    /// The tensor's bytes: contiguous, row-major, little-endian. Borrowed
    /// from the memory map when the stored layout already is that.
    ///
    /// A file truncated while this reads it is an `Io` error; bytes
    /// borrowed from the map must be read under the same protection
    /// (`safeweights::read::bus_error::guard`) by a caller that copies them.
    pub fn read_tensor(&self, entry: &TensorEntry) -> Result<Cow<'_, [u8]>> {
        guarded(|| self.read_tensor_unguarded(entry))
    }

    fn read_tensor_unguarded(&self, entry: &TensorEntry) -> Result<Cow<'_, [u8]>> {
        let t = &entry.tensor;
        let data = self.source.bytes();
        let (storage, big_endian) = match &self.storages {
            Storages::Zip(s) => (
                s.storage_bytes(data, &t.storage, &self.limits)?,
                s.big_endian,
            ),
            // Legacy storages are little-endian whatever sys_info says.
            Storages::Legacy(s) => (Cow::Borrowed(s.storage_bytes(data, &t.storage)?), false),
        };
        let within = |e: Error| e.within(format!("tensor `{}`", entry.name));
        match storage {
            Cow::Borrowed(bytes) => {
                gather::tensor_bytes(t, bytes, big_endian, &self.limits).map_err(within)
            }
            Cow::Owned(bytes) => gather::tensor_bytes(t, &bytes, big_endian, &self.limits)
                .map(|c| Cow::Owned(c.into_owned()))
                .map_err(within),
        }
    }
}

/// Everything a checkpoint holds besides its bytes.
struct Parts {
    format: Format,
    storages: Storages,
    root: Value,
    flat: flatten::Flat,
}

fn load_parts(data: &[u8], limits: &Limits) -> Result<Parts> {
    let (format, storages, loaded) = if crate::zip::is_zip(data) {
        let (s, loaded) = zipfmt::open(data, limits)?;
        (Format::Zip, Storages::Zip(s), loaded)
    } else if is_legacy(data) {
        let (s, loaded) = legacy::open(data, limits)?;
        (Format::Legacy, Storages::Legacy(s), loaded)
    } else {
        return Err(Error::checkpoint(describe_unknown(data)));
    };
    for storage in &loaded.storages {
        let have = match &storages {
            Storages::Zip(s) => s.record_len(storage)?,
            Storages::Legacy(s) => s.record_len(storage)?,
        };
        check_storage_size(storage, have)?;
    }
    let flat = flatten::flatten(&loaded.value, limits)?;
    Ok(Parts {
        format,
        storages,
        root: loaded.value,
        flat,
    })
}

/// Runs the whole safe reading path over `data` without keeping anything,
/// for the scanner: an error means [`Checkpoint`] would refuse the file.
pub(crate) fn validate(data: &[u8], limits: &Limits) -> Result<()> {
    load_parts(data, limits).map(drop)
}

/// As [`validate`], for a bare pickle.
pub(crate) fn validate_pickle(data: &[u8], limits: &Limits) -> Result<()> {
    let loaded = crate::pickle::load_pickle(data, 0, limits, crate::pickle::Policy::Torch)?;
    flatten::flatten(&loaded.value, limits).map(drop)
}

/// The record holding a storage must be exactly as large as declared.
fn check_storage_size(storage: &StorageRef, have: u64) -> Result<()> {
    let expected = storage
        .numel
        .checked_mul(storage.element_size() as u64)
        .ok_or_else(|| Error::checkpoint("storage size overflows 64 bits"))?;
    if have != expected {
        return Err(Error::checkpoint(format!(
            "storage `{}` declares {} elements of {} bytes ({expected} bytes) but its record \
             holds {have} bytes",
            storage.key,
            storage.numel,
            storage.element_size()
        )));
    }
    if let Some((offset, len)) = storage.view {
        if offset
            .checked_add(len)
            .is_none_or(|end| end > storage.numel)
        {
            return Err(Error::checkpoint(format!(
                "storage view ({offset}, {len}) lies outside storage `{}`",
                storage.key
            )));
        }
    }
    Ok(())
}

/// Explains what an unrecognized file most likely is, from the core's sniffer.
fn describe_unknown(data: &[u8]) -> String {
    if crate::tar::is_tar(data) && crate::tar::is_torch_tar(&crate::tar::members(data).0) {
        return "a torch checkpoint in the pre-0.4 tar format (members storages, tensors, \
                pickle), which the safe reader does not read: check it with `safeweights scan`, \
                then load it with torch in a sandbox and save it again with a current torch"
            .into();
    }
    match safeweights::sniff(data) {
        FileKind::GitLfsPointer => {
            "this is a git-lfs pointer file, not the checkpoint: fetch the real file with `git lfs pull`".into()
        }
        FileKind::Html => {
            "this is an HTML page (probably a download error page), not a checkpoint".into()
        }
        FileKind::Pickle => {
            "a bare pickle, not a torch checkpoint (torch.save writes a zip or a legacy stream); \
             use `safeweights scan` to inspect it"
                .into()
        }
        FileKind::Numpy => "a numpy .npy file: use the numpy reader".into(),
        FileKind::Safetensors => "a safetensors file, not a PyTorch checkpoint".into(),
        FileKind::Unknown => {
            "not a PyTorch checkpoint (neither a zip archive nor a legacy torch file)".into()
        }
        other => format!(
            "a {} file, not a PyTorch checkpoint (neither a zip archive nor a legacy torch file)",
            other.name()
        ),
    }
}
