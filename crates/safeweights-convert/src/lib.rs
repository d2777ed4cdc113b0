//! Converts PyTorch checkpoints (zip or legacy, single or sharded with a
//! `pytorch_model.bin.index.json`) and numpy `.npy`/`.npz` files to
//! safetensors, one tensor at a time.
//!
//! The input format is recognised from the content, never the file name.
//! Everything is parsed and validated before any output exists, so a
//! refused input writes nothing. Memory stays bounded by the largest single
//! tensor that needs copying (contiguous torch tensors are streamed
//! straight from the memory map, casts are done chunk by chunk).
//!
//! ```no_run
//! use safeweights_convert::{convert, ConvertOptions};
//!
//! let options = ConvertOptions { max_shard_size: Some(5_000_000_000), ..Default::default() };
//! let report = convert("pytorch_model.bin".as_ref(), "model.safetensors".as_ref(), &options)?;
//! println!("{} tensors in {:?}", report.tensors, report.files);
//! # Ok::<(), safeweights_convert::Error>(())
//! ```
//!
//! This crate sits above the format readers (`safeweights`,
//! `safeweights-pickle`, `safeweights-gguf`), which never depend on it.

#![deny(missing_docs)]

mod cast;
mod dcp;
mod digest;
mod directory;
mod index;
mod input;
mod output;
mod verify;

pub mod gguf;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safeweights::write::WriteOptions;
use safeweights::Metadata;
use serde_json::{Map, Value as Json};

pub use dcp::is_torch_dcp_directory;
pub use directory::{directory_inputs, inputs_among, BIN as HF_BIN, BIN_INDEX as HF_BIN_INDEX};
pub use input::InputFormat;
pub use safeweights_pickle::torch::STRUCTURE_KEY;

use input::Input;
use safeweights_pickle::source::guarded;
use safeweights_pickle::torch::Skipped;
pub use safeweights_pickle::{Dtype, Error, Limits, Result};

/// Metadata key holding the checkpoint's plain values as a JSON object, by
/// dotted path. The whole structure is under [`STRUCTURE_KEY`].
pub const CHECKPOINT_METADATA_KEY: &str = "safeweights.values";

/// How to convert.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// Parsing limits for the input.
    pub limits: Limits,
    /// Output layout options.
    pub write: WriteOptions,
    /// Also store the checkpoint's plain values (epoch, hyper-parameters)
    /// under [`CHECKPOINT_METADATA_KEY`] and, for a single torch
    /// checkpoint, its whole structure under [`STRUCTURE_KEY`], so that
    /// `safeweights.load` of the output returns what
    /// `torch.load(weights_only=True)` returns for the input.
    pub keep_checkpoint_metadata: bool,
    /// Split the output into shards of at most this many bytes of tensor
    /// data (a larger tensor gets a shard of its own), named
    /// `model-00001-of-0000N.safetensors` plus `model.safetensors.index.json`.
    /// When everything fits one shard a single file is written. Without it,
    /// a sharded input keeps its grouping (one output shard per input shard)
    /// and any other input becomes one file.
    pub max_shard_size: Option<u64>,
    /// Cast floating tensors (F64, F32, F16, BF16) to this dtype, which
    /// must be BF16, F16 or F32, rounding exactly as torch's `.to(dtype)`.
    /// Integer, bool, complex and 8-bit float tensors keep their dtype.
    pub dtype: Option<Dtype>,
    /// Replace existing output files. Otherwise an existing output file,
    /// shard or index is an error and nothing is written. With it, a single
    /// file replacing a sharded output (or the reverse) also removes the
    /// stale index (or single file), which loaders would otherwise prefer.
    pub force: bool,
    /// After writing, read the output back with the core reader and check
    /// every tensor's name, dtype and shape, the metadata, and the digest of
    /// its bytes against the digest of the bytes written, taken from the
    /// input as it was read (recast when casting). The input is read once.
    /// On by default. ([`verify_conversion`], which has no write pass to
    /// take digests from, reads the input again and compares bytes.)
    pub verify: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            limits: Limits::default(),
            write: WriteOptions::default(),
            keep_checkpoint_metadata: false,
            max_shard_size: None,
            dtype: None,
            force: false,
            verify: true,
        }
    }
}

/// Which pass a [`Progress`] report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Writing the output.
    Write,
    /// Reading it back and comparing it with the input.
    Verify,
}

/// A progress report, sent at the start of each tensor and after each
/// chunk (at most 16 MiB) of it.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The pass under way.
    pub stage: Stage,
    /// Output tensor bytes handled so far in this pass.
    pub bytes_done: u64,
    /// Output tensor bytes this pass handles in all.
    pub bytes_total: u64,
    /// The tensor being handled.
    pub tensor: &'a str,
}

