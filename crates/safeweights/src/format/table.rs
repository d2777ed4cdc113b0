//! The compact store behind a parsed header: every tensor name in one
//! string, every shape in one array, and a fixed-size record per tensor.
//!
//! A header of a million tensors is 86 MB of JSON. Holding each entry as a
//! `String` and a `Vec` costs two heap allocations and about 150 bytes per
//! tensor, more than the JSON itself; here a tensor costs its 40-byte record,
//! its name's bytes and 8 bytes per dimension, with no allocation of its own.

use crate::error::{Error, Result};
use crate::format::dtype::Dtype;
use crate::format::header::{data_len, saturating_numel, TensorInfo};

/// One tensor's entry in a parsed header, borrowed from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorEntry<'a> {
    /// Tensor name.
    pub name: &'a str,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first. Empty for a scalar.
    pub shape: &'a [usize],
    /// First byte, relative to the start of the data section.
    pub begin: u64,
    /// One past the last byte, relative to the start of the data section.
    pub end: u64,
}

impl<'a> TensorEntry<'a> {
    /// Number of elements (1 for a scalar). Validated headers never
    /// overflow; for hand-built entries the count saturates.
    pub fn numel(&self) -> usize {
        saturating_numel(self.shape)
    }

    /// Length of the tensor's data in bytes.
    pub fn byte_len(&self) -> usize {
        data_len(self.begin, self.end)
    }

    /// An owned copy of the entry.
    pub fn to_info(&self) -> TensorInfo {
        TensorInfo {
            name: self.name.to_owned(),
            dtype: self.dtype,
            shape: self.shape.to_vec(),
            begin: self.begin,
            end: self.end,
        }
    }
}

impl TensorInfo {
    /// The entry borrowed from this owned one.
    pub fn as_entry(&self) -> TensorEntry<'_> {
        TensorEntry {
            name: &self.name,
            dtype: self.dtype,
            shape: &self.shape,
            begin: self.begin,
            end: self.end,
        }
    }
}

/// A tensor's fixed-size record (32 bytes): where its name and dims lie in
/// the arenas. Offsets are `u32`: headers larger than 4 GiB are refused
/// ([`Error::HeaderTooLarge`]), 40 times the reference's own limit. The
/// dimension count is `u16`: a tensor of more than 65,535 dimensions is
/// refused ([`Error::InvalidShape`]; numpy and torch stop at 64).
#[derive(Debug, Clone, Copy)]
struct Record {
    begin: u64,
    end: u64,
    name_start: u32,
    name_len: u32,
    dims_start: u32,
    ndim: u16,
    dtype: Dtype,
}

/// Most dimensions a tensor may have, see [`Record`].
pub(crate) const MAX_DIMS: usize = u16::MAX as usize;

/// The tensors of a header, in one allocation per kind of data.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    names: String,
    dims: Vec<usize>,
    records: Vec<Record>,
}

fn offset(value: usize) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::HeaderTooLarge {
        len: value as u64,
        limit: u64::from(u32::MAX),
    })
}

impl Table {
    /// Number of tensors.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The dims pushed since the last [`Table::push`] (the tensor being
    /// parsed); [`Table::push_dim`] adds to them.
    fn pending_dims(&self) -> usize {
        self.dims.len()
            - self
                .records
                .last()
                .map_or(0, |r| r.dims_start as usize + usize::from(r.ndim))
    }

    /// Adds one dimension of the tensor being parsed.
    pub(crate) fn push_dim(&mut self, dim: usize) {
        self.dims.push(dim);
    }

    /// Ends the tensor being parsed: its name and the dims pushed so far.
    pub(crate) fn push(&mut self, name: &str, dtype: Dtype, begin: u64, end: u64) -> Result<()> {
        let ndim = self.pending_dims();
        let Ok(ndim_u16) = u16::try_from(ndim) else {
            return Err(Error::InvalidShape {
                tensor: name.to_owned(),
                reason: format!("it has {ndim} dimensions; at most {MAX_DIMS} are supported"),
            });
        };
        let record = Record {
            begin,
            end,
            name_start: offset(self.names.len())?,
            name_len: offset(name.len())?,
            dims_start: offset(self.dims.len() - ndim)?,
            ndim: ndim_u16,
            dtype,
        };
        offset(self.names.len() + name.len())?;
        // Positions are u32 too (the name index holds them).
        offset(self.records.len() + 1)?;
        self.names.push_str(name);
        self.records.push(record);
        Ok(())
    }

