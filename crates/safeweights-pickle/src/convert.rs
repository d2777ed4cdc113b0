//! Converts a PyTorch checkpoint to safetensors, one tensor at a time.
//!
//! Memory stays bounded by the largest single tensor that needs copying
//! (contiguous tensors are streamed straight from the memory map).

use std::collections::BTreeMap;
use std::path::Path;

use safeweights::write::{StreamingWriter, TensorSpec, WriteOptions};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::torch::{Checkpoint, Skipped};

/// Metadata key holding `{alias: kept name}` as JSON.
pub const ALIASES_KEY: &str = "safeweights.aliases";
/// Metadata key holding the checkpoint's plain values as a JSON object.
pub const CHECKPOINT_METADATA_KEY: &str = "safeweights.checkpoint";

/// How to convert.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Parsing limits for the input.
    pub limits: Limits,
    /// Output layout options.
    pub write: WriteOptions,
    /// Also store the checkpoint's plain values (epoch, hyper-parameters)
    /// under [`CHECKPOINT_METADATA_KEY`].
    pub keep_checkpoint_metadata: bool,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Tensors written.
    pub tensors: usize,
    /// Tensor bytes written.
    pub bytes: u64,
    /// `(alias, kept)` names stored once; recorded in [`ALIASES_KEY`].
    pub aliases: Vec<(String, String)>,
    /// Values that were not converted, and why.
    pub skipped: Vec<Skipped>,
}

fn core_err(e: safeweights::Error) -> Error {
    Error::Safetensors {
        message: e.to_string(),
    }
}

/// Reads `input` safely and writes `output` as safetensors. The output
/// appears only when everything succeeded (atomic rename).
pub fn convert_checkpoint(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
) -> Result<ConvertReport> {
    let ckpt = Checkpoint::open_with_limits(input, options.limits.clone())?;
    let mut specs = Vec::with_capacity(ckpt.tensors().len());
    for t in ckpt.tensors() {
        let shape = t
            .shape
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                Error::checkpoint(format!(
                    "tensor `{}` is too large for this platform",
                    t.name
                ))
            })?;
        specs.push(TensorSpec::new(t.name.clone(), t.dtype, shape));
    }
    let metadata = metadata(&ckpt, options);
    let mut writer = StreamingWriter::create(output, &specs, Some(&metadata), &options.write)
        .map_err(core_err)?;
    let mut bytes = 0u64;
    for t in ckpt.tensors() {
        let data = ckpt.read_tensor(t)?;
        writer.write(&t.name, &data).map_err(core_err)?;
        bytes = bytes.saturating_add(data.len() as u64);
    }
    writer.finish().map_err(core_err)?;
    Ok(ConvertReport {
        tensors: specs.len(),
        bytes,
        aliases: ckpt.aliases().to_vec(),
        skipped: ckpt.skipped().to_vec(),
    })
}

fn metadata(ckpt: &Checkpoint, options: &ConvertOptions) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("format".to_owned(), "pt".to_owned());
    if !ckpt.aliases().is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = ckpt
            .aliases()
            .iter()
            .map(|(alias, kept)| (alias.clone(), serde_json::Value::from(kept.clone())))
            .collect();
        out.insert(
            ALIASES_KEY.to_owned(),
            serde_json::Value::Object(map).to_string(),
        );
    }
    if options.keep_checkpoint_metadata && !ckpt.metadata().is_empty() {
        let json = serde_json::Value::Object(ckpt.metadata().clone()).to_string();
        out.insert(CHECKPOINT_METADATA_KEY.to_owned(), json);
    }
    out
}