/// What a conversion did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertReport {
    /// Format of the input (of its first shard for a sharded input).
    pub input_format: InputFormat,
    /// Input files read: 1, or the number of shards of a sharded input.
    pub input_files: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Tensors whose dtype was changed by [`ConvertOptions::dtype`].
    pub cast: usize,
    /// Tensor bytes written.
    pub bytes: u64,
    /// `(alias, kept)` names stored once; each alias is a metadata key whose
    /// value is the kept name, as the reference's `convert` records them.
    pub aliases: Vec<(String, String)>,
    /// Values that were not converted, and why (none when the structure
    /// was kept: it holds every value).
    pub skipped: Vec<Skipped>,
    /// Whether the output holds the checkpoint's whole structure under
    /// [`STRUCTURE_KEY`] (`safeweights.load` returns what
    /// `torch.load(weights_only=True)` returned).
    pub structure: bool,
    /// Files written: the single file, or every shard then the index.
    pub files: Vec<PathBuf>,
    /// Whether the output was read back and matched the input.
    pub verified: bool,
}

/// Sends [`Progress`] reports to a callback.
pub(crate) struct Reporter<'a> {
    stage: Stage,
    done: u64,
    total: u64,
    callback: &'a mut dyn FnMut(Progress<'_>),
}

impl Reporter<'_> {
    pub(crate) fn advance(&mut self, tensor: &str, bytes: u64) {
        self.done = self.done.saturating_add(bytes);
        (self.callback)(Progress {
            stage: self.stage,
            bytes_done: self.done,
            bytes_total: self.total,
            tensor,
        });
    }
}

pub(crate) fn core_err(source: safeweights::Error) -> Error {
    Error::Safetensors { source }
}

/// Converts `input` to safetensors at `output` (see
/// [`convert_with_progress`]).
pub fn convert(input: &Path, output: &Path, options: &ConvertOptions) -> Result<ConvertReport> {
    convert_with_progress(input, output, options, &mut |_| {})
}

/// Converts `input` (a torch checkpoint, a sharded checkpoint's index
/// file, an `.npy` or an `.npz`) to safetensors, reporting progress.
///
/// `output` is a directory (existing, or written with a trailing `/`),
/// which receives `model.safetensors` or `model-0000N-of-0000M.safetensors`
/// shards plus `model.safetensors.index.json`; or a file name such as
/// `x.safetensors`, which becomes the single file, or names shards
/// `x-0000N-of-0000M.safetensors` and the index `x.safetensors.index.json`
/// beside it. [`default_output`] picks Hugging Face's names.
///
/// Output files appear only when every one of them is complete. With
/// [`ConvertOptions::verify`], a mismatch is [`Error::Verify`] (the files
/// are left in place for inspection).
///
/// An input truncated during the conversion is an [`Error::Io`] naming it
/// (kind `UnexpectedEof`), never a crash.
pub fn convert_with_progress(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ConvertReport> {
    guarded(|| convert_unguarded(input, output, options, progress))
        .map_err(|error| truncated_input(input, error))
}

/// A write from the input's map that the kernel refused with `EFAULT`: the
/// input was truncated under it (a write(2) from a page past the file's
/// end fails instead of raising `SIGBUS`). Our own buffers are always
/// valid, so the input is the one to name.
fn truncated_input(input: &Path, error: Error) -> Error {
    const EFAULT: i32 = 14;
    let bad_address = match error.root() {
        Error::Io { source, .. } => source.raw_os_error() == Some(EFAULT),
        Error::Safetensors { source } => matches!(
            source.kind(),
            safeweights::Error::Io(io) if io.raw_os_error() == Some(EFAULT)
        ),
        _ => false,
    };
    if !bad_address {
        return error;
    }
    Error::io(
        input,
        std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the file became shorter while it was read (writing from its map failed)",
        ),
    )
}