    /// The entry at `index` (in the table's current order).
    pub(crate) fn get(&self, index: usize) -> TensorEntry<'_> {
        let r = &self.records[index];
        let name = r.name_start as usize;
        let dims = r.dims_start as usize;
        TensorEntry {
            name: &self.names[name..name + r.name_len as usize],
            dtype: r.dtype,
            shape: &self.dims[dims..dims + usize::from(r.ndim)],
            begin: r.begin,
            end: r.end,
        }
    }

    /// The name at `index`, without building the whole entry.
    pub(crate) fn name(&self, index: usize) -> &str {
        let r = &self.records[index];
        let name = r.name_start as usize;
        &self.names[name..name + r.name_len as usize]
    }

    /// Whether every name is greater than the one before it, in the
    /// table's current order: then no two are equal, and the order is
    /// the alphabetical one (byte order, as `str` compares).
    pub(crate) fn names_strictly_increasing(&self) -> bool {
        (1..self.records.len()).all(|i| self.name(i - 1) < self.name(i))
    }

    /// Every entry in the table's current order.
    pub(crate) fn iter(&self) -> Tensors<'_> {
        Tensors {
            table: self,
            front: 0,
            back: self.records.len(),
        }
    }

    /// Orders the records by data offset. Writers emit tensors in offset
    /// order, so this is usually a linear check.
    pub(crate) fn sort_by_offset(&mut self) {
        if !self.records.is_sorted_by_key(|r| (r.begin, r.end)) {
            self.records.sort_unstable_by_key(|r| (r.begin, r.end));
        }
    }

    /// Gives back the spare capacity left by growing while parsing.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.names.shrink_to_fit();
        self.dims.shrink_to_fit();
        self.records.shrink_to_fit();
    }
}

/// The tensors of a header in data-offset order, see
/// [`Header::tensors`](crate::Header::tensors).
#[derive(Debug, Clone)]
pub struct Tensors<'a> {
    table: &'a Table,
    front: usize,
    back: usize,
}

impl<'a> Iterator for Tensors<'a> {
    type Item = TensorEntry<'a>;

    fn next(&mut self) -> Option<TensorEntry<'a>> {
        (self.front < self.back).then(|| {
            self.front += 1;
            self.table.get(self.front - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.back - self.front;
        (left, Some(left))
    }

    fn nth(&mut self, n: usize) -> Option<TensorEntry<'a>> {
        self.front = self.front.saturating_add(n).min(self.back);
        self.next()
    }
}

impl DoubleEndedIterator for Tensors<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        (self.front < self.back).then(|| {
            self.back -= 1;
            self.table.get(self.back)
        })
    }
}

impl ExactSizeIterator for Tensors<'_> {}

impl std::iter::FusedIterator for Tensors<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_takes_32_bytes() {
        assert_eq!(std::mem::size_of::<Record>(), 32);
    }

    #[test]
    fn more_dimensions_than_a_record_holds_are_refused() {
        let mut table = Table::default();
        for _ in 0..=MAX_DIMS {
            table.push_dim(1);
        }
        let error = table.push("deep", Dtype::U8, 0, 1).unwrap_err();
        assert!(
            matches!(&error, Error::InvalidShape { tensor, .. } if tensor == "deep"),
            "{error}"
        );
    }

    #[test]
    fn entries_round_trip_through_the_arenas() {
        let mut table = Table::default();
        table.push_dim(2);
        table.push_dim(3);
        table.push("a", Dtype::F32, 0, 24).unwrap();
        table.push("scalar", Dtype::I8, 24, 25).unwrap();
        table.push_dim(1);
        table.push("é", Dtype::U8, 25, 26).unwrap();
        let entries: Vec<_> = table.iter().collect();
        assert_eq!(entries[0].name, "a");
        assert_eq!(entries[0].shape, &[2, 3]);
        assert_eq!(entries[1].shape, &[] as &[usize]);
        assert_eq!(entries[2].shape, &[1]);
        assert_eq!(entries[2].name, "é");
        assert_eq!(table.iter().next_back().unwrap().name, "é");
        assert_eq!(table.iter().nth(1).unwrap().name, "scalar");
        assert_eq!(entries[1].to_info().as_entry(), entries[1]);
    }
}
