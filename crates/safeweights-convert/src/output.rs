//! Where the output goes, how tensors are grouped into files, and writing
//! them one tensor at a time.

use std::ops::Range;
use std::path::{Path, PathBuf};

use safeweights::shards::{plan_shards, ShardIndex, ShardPublisher};
use safeweights::write::{StreamingWriter, TensorSpec, WriteOptions};
use safeweights::Metadata;

use crate::cast;
use crate::digest::Digest;
use crate::input::Input;
use crate::{core_err, ConvertOptions, Reporter};
use safeweights_pickle::Dtype;
use safeweights_pickle::{Error, Result};

/// The output location: a single file, or shards plus an index beside it.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    directory: PathBuf,
    prefix: String,
    single: PathBuf,
    /// Whether the directory may have to be created.
    is_directory: bool,
}

impl Target {
    /// `out/` or an existing directory: `model.safetensors` (or shards
    /// `model-00001-of-0000N.safetensors` and `model.safetensors.index.json`)
    /// inside it. `x.safetensors` or `x.safetensors.index.json`: the single
    /// file `x.safetensors`, or shards `x-00001-of-0000N.safetensors` and
    /// `x.safetensors.index.json` beside it. Any other name is used as is
    /// for a single file, and its stem prefixes shards.
    pub(crate) fn resolve(output: &Path) -> Target {
        let text = output.to_string_lossy();
        if output.is_dir() || text.ends_with('/') || text.ends_with(std::path::MAIN_SEPARATOR) {
            return Target {
                directory: output.to_owned(),
                prefix: "model".into(),
                single: output.join("model.safetensors"),
                is_directory: true,
            };
        }
        let directory = match output.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (prefix, single) = if let Some(p) = name.strip_suffix(".safetensors.index.json") {
            (p.to_owned(), directory.join(format!("{p}.safetensors")))
        } else if let Some(p) = name.strip_suffix(".safetensors") {
            (p.to_owned(), output.to_owned())
        } else {
            let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned());
            (stem.unwrap_or(name), output.to_owned())
        };
        Target {
            directory,
            prefix,
            single,
            is_directory: false,
        }
    }

    /// The index file shards are listed in.
    pub(crate) fn index(&self) -> PathBuf {
        self.directory
            .join(format!("{}.safetensors.index.json", self.prefix))
    }

    /// The single-file output.
    pub(crate) fn single(&self) -> &Path {
        &self.single
    }
}

/// One tensor of the output.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) part: usize,
    pub(crate) tensor: usize,
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) nbytes: u64,
}

/// The files to write and which tensors go in each.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) items: Vec<Item>,
    pub(crate) groups: Vec<Range<usize>>,
    pub(crate) files: Vec<PathBuf>,
    pub(crate) index: Option<PathBuf>,
    /// The file that would contradict the output: a single file beside a
    /// new index, or an index beside a new single file.
    pub(crate) counterpart: PathBuf,
    target: Target,
    /// Names the shards beside any old set and switches sets atomically
    /// (see `safeweights::shards::ShardPublisher`).
    publisher: ShardPublisher,
}

/// Every output tensor, in input order, with its output dtype and size.
pub(crate) fn items(input: &Input, cast_to: Option<Dtype>) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (p, part) in input.parts.iter().enumerate() {
        for (t, tensor) in part.tensors.iter().enumerate() {
            let too_large = || {
                Error::checkpoint(format!(
                    "tensor `{}` is too large for this platform",
                    tensor.name
                ))
            };
            let shape = tensor
                .shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| too_large()))
                .collect::<Result<Vec<_>>>()?;
            let dtype = cast::output_dtype(tensor.dtype, cast_to);
            let nbytes = shape
                .iter()
                .try_fold(dtype.bits() as u64 / 8, |acc, &d| acc.checked_mul(d as u64))
                .ok_or_else(too_large)?;
            items.push(Item {
                part: p,
                tensor: t,
                name: tensor.name.clone(),
                dtype,
                shape,
                nbytes,
            });
        }
    }
    Ok(items)
}

/// Groups tensors into files: by size when `max_shard_size` is set, else
/// one file per input shard. One group means one plain file (as Hugging
/// Face does), more mean numbered shards and an index.
pub(crate) fn plan(input: &Input, options: &ConvertOptions, output: &Path) -> Result<Plan> {
    let items = items(input, options.dtype)?;
    let mut groups = match options.max_shard_size {
        Some(max) => {
            let sizes: Vec<u64> = items.iter().map(|i| i.nbytes).collect();
            plan_shards(&sizes, max)
        }
        None => part_groups(&items, input.parts.len()),
    };
    if groups.is_empty() {
        groups.push(0..0);
    }
    let target = Target::resolve(output);
    let count = groups.len();
    // Overwriting was already decided by `check_free` (`--force`).
    let publisher = ShardPublisher::begin(
        &target.directory,
        &target.prefix,
        count,
        true,
        options.write.sync,
    )
    .map_err(core_err)?;
    let (files, index, counterpart) = if count == 1 {
        (vec![target.single.clone()], None, target.index())
    } else {
        let files = (0..count).map(|i| publisher.shard_path(i)).collect();
        (files, Some(target.index()), target.single.clone())
    };
    Ok(Plan {
        items,
        groups,
        files,
        index,
        counterpart,
        target,
        publisher,
    })
}

