//! GGUF to safetensors: every tensor dequantized (bit-exact with
//! `gguf.quants`) and optionally cast, or kept as its raw blocks.

use std::path::{Path, PathBuf};

use safeweights::write::{StreamingWriter, TensorSpec, WriteOptions};
use safeweights::{Dtype, Metadata};
use safeweights_gguf::quant::{can_dequantize, dequantize, dequantize_f16};
use safeweights_gguf::{GgmlType, Gguf, GgufFile, TensorInfo};
use serde_json::json;

use super::error::GgufError;
use super::pipeline::{convert_chunked, Unit};
use super::{llama, meta, LAYOUT_KEY};
use crate::cast::extend_from_f32;

/// How to convert a GGUF file to safetensors.
#[derive(Debug, Clone, Default)]
pub struct GgufToSafetensors {
    /// Floating output dtype (F32, F16 or BF16). Without it, quantized
    /// tensors become F32 and F32/F16/BF16 tensors keep their dtype.
    pub dtype: Option<Dtype>,
    /// Store the raw blocks instead (`U8` rows of blocks, with the ggml
    /// types in [`LAYOUT_KEY`]), so that converting back gives the same
    /// GGUF file byte for byte. MXFP4 becomes `F4` values plus `F8_E8M0`
    /// scales (`<name>.scales`).
    pub keep_quantized: bool,
    /// Hugging Face names and layouts for Llama-family models (undoing the
    /// rotary permutation of Q and K), plus a `config.json` beside the output.
    pub hf: bool,
    /// Replace an existing output.
    pub force: bool,
    /// Output layout options.
    pub write: WriteOptions,
}

/// What a GGUF to safetensors conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufReport {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors that were dequantized or cast.
    pub converted: usize,
    /// Tensor bytes written.
    pub bytes: u64,
    /// Files written (the safetensors file, then `config.json` with `--hf`).
    pub files: Vec<PathBuf>,
}

/// How the bytes of one output tensor are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Make {
    /// The GGUF bytes as they are.
    Raw,
    /// Dequantized to f32, then cast to the output dtype.
    Decode,
    /// MXFP4's values as F4, or its scales as F8_E8M0.
    Fp4Values,
    Fp4Scales,
}

#[derive(Debug)]
struct Item {
    source: usize,
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    make: Make,
    /// Heads for un-permuting Q/K rows (`--hf`).
    unpermute: Option<usize>,
}

/// Converts the GGUF file `input` to the safetensors file `output`.
pub fn gguf_to_safetensors(
    input: &Path,
    output: &Path,
    options: &GgufToSafetensors,
) -> Result<GgufReport, GgufError> {
    if let Some(dtype) = options.dtype {
        if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(GgufError::usage(format!(
                "--dtype {dtype}: GGUF tensors can be written as f32, f16 or bf16"
            )));
        }
    }
    if options.keep_quantized && (options.dtype.is_some() || options.hf) {
        return Err(GgufError::usage(
            "--keep-quantized stores the raw blocks; it cannot be combined with --dtype or --hf",
        ));
    }
    let file = GgufFile::open(input).map_err(|e| GgufError::gguf(input, e))?;
    let gguf = file.parse().map_err(|e| GgufError::gguf(input, e))?;
    check_free(input, output, options.force)?;
    let mut hf = match options.hf {
        true => Some(llama::HfMapping::from_gguf(&gguf, input)?),
        false => None,
    };
    let items = plan(&gguf, options, hf.as_mut(), input)?;
    let mut metadata = Metadata::new();
    metadata.insert("format".into(), "pt".into());
    metadata.insert(
        meta::METADATA_KEY.into(),
        meta::to_json(gguf.metadata()).to_string(),
    );
    if options.keep_quantized {
        metadata.insert(LAYOUT_KEY.into(), layout_json(&gguf, &file).to_string());
    }
    let specs: Vec<TensorSpec> = items
        .iter()
        .map(|i| TensorSpec::new(i.name.clone(), i.dtype, i.shape.clone()))
        .collect();
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| GgufError::Io {
            path: parent.to_owned(),
            source,
        })?;
    }
    let mut writer = StreamingWriter::create(output, &specs, Some(&metadata), &options.write)?;
    let mut bytes = 0;
    for item in &items {
        bytes += write_item(&gguf, item, &mut writer, input).map_err(|e| match e {
            GgufError::Gguf { .. } => e.in_tensor(gguf.tensors()[item.source].name),
            other => other,
        })?;
    }
    writer.finish()?;
    let mut files = vec![output.to_owned()];
    if let Some(hf) = hf {
        files.push(hf.write_config(output, options.force)?);
    }
    Ok(GgufReport {
        tensors: items.len(),
        converted: items.iter().filter(|i| i.make == Make::Decode).count(),
        bytes,
        files,
    })
}

