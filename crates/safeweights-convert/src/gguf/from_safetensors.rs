//! Safetensors to GGUF, streamed: the header first, then one tensor at a
//! time (memory stays bounded by one tensor), into a temporary file that
//! replaces the output only when complete.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use safeweights::read::OpenOptions;
use safeweights::shards::ShardedCheckpoint;
use safeweights::write::AtomicFile;
use safeweights::{Dtype, TensorEntry as StInfo};
use safeweights_gguf::quant::quantize_into;
use safeweights_gguf::{GgmlType, GgufWriter, Layout, OwnedValue, TensorDecl};
use serde_json::Value as Json;

use super::error::GgufError;
use super::pipeline::{convert_chunked, Unit};
use super::{llama, meta, mxfp4, LAYOUT_KEY};

/// Which tensor names and metadata to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arch {
    /// Names as they are, no architecture metadata.
    #[default]
    None,
    /// Hugging Face Llama to GGUF names (gguf-py's `TensorNameMap`), the
    /// rotary permutation of Q and K, hyperparameters from `config.json`.
    Llama,
}

/// How to convert safetensors to GGUF.
#[derive(Debug, Clone, Default)]
pub struct SafetensorsToGguf {
    /// The type of floating matrices: F32, F16 (the default), BF16, Q8_0,
    /// Q4_0, Q4_1, Q5_0 or Q5_1. Vectors (norms, biases) stay F32, and a
    /// matrix whose rows are not whole blocks falls back to F16, as
    /// llama.cpp's converter does. Ignored (and must be unset) for a
    /// `--keep-quantized` file, which is rebuilt as it was.
    pub outtype: Option<GgmlType>,
    /// Tensor names and metadata.
    pub arch: Arch,
    /// Replace an existing output.
    pub force: bool,
    /// Sync the file to disk before renaming it into place.
    pub sync: bool,
}

/// What a safetensors to GGUF conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufWriteReport {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors quantized or cast.
    pub quantized: usize,
    /// Whether a `--keep-quantized` file was rebuilt byte for byte.
    pub rebuilt: bool,
    /// The file written.
    pub file: PathBuf,
}

struct Planned {
    source: String,
    decl: TensorDecl,
    permute: Option<usize>,
}

/// Converts a safetensors file, directory or index to the GGUF file `output`.
pub fn safetensors_to_gguf(
    input: &Path,
    output: &Path,
    options: &SafetensorsToGguf,
) -> Result<GgufWriteReport, GgufError> {
    let ckpt = ShardedCheckpoint::open_path(input, &OpenOptions::default())?;
    if !options.force && std::fs::symlink_metadata(output).is_ok() {
        return Err(GgufError::OutputExists {
            path: output.to_owned(),
        });
    }
    let file = AtomicFile::create(output)?;
    let sink = BufWriter::with_capacity(8 << 20, file.file());
    let source = GgufSource {
        checkpoint: &ckpt,
        input,
        config: None,
    };
    let (report, _) = write_gguf(&source, output, sink, options)?;
    file.commit(options.sync)?;
    Ok(report)
}

/// What [`write_gguf`] converts: an opened safetensors checkpoint (local
/// or remote), the path or URL it was opened from (for messages, and to
/// find `config.json` beside it), and the Llama `config.json` when the
/// caller already has it (a remote input's, fetched).
#[derive(Debug, Clone, Copy)]
pub struct GgufSource<'a> {
    /// The checkpoint.
    pub checkpoint: &'a ShardedCheckpoint,
    /// Where it was opened from.
    pub input: &'a Path,
    /// `config.json`'s content, for [`Arch::Llama`]; read beside `input`
    /// when `None`.
    pub config: Option<&'a Json>,
}