/// Consecutive runs of tensors from the same input part; parts without
/// tensors get no file.
fn part_groups(items: &[Item], parts: usize) -> Vec<Range<usize>> {
    let mut groups = Vec::with_capacity(parts);
    let mut start = 0;
    for (i, item) in items.iter().enumerate() {
        if item.part != items[start].part {
            groups.push(start..i);
            start = i;
        }
    }
    if start < items.len() {
        groups.push(start..items.len());
    }
    groups
}

impl Plan {
    /// Every path this conversion writes or makes stale, index last.
    fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.files
            .iter()
            .chain(self.index.as_ref())
            .chain(Some(&self.counterpart))
    }

    /// Refuses to replace an input, and an existing output unless `force`.
    pub(crate) fn check_free(&self, input: &Input, force: bool) -> Result<()> {
        let inputs: Vec<PathBuf> = input
            .parts
            .iter()
            .filter_map(|p| p.path.canonicalize().ok())
            .collect();
        for path in self.paths() {
            if std::fs::symlink_metadata(path).is_err() {
                continue;
            }
            if path.canonicalize().is_ok_and(|c| inputs.contains(&c)) {
                return Err(Error::usage(format!(
                    "{} is an input of this conversion; choose another output",
                    path.display()
                )));
            }
            if !force {
                return Err(Error::OutputExists { path: path.clone() });
            }
        }
        Ok(())
    }

    /// Writes every file, committing them only once all are complete, then
    /// the index, and removes a stale counterpart (only reached with
    /// `force`, as [`Plan::check_free`] refuses otherwise).
    ///
    /// Returns the digest of each item's bytes as they were written (in
    /// the order of `items`), hashed from the source as it was read and
    /// cast, for [`crate::verify::verify_written`].
    pub(crate) fn write(
        &self,
        input: &Input,
        metadata: &Metadata,
        options: &WriteOptions,
        progress: &mut Reporter<'_>,
    ) -> Result<Vec<u128>> {
        if self.target.is_directory {
            let dir = &self.target.directory;
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let stamped;
        let metadata = if self.index.is_some() {
            stamped = self.publisher.shard_metadata(Some(metadata));
            &stamped
        } else {
            metadata
        };
        let mut writers = Vec::with_capacity(self.groups.len());
        let mut digests = Vec::with_capacity(self.items.len());
        for (group, path) in self.groups.iter().zip(&self.files) {
            let items = &self.items[group.clone()];
            let specs: Vec<TensorSpec> = items
                .iter()
                .map(|i| TensorSpec::new(i.name.clone(), i.dtype, i.shape.clone()))
                .collect();
            let mut writer =
                StreamingWriter::create(path, &specs, Some(metadata), options).map_err(core_err)?;
            for item in items {
                digests.push(write_item(input, item, &mut writer, progress)?);
            }
            writers.push(writer);
        }
        for (i, writer) in writers.into_iter().enumerate() {
            if let Err(error) = writer.finish() {
                self.publisher.abandon();
                return Err(core_err(error));
            }
            if self.index.is_some() {
                self.publisher.shard_written(i);
            }
        }
        // The switch: the new index replaces the old one, then the old set goes.
        match &self.index {
            Some(index) => {
                self.publisher
                    .finish(self.shard_index())
                    .map_err(|e| index_write_err(index, e))?;
            }
            None => self.publisher.finish_single().map_err(core_err)?,
        }
        match std::fs::remove_file(&self.counterpart) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(&self.counterpart, e))
            }
            _ => Ok(digests),
        }
    }

    /// The output index: every written tensor and its shard's file name.
    pub(crate) fn shard_index(&self) -> ShardIndex {
        let shards = self.groups.iter().zip(&self.files).map(|(group, path)| {
            let file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let held = self.items[group.clone()].iter().map(|i| &i.name);
            (file, held)
        });
        ShardIndex::from_shards(self.total_bytes(), shards)
    }

    /// Total bytes of tensor data written.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.items.iter().map(|i| i.nbytes).sum()
    }
}

/// Streams one tensor into its file, cast chunk by chunk when asked, and
/// returns the digest of the bytes written: the source's bytes hashed as
/// they were read (after the cast), so that verifying never reads the
/// source again.
fn write_item(
    input: &Input,
    item: &Item,
    writer: &mut StreamingWriter,
    progress: &mut Reporter<'_>,
) -> Result<u128> {
    let part = &input.parts[item.part];
    let from = part.tensors[item.tensor].dtype;
    let data = part.read(item.tensor)?;
    progress.advance(&item.name, 0);
    let mut digest = Digest::new();
    cast::for_each_chunk(from, item.dtype, &data, |chunk| {
        digest.update(chunk);
        writer.write(&item.name, chunk).map_err(core_err)?;
        progress.advance(&item.name, chunk.len() as u64);
        Ok(())
    })?;
    Ok(digest.finish())
}

/// Reports an I/O failure writing the index as this crate's [`Error::Io`]
/// naming the index file.
fn index_write_err(path: &Path, error: safeweights::Error) -> Error {
    let error = match error {
        safeweights::Error::File { source, .. } => *source,
        other => other,
    };
    match error {
        safeweights::Error::Io(io) => Error::io(path, io),
        other => core_err(other.in_file(path)),
    }
}