fn check_free(input: &Path, output: &Path, force: bool) -> Result<(), GgufError> {
    if std::fs::symlink_metadata(output).is_err() {
        return Ok(());
    }
    let same = match (input.canonicalize(), output.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Err(GgufError::usage(format!(
            "{} is the input of this conversion; choose another output",
            output.display()
        )));
    }
    if !force {
        return Err(GgufError::OutputExists {
            path: output.to_owned(),
        });
    }
    Ok(())
}

/// The safetensors dtype a plain ggml type is stored as, unchanged.
fn plain_dtype(ty: GgmlType) -> Option<Dtype> {
    Some(match ty {
        GgmlType::F32 => Dtype::F32,
        GgmlType::F16 => Dtype::F16,
        GgmlType::Bf16 => Dtype::BF16,
        GgmlType::F64 => Dtype::F64,
        GgmlType::I8 => Dtype::I8,
        GgmlType::I16 => Dtype::I16,
        GgmlType::I32 => Dtype::I32,
        GgmlType::I64 => Dtype::I64,
        _ => return None,
    })
}

fn shape_of(info: &TensorInfo<'_>) -> Vec<usize> {
    info.shape().iter().map(|&d| d as usize).collect()
}

fn plan(
    gguf: &Gguf<'_>,
    options: &GgufToSafetensors,
    mut hf: Option<&mut llama::HfMapping>,
    input: &Path,
) -> Result<Vec<Item>, GgufError> {
    let mut items = Vec::with_capacity(gguf.tensors().len());
    for (source, info) in gguf.tensors().iter().enumerate() {
        let shape = shape_of(info);
        let ty = info.ggml_type;
        let mut item = Item {
            source,
            name: info.name.to_owned(),
            dtype: Dtype::U8,
            shape: shape.clone(),
            make: Make::Raw,
            unpermute: None,
        };
        if options.keep_quantized {
            if ty == GgmlType::Mxfp4 {
                let mut scales = shape.clone();
                let last = scales.len() - 1;
                scales[last] /= 32;
                items.push(Item {
                    dtype: Dtype::F4,
                    make: Make::Fp4Values,
                    ..item
                });
                items.push(Item {
                    source,
                    name: format!("{}.scales", info.name),
                    dtype: Dtype::F8_E8M0,
                    shape: scales,
                    make: Make::Fp4Scales,
                    unpermute: None,
                });
                continue;
            }
            match plain_dtype(ty) {
                Some(dtype) => item.dtype = dtype,
                None => {
                    let last = item.shape.len() - 1;
                    let row = info.dims[0];
                    item.shape[last] = ty.row_bytes(row).unwrap_or(0) as usize;
                }
            }
            items.push(item);
            continue;
        }
        if let Some(hf) = hf.as_deref_mut() {
            match hf.rename(info.name) {
                Some((name, unpermute)) => {
                    item.name = name;
                    item.unpermute = unpermute;
                }
                None => continue,
            }
        }
        let keeps = plain_dtype(ty).filter(|d| {
            options.dtype.is_none() || !matches!(d, Dtype::F32 | Dtype::F16 | Dtype::BF16)
        });
        match keeps {
            Some(dtype) if item.unpermute.is_none() || !dtype.is_float() => {
                item.dtype = dtype;
            }
            _ if can_dequantize(ty) => {
                let natural = plain_dtype(ty).unwrap_or(Dtype::F32);
                item.dtype = options.dtype.unwrap_or(natural);
                item.make = Make::Decode;
            }
            _ => {
                return Err(GgufError::gguf(
                    input,
                    safeweights_gguf::Error::NotDequantizable {
                        ggml_type: ty.name(),
                    },
                )
                .in_tensor(info.name))
            }
        }
        items.push(item);
    }
    Ok(items)
}

