//! What `convert` reads: one file of any supported format, recognised by
//! its content (never its name), or a sharded checkpoint's index file and
//! the shard files it lists.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use safeweights::format::HeaderLimits;
use safeweights::shards::ShardIndex;
use safeweights::{sniff, FileKind, Header};
use serde_json::{Map, Value as Json};

use safeweights_pickle::numpy::{self, Npz};
use safeweights_pickle::source::Source;
use safeweights_pickle::torch::{Checkpoint, Format, Skipped};
use safeweights_pickle::zip::ZipArchive;
use safeweights_pickle::Dtype;
use safeweights_pickle::Limits;
use safeweights_pickle::{Error, Result};

/// The format of a converted input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputFormat {
    /// A `torch.save` zip checkpoint.
    TorchZip,
    /// A legacy (pre-1.6) torch checkpoint.
    TorchLegacy,
    /// A numpy `.npy` array.
    Npy,
    /// A numpy `.npz` archive of arrays.
    Npz,
    /// A torch.distributed.checkpoint directory in torch's default format
    /// (`.metadata` plus `.distcp` files).
    TorchDcp,
}

/// A tensor as the input holds it.
#[derive(Debug, Clone)]
pub(crate) struct InputTensor {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<u64>,
}

#[derive(Debug)]
enum Content {
    // Boxed: a checkpoint is much larger than the numpy variants.
    Torch(Box<Checkpoint>),
    Npy(Source),
    Npz(Source, Npz),
    Dcp(Box<crate::dcp::DcpInput>),
}

/// One input file, parsed and validated; tensor bytes are read on demand.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) path: PathBuf,
    pub(crate) format: InputFormat,
    pub(crate) tensors: Vec<InputTensor>,
    pub(crate) aliases: Vec<(String, String)>,
    pub(crate) skipped: Vec<Skipped>,
    /// The checkpoint's plain values (epoch, hyper-parameters).
    pub(crate) values: Map<String, Json>,
    /// A torch checkpoint's whole structure (docs/checkpoint-format.md),
    /// when every value in it was converted.
    pub(crate) structure: Option<Json>,
    content: Content,
    limits: Limits,
}

/// Everything to convert: one part, or one per shard of an index.
#[derive(Debug)]
pub(crate) struct Input {
    pub(crate) parts: Vec<Part>,
}

/// What an input file is, as [`detect`] recognises it.
pub(crate) enum Kind {
    Torch,
    Npy,
    /// The archive, already parsed.
    Npz(ZipArchive),
    Index,
}

/// Opens `path`, refusing anything unsafe or malformed before a single
/// byte of output exists.
pub(crate) fn open(path: &Path, limits: &Limits) -> Result<Input> {
    if crate::dcp::is_torch_dcp_directory(path) {
        return Ok(Input {
            parts: vec![dcp_part(path, limits)?],
        });
    }
    let source = Source::open(path)?;
    let kind = detect_file(path, &source, limits)?;
    if let Kind::Index = kind {
        let parts = crate::index::open_shards(path, &source, limits)?;
        return Ok(Input { parts });
    }
    Ok(Input {
        parts: vec![open_part(path, source, kind, limits)?],
    })
}

/// Recognises the format of the file at `path`, opened as `source`.
pub(crate) fn detect_file(path: &Path, source: &Source, limits: &Limits) -> Result<Kind> {
    detect(source.bytes(), limits).map_err(|e| e.within(path.display().to_string()))
}

/// Opens one file of the given kind, which must not be an index (a shard,
/// or a lone file).
pub(crate) fn open_part(path: &Path, source: Source, kind: Kind, limits: &Limits) -> Result<Part> {
    let within = |e: Error| e.within(path.display().to_string());
    let mut part = match kind {
        Kind::Torch => torch_part(source, limits).map_err(within)?,
        Kind::Npy => npy_part(path, source).map_err(within)?,
        Kind::Npz(archive) => npz_part(source, archive).map_err(within)?,
        Kind::Index => {
            return Err(within(Error::usage(
                "a sharded checkpoint index cannot be a shard of another index",
            )))
        }
    };
    part.path = path.to_owned();
    part.limits = limits.clone();
    Ok(part)
}

/// Recognises the format with the core's sniffer and, for zips, the members.
fn detect(data: &[u8], limits: &Limits) -> Result<Kind> {
    match sniff(data) {
        FileKind::Zip => Ok(match ZipArchive::parse(data, limits) {
            Ok(zip) if is_npz(&zip) => Kind::Npz(zip),
            _ => Kind::Torch,
        }),
        FileKind::Numpy => Ok(Kind::Npy),
        FileKind::Safetensors => match Header::parse_file(data, &HeaderLimits::default()) {
            Ok(_) => Err(Error::usage(
                "this file already is safetensors; there is nothing to convert",
            )),
            Err(source) => Err(Error::Safetensors { source }),
        },
        // An index is JSON text, which no sniffed format starts with.
        FileKind::Unknown if data.trim_ascii_start().starts_with(b"{") => Ok(Kind::Index),
        // Torch's reader explains what any other file most likely is.
        _ => Ok(Kind::Torch),
    }
}