fn convert_unguarded(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ConvertReport> {
    if let Some(dtype) = options.dtype {
        cast::check_target(dtype)?;
    }
    if options.max_shard_size == Some(0) {
        return Err(Error::usage(
            "the maximum shard size must be at least 1 byte",
        ));
    }
    let input = input::open(input, &options.limits)?;
    let plan = output::plan(&input, options, output)?;
    plan.check_free(&input, options.force)?;
    let metadata = metadata(&input, options.keep_checkpoint_metadata);
    let total = plan.total_bytes();
    let mut reporter = Reporter {
        stage: Stage::Write,
        done: 0,
        total,
        callback: progress,
    };
    let digests = plan.write(&input, &metadata, &options.write, &mut reporter)?;
    let main = plan.index.as_ref().unwrap_or(&plan.files[0]);
    if options.verify {
        reporter.stage = Stage::Verify;
        reporter.done = 0;
        verify::verify_written(&plan.items, &digests, &metadata, main, &mut reporter)?;
    }
    let mut files = plan.files.clone();
    files.extend(plan.index.clone());
    Ok(ConvertReport {
        input_format: input.parts[0].format,
        input_files: input.parts.len(),
        tensors: plan.items.len(),
        cast: count_cast(&input, options.dtype),
        bytes: total,
        aliases: input.parts.iter().flat_map(|p| p.aliases.clone()).collect(),
        skipped: match kept_structure(&input, options.keep_checkpoint_metadata) {
            Some(_) => Vec::new(),
            None => input.parts.iter().flat_map(|p| p.skipped.clone()).collect(),
        },
        structure: kept_structure(&input, options.keep_checkpoint_metadata).is_some(),
        files,
        verified: options.verify,
    })
}

/// Checks an existing conversion: reads `output` (the path given to
/// [`convert`], or the written file or index) back with the core reader
/// and compares every tensor with `input`, as [`ConvertOptions::verify`]
/// does. `options` must be those of the conversion (cast and metadata).
pub fn verify_conversion(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<()> {
    guarded(|| verify_unguarded(input, output, options, progress))
        .map_err(|error| truncated_input(input, error))
}

fn verify_unguarded(
    input: &Path,
    output: &Path,
    options: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<()> {
    let input = input::open(input, &options.limits)?;
    let main = verify::find_output(output)?;
    let metadata = metadata(&input, options.keep_checkpoint_metadata);
    let items = output::items(&input, options.dtype)?;
    let mut reporter = Reporter {
        stage: Stage::Verify,
        done: 0,
        total: items.iter().map(|i| i.nbytes).sum(),
        callback: progress,
    };
    verify::verify(&input, options.dtype, &metadata, &main, &mut reporter)
}

/// The output Hugging Face tools would use for `input`, in its directory:
/// `pytorch_model.bin` and `pytorch_model.bin.index.json` become
/// `model.safetensors` (shards and index follow from it), anything else
/// `<stem>.safetensors` (`weights.npz` → `weights.safetensors`).
pub fn default_output(input: &Path) -> PathBuf {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".index.json").unwrap_or(&name);
    let stem = Path::new(name)
        .file_stem()
        .map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
    let stem = match stem.strip_prefix("pytorch_model") {
        Some(rest) => format!("model{rest}"),
        None => stem,
    };
    input.with_file_name(format!("{stem}.safetensors"))
}

fn count_cast(input: &Input, cast_to: Option<Dtype>) -> usize {
    input
        .parts
        .iter()
        .flat_map(|p| &p.tensors)
        .filter(|t| cast::output_dtype(t.dtype, cast_to) != t.dtype)
        .count()
}

/// The metadata every output file gets: the format (`pt` as Hugging Face
/// writes for torch weights, `np` for numpy), tied-weight aliases and,
/// when asked, the checkpoint's plain values.
fn metadata(input: &Input, keep_values: bool) -> Metadata {
    let mut out = BTreeMap::new();
    let numpy = matches!(input.parts[0].format, InputFormat::Npy | InputFormat::Npz);
    out.insert(
        "format".to_owned(),
        if numpy { "np" } else { "pt" }.to_owned(),
    );
    // Recorded as the reference's `convert` does: the alias is a key whose
    // value is the name the bytes are stored under.
    for (alias, kept) in input.parts.iter().flat_map(|p| &p.aliases) {
        out.entry(alias.clone()).or_insert_with(|| kept.clone());
    }
    let mut values = Map::new();
    for part in &input.parts {
        for (key, value) in &part.values {
            values.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    if keep_values && !values.is_empty() {
        out.insert(
            CHECKPOINT_METADATA_KEY.to_owned(),
            Json::Object(values).to_string(),
        );
    }
    if let Some(structure) = kept_structure(input, keep_values) {
        out.insert(STRUCTURE_KEY.to_owned(), structure.to_string());
    }
    out
}

/// The structure the output keeps, if any. One structure names the
/// tensors of one file; shards of a sharded input each have their own, so
/// those convert by tensor name only.
fn kept_structure(input: &Input, keep_values: bool) -> Option<&Json> {
    match (keep_values, input.parts.as_slice()) {
        (true, [part]) => part.structure.as_ref(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_output_follows_hugging_face_names() {
        let cases = [
            ("d/pytorch_model.bin", "d/model.safetensors"),
            ("d/pytorch_model.bin.index.json", "d/model.safetensors"),
            (
                "pytorch_model-00001-of-00002.bin",
                "model-00001-of-00002.safetensors",
            ),
            ("d/weights.npz", "d/weights.safetensors"),
            ("train.ckpt", "train.safetensors"),
        ];
        for (input, want) in cases {
            assert_eq!(default_output(Path::new(input)), Path::new(want), "{input}");
        }
    }
}
