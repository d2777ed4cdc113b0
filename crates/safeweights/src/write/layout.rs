//! Decides where each tensor goes and produces the header bytes.

use crate::error::{Error, Result};
use crate::format::header::checked_numel;
use crate::format::{Dtype, Header, Metadata, TensorInfo, METADATA_KEY, PREFIX_LEN};
use crate::write::json::header_json;

/// Options shared by all writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// The data section starts at a multiple of this many bytes from the
    /// start of the file, by padding the header with spaces as the spec
    /// allows. Must be a power of two, at least 8 (the reference's value).
    /// Use 64 or 4096 for DMA and `O_DIRECT`.
    pub alignment: usize,
    /// Flush the file to disk (`fsync`) before renaming it into place, and
    /// the directory after, so that once a write returns, a power cut or a
    /// kernel crash leaves the new file (on ext4 an unsynced rename can
    /// otherwise expose an empty file). On by default; turning it off
    /// trades that guarantee for speed (see BENCHMARKS.md).
    pub sync: bool,
    /// Whether a sharded write may replace a checkpoint already in its
    /// directory ([`write_sharded`](crate::shards::write_sharded)); single
    /// files are always replaced, as the reference does.
    pub overwrite: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            alignment: 8,
            sync: true,
            overwrite: true,
        }
    }
}

/// A tensor to write: its type, shape and name, before placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// Creates a spec.
    pub fn new(name: impl Into<String>, dtype: Dtype, shape: Vec<usize>) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape,
        }
    }

    /// Byte length implied by shape and dtype.
    pub fn byte_len(&self) -> Result<usize> {
        let invalid = |reason: &str| Error::InvalidTensor {
            tensor: self.name.clone(),
            reason: reason.to_owned(),
        };
        let numel = checked_numel(&self.shape).ok_or_else(|| invalid("shape overflows"))?;
        self.dtype
            .bytes_for(numel)
            .ok_or_else(|| invalid("size overflows or is not a whole number of bytes"))
    }
}

/// Where everything goes in the file.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The 8-byte prefix followed by the padded header JSON.
    pub header: Vec<u8>,
    /// Tensors in file order, with their offsets in the data section.
    pub tensors: Vec<TensorInfo>,
    /// For each entry of `tensors`, its index in the input.
    pub input_index: Vec<usize>,
}

impl Layout {
    /// Places tensors as the reference does: sorted by dtype (descending, in
    /// the reference's enum order, which follows alignment) and then by name,
    /// packed with no gaps.
    pub fn plan(
        specs: &[TensorSpec],
        metadata: Option<&Metadata>,
        options: &WriteOptions,
    ) -> Result<Layout> {
        check_alignment(options.alignment)?;
        let mut order: Vec<usize> = (0..specs.len()).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&specs[a], &specs[b]);
            b.dtype
                .write_rank()
                .cmp(&a.dtype.write_rank())
                .then_with(|| a.name.cmp(&b.name))
        });
        check_names(specs, &order)?;
        let mut offset = 0u64;
        let mut tensors = Vec::with_capacity(specs.len());
        for &i in &order {
            let spec = &specs[i];
            let len = spec.byte_len()? as u64;
            let end = offset
                .checked_add(len)
                .ok_or_else(|| Error::InvalidTensor {
                    tensor: spec.name.clone(),
                    reason: "the tensors' total size overflows".into(),
                })?;
            tensors.push(TensorInfo {
                name: spec.name.clone(),
                dtype: spec.dtype,
                shape: spec.shape.clone(),
                begin: offset,
                end,
            });
            offset = end;
        }
        let header = pad_header(
            &header_json(metadata, tensors.iter().map(TensorInfo::as_entry)),
            options.alignment,
        );
        Ok(Layout {
            header,
            tensors,
            input_index: order,
        })
    }

    /// Offset of the data section in the file.
    pub fn data_start(&self) -> u64 {
        self.header.len() as u64
    }

    /// Total file length.
    pub fn file_len(&self) -> u64 {
        self.data_start() + self.tensors.last().map_or(0, |t| t.end)
    }

    /// The header this layout describes, as a reader will see it.
    pub fn to_header(&self) -> Result<Header> {
        let data_len = self.file_len() - self.data_start();
        Header::parse(&self.header[PREFIX_LEN..], data_len)
    }
}

fn check_alignment(alignment: usize) -> Result<()> {
    if alignment >= 8 && alignment.is_power_of_two() {
        Ok(())
    } else {
        Err(Error::InvalidTensor {
            tensor: String::new(),
            reason: format!("alignment {alignment} must be a power of two and at least 8"),
        })
    }
}

/// Names must be unique and must not collide with the metadata key.
fn check_names(specs: &[TensorSpec], order: &[usize]) -> Result<()> {
    let mut seen = std::collections::HashSet::with_capacity(specs.len());
    for &i in order {
        let name = specs[i].name.as_str();
        if name == METADATA_KEY {
            return Err(Error::InvalidTensor {
                tensor: name.to_owned(),
                reason: "this name is reserved for the metadata".into(),
            });
        }
        if !seen.insert(name) {
            return Err(Error::DuplicateTensorName {
                name: name.to_owned(),
            });
        }
    }
    Ok(())
}

/// Prefix plus `json` padded with spaces so the data starts aligned.
pub(crate) fn pad_header(json: &str, alignment: usize) -> Vec<u8> {
    let padded_total = (PREFIX_LEN + json.len()).next_multiple_of(alignment);
    let header_len = (padded_total - PREFIX_LEN) as u64;
    let mut out = Vec::with_capacity(padded_total);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(padded_total, b' ');
    out
}