/// A zip of `.npy` arrays without a torch `data.pkl`.
fn is_npz(zip: &ZipArchive) -> bool {
    let names = || zip.entries().iter().map(|e| e.name.as_str());
    !names().any(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
        && names().any(|n| n.ends_with(".npy"))
}

fn empty_part(format: InputFormat, content: Content) -> Part {
    Part {
        path: PathBuf::new(),
        format,
        tensors: Vec::new(),
        aliases: Vec::new(),
        skipped: Vec::new(),
        values: Map::new(),
        structure: None,
        content,
        limits: Limits::default(),
    }
}

fn torch_part(source: Source, limits: &Limits) -> Result<Part> {
    let ckpt = Checkpoint::from_source(source, limits.clone())?;
    let format = match ckpt.format() {
        Format::Legacy => InputFormat::TorchLegacy,
        _ => InputFormat::TorchZip,
    };
    let tensors = ckpt
        .tensors()
        .iter()
        .map(|t| InputTensor {
            name: t.name.clone(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    let aliases = ckpt.aliases().to_vec();
    let mut skipped = ckpt.skipped().to_vec();
    let values = ckpt.metadata().clone();
    let structure = match ckpt.structure() {
        Ok(document) => Some(document),
        Err(error) => {
            skipped.push(Skipped {
                path: String::new(),
                reason: format!("{error}; the output holds the tensors by name only"),
            });
            None
        }
    };
    let mut part = empty_part(format, Content::Torch(Box::new(ckpt)));
    part.tensors = tensors;
    part.aliases = aliases;
    part.skipped = skipped;
    part.values = values;
    part.structure = structure;
    Ok(part)
}

fn dcp_part(directory: &Path, limits: &Limits) -> Result<Part> {
    let opened = crate::dcp::open(directory, limits)
        .map_err(|e| e.within(directory.display().to_string()))?;
    let mut part = empty_part(InputFormat::TorchDcp, Content::Dcp(Box::new(opened.input)));
    part.tensors = opened.tensors;
    part.structure = Some(opened.structure);
    part.path = directory.to_owned();
    part.limits = limits.clone();
    Ok(part)
}

/// The array is named after the file: `weights.npy` holds `weights`.
fn npy_part(path: &Path, source: Source) -> Result<Part> {
    let header = numpy::parse_header(source.bytes())?;
    let body = source.bytes().len().saturating_sub(header.data_offset) as u64;
    let expected = numpy::data_len(&header)?;
    if body != expected {
        return Err(Error::numpy(format!(
            "data holds {body} bytes but shape {:?} of {} needs {expected}",
            header.shape, header.descr
        )));
    }
    let name = path
        .file_stem()
        .map_or_else(|| "array".to_owned(), |s| s.to_string_lossy().into_owned());
    let mut part = empty_part(InputFormat::Npy, Content::Npy(source));
    part.tensors.push(InputTensor {
        name,
        dtype: header.dtype,
        shape: header.shape,
    });
    Ok(part)
}

/// One tensor per `.npy` member, named like `numpy.load` names them.
fn npz_part(source: Source, archive: ZipArchive) -> Result<Part> {
    let npz = Npz::from_archive(archive);
    let headers = npz.headers(source.bytes())?;
    let skipped = npz
        .other_members()
        .into_iter()
        .map(|name| Skipped {
            path: name.to_owned(),
            reason: "archive member is not a .npy array".into(),
        })
        .collect();
    let tensors = headers
        .into_iter()
        .map(|(name, header)| InputTensor {
            name,
            dtype: header.dtype,
            shape: header.shape,
        })
        .collect();
    let mut part = empty_part(InputFormat::Npz, Content::Npz(source, npz));
    part.tensors = tensors;
    part.skipped = skipped;
    Ok(part)
}

impl Part {
    /// Tensor `i`'s bytes: contiguous, row-major, little-endian.
    pub(crate) fn read(&self, i: usize) -> Result<Cow<'_, [u8]>> {
        let tensor = self
            .tensors
            .get(i)
            .ok_or_else(|| Error::usage("tensor index out of range"))?;
        self.read_inner(i, tensor)
            .map_err(|e| e.within(self.path.display().to_string()))
    }

    fn read_inner(&self, i: usize, tensor: &InputTensor) -> Result<Cow<'_, [u8]>> {
        let limits = &self.limits;
        let (header, bytes) = match &self.content {
            Content::Torch(ckpt) => {
                let entry = ckpt
                    .tensors()
                    .get(i)
                    .ok_or_else(|| Error::usage("tensor index out of range"))?;
                return ckpt.read_tensor(entry);
            }
            Content::Dcp(dcp) => return dcp.read(i, tensor),
            Content::Npy(source) => numpy::read_npy(source.bytes(), limits)?,
            Content::Npz(source, npz) => {
                let (header, bytes) = npz.read(source.bytes(), &tensor.name, limits)?;
                (header, Cow::Owned(bytes))
            }
        };
        // The header was peeked at when planning; the verified read must
        // agree with what the output's layout was planned from.
        if header.dtype != tensor.dtype || header.shape != tensor.shape {
            return Err(Error::numpy(format!(
                "array `{}` changed between planning and reading",
                tensor.name
            )));
        }
        Ok(bytes)
    }
}

/// Parses an index file's text.
pub(crate) fn parse_index(path: &Path, source: &Source) -> Result<ShardIndex> {
    let text = std::str::from_utf8(source.bytes())
        .map_err(|_| Error::index("the index file is not UTF-8 text"))
        .map_err(|e| e.within(path.display().to_string()))?;
    ShardIndex::from_json(text).map_err(|e| Error::Safetensors {
        source: e.in_file(path),
    })
}