fn write_item(
    gguf: &Gguf<'_>,
    item: &Item,
    writer: &mut StreamingWriter,
    input: &Path,
) -> Result<u64, GgufError> {
    let info = &gguf.tensors()[item.source];
    let bytes = gguf.bytes_of(info);
    let ty = info.ggml_type;
    let gguf_err = |e| GgufError::gguf(input, e);
    match item.make {
        Make::Raw => {
            for chunk in bytes.chunks(16 << 20) {
                writer.write(&item.name, chunk)?;
            }
            Ok(bytes.len() as u64)
        }
        Make::Fp4Values | Make::Fp4Scales => {
            let out = super::mxfp4::split(bytes, item.make == Make::Fp4Scales);
            writer.write(&item.name, &out)?;
            Ok(out.len() as u64)
        }
        Make::Decode => {
            let row = info.dims[0] as usize;
            if let Some(heads) = item.unpermute {
                // The whole tensor, whose rows are reordered.
                let mut values = vec![0f32; info.numel() as usize];
                dequantize(ty, bytes, &mut values).map_err(gguf_err)?;
                let values = llama::unpermute_rows(&values, row, heads);
                let mut out = Vec::new();
                extend_from_f32(item.dtype, &values, &mut out);
                writer.write(&item.name, &out)?;
                return Ok(out.len() as u64);
            }
            let unit = Unit {
                input: ty.block_bytes() as usize,
                output: ty.block_size() as usize * (item.dtype.bits() / 8),
            };
            convert_chunked(
                bytes,
                unit,
                |_, part, out| decode_into(ty, part, out, item.dtype).map_err(gguf_err),
                |out| writer.write(&item.name, out).map_err(GgufError::from),
            )
        }
    }
}

/// Dequantizes `bytes` into `dest` as `dtype`: straight to half for F16,
/// otherwise a batch of blocks at a time through small f32 buffers.
fn decode_into(
    ty: GgmlType,
    bytes: &[u8],
    dest: &mut [u8],
    dtype: Dtype,
) -> Result<(), safeweights_gguf::Error> {
    if dtype == Dtype::F16 {
        return dequantize_f16(ty, bytes, dest);
    }
    let width = dtype.bits() / 8;
    let per_block = ty.block_size() as usize;
    let batch = (8192 / per_block).max(1);
    let mut values = vec![0f32; batch * per_block];
    let mut cast = Vec::with_capacity(values.len() * width);
    let sources = bytes.chunks(batch * ty.block_bytes() as usize);
    for (src, out) in sources.zip(dest.chunks_mut(values.len() * width)) {
        let values = &mut values[..out.len() / width];
        dequantize(ty, src, values)?;
        cast.clear();
        extend_from_f32(dtype, values, &mut cast);
        out.copy_from_slice(&cast);
    }
    Ok(())
}

/// The record that lets safetensors to GGUF rebuild the file byte for
/// byte: version, tensor order, ggml types, dimensions, offsets and the
/// length of the data section.
fn layout_json(gguf: &Gguf<'_>, file: &GgufFile) -> serde_json::Value {
    let tensors: Vec<_> = gguf
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "ggml_type": t.ggml_type.name(),
                "dims": t.dims,
                "offset": t.offset,
            })
        })
        .collect();
    json!({
        "version": gguf.version(),
        "data_len": file.bytes().len() as u64 - gguf.data_offset(),
        "tensors": tensors,
    })
}