/// Streams the GGUF file for `source` into `sink` (a file, or a multipart
/// upload), one tensor at a time; `output` names it in messages. Returns
/// the report and the sink, flushed by the GGUF writer; the caller makes
/// the output appear (renames the file, completes the upload).
/// [`SafetensorsToGguf::force`] and `sync` are the caller's to apply.
pub fn write_gguf<W: Write + Send>(
    source: &GgufSource<'_>,
    output: &Path,
    sink: W,
    options: &SafetensorsToGguf,
) -> Result<(GgufWriteReport, W), GgufError> {
    let (ckpt, input) = (source.checkpoint, source.input);
    let recorded = ckpt.metadata().and_then(|m| m.get(LAYOUT_KEY)).cloned();
    let (layout, planned, end) = match recorded {
        Some(text) => {
            if options.outtype.is_some() || options.arch != Arch::None {
                return Err(GgufError::usage(
                    "this file holds raw GGUF blocks (--keep-quantized); it converts back as it was, without --outtype or --arch",
                ));
            }
            rebuild_plan(ckpt, &text, input)?
        }
        None => fresh_plan(ckpt, input, source.config, options)?,
    };
    let rebuilt = end.is_some();
    let gguf_err = |e| GgufError::gguf(output, e);
    let mut writer = GgufWriter::new(sink, &layout).map_err(gguf_err)?;
    let mut quantized = 0;
    for p in &planned {
        if !rebuilt && p.decl.ggml_type != source_type(ckpt, &p.source)? {
            quantized += 1;
        }
        write_tensor(ckpt, p, &mut writer, output)?;
    }
    let sink = writer.finish(end).map_err(gguf_err)?;
    let report = GgufWriteReport {
        tensors: planned.len(),
        quantized,
        rebuilt,
        file: output.to_owned(),
    };
    Ok((report, sink))
}

fn info<'a>(ckpt: &'a ShardedCheckpoint, name: &str) -> Result<StInfo<'a>, GgufError> {
    Ok(ckpt.get(name)?.1)
}

/// The ggml type a safetensors dtype is stored as unchanged.
fn ggml_type_of(dtype: Dtype) -> Option<GgmlType> {
    Some(match dtype {
        Dtype::F32 => GgmlType::F32,
        Dtype::F16 => GgmlType::F16,
        Dtype::BF16 => GgmlType::Bf16,
        Dtype::F64 => GgmlType::F64,
        Dtype::I8 => GgmlType::I8,
        Dtype::I16 => GgmlType::I16,
        Dtype::I32 => GgmlType::I32,
        Dtype::I64 => GgmlType::I64,
        _ => return None,
    })
}

fn source_type(ckpt: &ShardedCheckpoint, name: &str) -> Result<GgmlType, GgufError> {
    Ok(ggml_type_of(info(ckpt, name)?.dtype).unwrap_or(GgmlType::F32))
}

fn fresh_plan(
    ckpt: &ShardedCheckpoint,
    input: &Path,
    given_config: Option<&Json>,
    options: &SafetensorsToGguf,
) -> Result<(Layout, Vec<Planned>, Option<u64>), GgufError> {
    let outtype = options.outtype.unwrap_or(GgmlType::F16);
    let config = match (options.arch, given_config) {
        (Arch::Llama, Some(config)) => Some(config.clone()),
        (Arch::Llama, None) => Some(read_config(input)?),
        (Arch::None, _) => None,
    };
    let mut metadata = match &config {
        Some(config) => llama::gguf_metadata(config, input)?,
        None => Vec::new(),
    };
    metadata.push((
        "general.file_type".into(),
        OwnedValue::U32(file_type(outtype)),
    ));
    let mut planned = Vec::new();
    for source in ckpt.names() {
        let st = info(ckpt, source)?;
        let (name, permute) = match &config {
            Some(config) => match llama::gguf_name(source) {
                Some(name) => (name, llama::permute_heads(source, config)),
                None if source.ends_with("rotary_emb.inv_freq") => continue,
                None => {
                    return Err(GgufError::usage(format!(
                        "tensor {source:?} is not a Llama tensor gguf's TensorNameMap knows; convert with --arch none to keep names as they are"
                    )))
                }
            },
            None => (source.to_owned(), None),
        };
        let Some(stored) = ggml_type_of(st.dtype) else {
            return Err(GgufError::usage(format!(
                "tensor {source:?} is {}, which GGUF cannot hold",
                st.dtype
            )));
        };
        let dims: Vec<u64> = match st.shape {
            [] => vec![1],
            shape => shape.iter().rev().map(|&d| d as u64).collect(),
        };
        let is_float = matches!(
            stored,
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 | GgmlType::F64
        );
        let ggml_type = match (is_float, dims.len()) {
            (false, _) => stored,
            (true, 1) => GgmlType::F32,
            (true, _) if outtype.row_bytes(dims[0]).is_some() => outtype,
            (true, _) => GgmlType::F16,
        };
        planned.push(Planned {
            source: source.to_owned(),
            decl: TensorDecl {
                name,
                dims,
                ggml_type,
                offset: None,
            },
            permute,
        });
    }
    let layout = Layout {
        version: 3,
        metadata,
        tensors: planned.iter().map(|p| p.decl.clone()).collect(),
    };
    Ok((layout, planned, None))
}

/// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`) for a whole-file type.
fn file_type(ty: GgmlType) -> u32 {
    match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        _ => 32, // BF16
    }
}

fn read_config(input: &Path) -> Result<Json, GgufError> {
    let dir = if input.is_dir() {
        input.to_owned()
    } else {
        input.parent().map(Path::to_owned).unwrap_or_default()
    };
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|source| GgufError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| GgufError::invalid(&path, format!("not JSON: {e}")))
}

fn rebuild_plan(
    ckpt: &ShardedCheckpoint,
    text: &str,
    input: &Path,
) -> Result<(Layout, Vec<Planned>, Option<u64>), GgufError> {
    let bad = |m: &str| GgufError::invalid(input, format!("{LAYOUT_KEY}: {m}"));
    let doc: Json = serde_json::from_str(text).map_err(|_| bad("not JSON"))?;
    let meta_text = ckpt
        .metadata()
        .and_then(|m| m.get(meta::METADATA_KEY))
        .ok_or_else(|| bad("the GGUF metadata is missing"))?;
    let meta_doc: Json = serde_json::from_str(meta_text).map_err(|_| bad("metadata not JSON"))?;
    let metadata = meta::from_json(&meta_doc).map_err(|m| bad(&m))?;
    let mut planned = Vec::new();
    for t in doc["tensors"]
        .as_array()
        .ok_or_else(|| bad("no tensor list"))?
    {
        let name = t["name"]
            .as_str()
            .ok_or_else(|| bad("a tensor has no name"))?;
        let ggml_type = GgmlType::all()
            .find(|g| Some(g.name()) == t["ggml_type"].as_str())
            .ok_or_else(|| bad("unknown ggml type"))?;
        let dims = t["dims"]
            .as_array()
            .and_then(|d| d.iter().map(Json::as_u64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad("bad dims"))?;
        planned.push(Planned {
            source: name.to_owned(),
            decl: TensorDecl {
                name: name.to_owned(),
                dims,
                ggml_type,
                offset: Some(t["offset"].as_u64().ok_or_else(|| bad("bad offset"))?),
            },
            permute: None,
        });
    }
    let version = doc["version"].as_u64().unwrap_or(3) as u32;
    let layout = Layout {
        version,
        metadata,
        tensors: planned.iter().map(|p| p.decl.clone()).collect(),
    };
    Ok((layout, planned, doc["data_len"].as_u64()))
}

/// Writes one planned tensor in its GGUF type: unchanged bytes straight
/// from the input's map, converted ones chunk by chunk on every core
/// (memory bounded by a few chunks); only a tensor whose rows are
/// reordered (`--arch llama`'s Q and K) is copied whole first.
fn write_tensor<W: std::io::Write + Send>(
    ckpt: &ShardedCheckpoint,
    p: &Planned,
    writer: &mut GgufWriter<W>,
    output: &Path,
) -> Result<(), GgufError> {
    let name = p.decl.name.as_str();
    let (file, st) = ckpt.get(&p.source)?;
    let raw = file.bytes_of(st)?;
    let written = |e| GgufError::gguf(output, e).in_tensor(name);
    let in_source = |e| GgufError::gguf(file.path(), e).in_tensor(&p.source);
    if p.decl.ggml_type == GgmlType::Mxfp4 && st.dtype == Dtype::F4 {
        let (sfile, sinfo) = ckpt.get(&format!("{}.scales", p.source))?;
        let joined = mxfp4::join(&raw, &sfile.bytes_of(sinfo)?);
        return writer.write_tensor(name, &joined).map_err(written);
    }
    let stored = ggml_type_of(st.dtype);
    if stored.is_none() {
        // Raw blocks kept as U8 (`--keep-quantized`).
        return writer.write_tensor(name, &raw).map_err(written);
    }
    let width = st.dtype.bits() / 8;
    let permuted;
    let source: &[u8] = match p.permute {
        // Whole rows move, so the source bytes can be reordered as they are.
        Some(heads) => {
            permuted = llama::permute_rows(&raw, p.decl.dims[0] as usize * width, heads);
            &permuted
        }
        None => &raw,
    };
    let ty = p.decl.ggml_type;
    if stored == Some(ty) {
        return writer.write_tensor(name, source).map_err(written);
    }
    let unit = Unit {
        input: ty.block_size() as usize * width,
        output: ty.block_bytes() as usize,
    };
    let convert = |at: usize, part: &[u8], out: &mut [u8]| {
        quantize_part(st.dtype, ty, part, out).map_err(|e| match e {
            // Indices count from the start of the tensor, not of the part.
            safeweights_gguf::Error::NonFinite { ggml_type, index } => {
                safeweights_gguf::Error::NonFinite {
                    ggml_type,
                    index: index + (at / width) as u64,
                }
            }
            other => other,
        })
    };
    let chunked = convert_chunked(source, unit, convert, |out| writer.write_part(name, out));
    chunked.map(drop).map_err(|e| match e {
        safeweights_gguf::Error::NonFinite { .. } => in_source(e),
        other => written(other),
    })
}

/// Values converted to f32 at a time: a buffer that stays in cache.
const BATCH: usize = 8192;

/// Quantizes the source values `part` (floats of `dtype`, whole blocks of
/// `ty`) into `out`, a batch at a time through a small f32 buffer.
fn quantize_part(
    dtype: Dtype,
    ty: GgmlType,
    part: &[u8],
    out: &mut [u8],
) -> Result<(), safeweights_gguf::Error> {
    let width = dtype.bits() / 8;
    let per_batch = BATCH / ty.block_size() as usize * ty.block_bytes() as usize;
    let mut values = vec![0f32; BATCH];
    for (i, (src, out)) in part
        .chunks(BATCH * width)
        .zip(out.chunks_mut(per_batch))
        .enumerate()
    {
        let values = &mut values[..src.len() / width];
        to_f32_into(dtype, src, values);
        quantize_into(ty, values, out).map_err(|e| match e {
            safeweights_gguf::Error::NonFinite { ggml_type, index } => {
                safeweights_gguf::Error::NonFinite {
                    ggml_type,
                    index: index + (i * BATCH) as u64,
                }
            }
            other => other,
        })?;
    }
    Ok(())
}

/// Source floats widened (F16, BF16: exactly, as numpy does) or rounded
/// (F64) to f32.
fn to_f32_into(dtype: Dtype, raw: &[u8], values: &mut [f32]) {
    match dtype {
        Dtype::F64 => {
            for (v, b) in values.iter_mut().zip(raw.chunks_exact(8)) {
                *v = f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32;
            }
        }
        Dtype::F32 => {
            for (v, b) in values.iter_mut().zip(raw.chunks_exact(4)) {
                *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        _ => {
            let ty = ggml_type_of(dtype).unwrap_or(GgmlType::F16);
            // Plain float types always decode; the lengths match by construction.
            if safeweights_gguf::quant::dequantize(ty, raw, values).is_err() {
                values.fill(f32::NAN);
            }
        }
    }
}
