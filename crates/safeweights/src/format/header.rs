//! The parsed, validated header of a safetensors file.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;

use crate::error::{Error, Result};
use crate::format::dtype::Dtype;
use crate::format::parse::{parse_header_json, ParsedHeader};
use crate::format::sniff::foreign;
use crate::format::table::{Table, TensorEntry, Tensors};
use crate::format::validate::{check_sizes_and_sort, check_tiling};

/// Size of the little-endian length prefix that starts every file.
pub const PREFIX_LEN: usize = 8;

/// The reference's limit on header size, which we keep as the default.
pub const DEFAULT_MAX_HEADER_SIZE: u64 = 100_000_000;

/// Free-form string metadata stored under `__metadata__`, sorted by key so
/// that writing it is deterministic.
pub type Metadata = BTreeMap<String, String>;

/// One tensor's entry, owned: what writers lay out. A parsed [`Header`]
/// hands out borrowed [`TensorEntry`]s instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first. Empty for a scalar.
    pub shape: Vec<usize>,
    /// First byte, relative to the start of the data section.
    pub begin: u64,
    /// One past the last byte, relative to the start of the data section.
    pub end: u64,
}

/// Number of elements of `shape` (1 for a scalar), saturating on overflow
/// (validated headers never overflow; hand-built entries may).
pub(crate) fn saturating_numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |acc, &d| acc.saturating_mul(d))
}

/// Length in bytes of the data from `begin` to `end`, saturating where it
/// exceeds the address space.
pub(crate) fn data_len(begin: u64, end: u64) -> usize {
    usize::try_from(end - begin).unwrap_or(usize::MAX)
}

/// Number of elements of `shape` (1 for a scalar), or `None` on overflow.
pub(crate) fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl TensorInfo {
    /// Number of elements (1 for a scalar). Validated headers never
    /// overflow; for hand-built entries the count saturates.
    pub fn numel(&self) -> usize {
        saturating_numel(&self.shape)
    }

    /// Length of the tensor's data in bytes.
    pub fn byte_len(&self) -> usize {
        data_len(self.begin, self.end)
    }
}

/// Limits applied while parsing a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLimits {
    /// Largest accepted header, in bytes.
    pub max_header_size: u64,
}

impl Default for HeaderLimits {
    fn default() -> Self {
        HeaderLimits {
            max_header_size: DEFAULT_MAX_HEADER_SIZE,
        }
    }
}

/// A validated header: tensors sorted by data offset, plus metadata.
///
/// Construction guarantees every rule of the format: known dtypes, shapes
/// whose byte size matches the offsets without overflow, tensors that tile
/// the data section exactly with no holes or overlaps, unique names.
///
/// The tensors are stored compactly (all names in one string, all shapes
/// in one array, see `table.rs`), so a parsed header takes less memory
/// than its JSON; lookups by name go through a table of `u32` indices.
///
/// When the names, in data-offset order, are also in alphabetical order
/// (what the reference's writer produces for a single dtype, and what
/// every million-tensor file seen so far does), they cannot repeat, so the
/// name index is built only on the first lookup, and the sorted order
/// needs no sort: parsing for `validate` or `keys()` then allocates the
/// table alone.
#[derive(Debug, Clone)]
pub struct Header {
    metadata: Option<Metadata>,
    tensors: Table,
    index: OnceLock<HashTable<u32>>,
    hasher: std::hash::RandomState,
    header_len: u64,
    names_sorted: bool,
}

impl Header {
    /// Reads the 8-byte length prefix and checks it against the file size.
    ///
    /// `prefix` is the first bytes of the file (at least 8 when available,
    /// more helps recognise foreign formats) and `file_len` the full length.
    pub fn read_header_len(prefix: &[u8], file_len: u64, limits: &HeaderLimits) -> Result<u64> {
        let foreign = || foreign(prefix).map(Error::ForeignFormat);
        let Some(len_bytes) = prefix.get(..PREFIX_LEN) else {
            return Err(foreign().unwrap_or(Error::FileTooSmall { len: file_len }));
        };
        let mut raw = [0u8; PREFIX_LEN];
        raw.copy_from_slice(len_bytes);
        let len = u64::from_le_bytes(raw);
        if len > limits.max_header_size {
            return Err(foreign().unwrap_or(Error::HeaderTooLarge {
                len,
                limit: limits.max_header_size,
            }));
        }
        let available = file_len.saturating_sub(PREFIX_LEN as u64);
        if len > available {
            return Err(foreign().unwrap_or(Error::HeaderBeyondFile { len, available }));
        }
        Ok(len)
    }

    /// Parses and validates a header given its JSON bytes (without the
    /// 8-byte prefix) and the length of the data section that follows.
    pub fn parse(json: &[u8], data_len: u64) -> Result<Header> {
        let parsed = parse_text(json, &mut |_| {})?;
        Self::validate(parsed, json.len() as u64, data_len)
    }

    /// [`Header::parse`] of JSON the caller gives away: it is freed as soon
    /// as it has been read, before the checks and the name index are built,
    /// so that peak memory stays under twice the header's size.
    pub fn parse_owned(json: Vec<u8>, data_len: u64) -> Result<Header> {
        let parsed = parse_text(&json, &mut |_| {})?;
        let header_len = json.len() as u64;
        drop(json);
        Self::validate(parsed, header_len, data_len)
    }

    fn validate(parsed: ParsedHeader, header_len: u64, data_len: u64) -> Result<Header> {
        let mut tensors = parsed.tensors;
        check_sizes_and_sort(&mut tensors)?;
        let hasher = std::hash::RandomState::new();
        let names_sorted = tensors.names_strictly_increasing();
        let index = OnceLock::new();
        if !names_sorted {
            // Duplicate names are checked before the tiling, so that two
            // identical entries are reported as a duplicate, not an overlap.
            let (table, duplicate) = build_index(&tensors, &hasher);
            if let Some(i) = duplicate {
                return Err(Error::DuplicateKey {
                    within: "the header".to_owned(),
                    key: tensors.name(i as usize).to_owned(),
                });
            }
            // Cannot fail: the cell was created empty just above.
            index.get_or_init(|| table);
        }
        check_tiling(&tensors, data_len)?;
        tensors.shrink_to_fit();
        Ok(Header {
            metadata: parsed.metadata,
            tensors,
            index,
            hasher,
            header_len,
            names_sorted,
        })
    }

    /// The name index, built on first use when validation did not need it.
    fn index(&self) -> &HashTable<u32> {
        // Names in strictly increasing order have no duplicate to report.
        self.index
            .get_or_init(|| build_index(&self.tensors, &self.hasher).0)
    }

    /// Parses a complete file held in memory: prefix, header and data.
    /// Returns the header and the data section.
    pub fn parse_file<'a>(bytes: &'a [u8], limits: &HeaderLimits) -> Result<(Header, &'a [u8])> {
        Self::parse_file_releasing(bytes, limits, &mut |_| {})
    }

    /// [`Header::parse_file`] that tells the caller, through `release(n)`,
    /// when the first `n` bytes of `bytes` need not stay in memory for now,
    /// every few MiB while the header is walked. A caller parsing from a
    /// file map hands those pages back to the kernel (they stay in the page
    /// cache), so that the map's pages and the growing table are never
    /// resident together: a million-tensor header then peaks near the
    /// table's size, not the table's plus the JSON's. Released bytes may
    /// be read again (the walk after the UTF-8 check, an error message
    /// looking at the first bytes), so releasing must leave them readable.
    pub fn parse_file_releasing<'a>(
        bytes: &'a [u8],
        limits: &HeaderLimits,
        release: &mut dyn FnMut(usize),
    ) -> Result<(Header, &'a [u8])> {
        let len = Self::read_header_len(bytes, bytes.len() as u64, limits)?;
        // The length was checked against `bytes.len()`, so it fits in usize.
        let data_start = PREFIX_LEN + len as usize;
        let json = &bytes[PREFIX_LEN..data_start];
        let data = &bytes[data_start..];
        let parsed = parse_text(json, &mut |done| release(PREFIX_LEN + done))
            .map_err(|error| foreign_or(error, bytes))?;
        release(data_start);
        let header = Self::validate(parsed, len, data.len() as u64)?;
        Ok((header, data))
    }

    /// Length of the JSON header in bytes (padding included), not counting
    /// the 8-byte prefix.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Offset of the data section from the start of the file.
    pub fn data_start(&self) -> u64 {
        PREFIX_LEN as u64 + self.header_len
    }

    /// Total length of the data section in bytes.
    pub fn data_len(&self) -> u64 {
        self.tensors.iter().next_back().map_or(0, |t| t.end)
    }

    /// The `__metadata__` map, if the file has one.
    pub fn metadata(&self) -> Option<&Metadata> {
        self.metadata.as_ref()
    }

    /// All tensors, sorted by data offset.
    pub fn tensors(&self) -> Tensors<'_> {
        self.tensors.iter()
    }

    /// The tensor at `position` in data-offset order.
    pub fn tensor_at(&self, position: usize) -> Option<TensorEntry<'_>> {
        (position < self.tensors.len()).then(|| self.tensors.get(position))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the file holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.len() == 0
    }

    /// Looks a tensor up by name.
    pub fn get(&self, name: &str) -> Option<TensorEntry<'_>> {
        let hash = self.hasher.hash_one(name);
        self.index()
            .find(hash, |&i| self.tensors.name(i as usize) == name)
            .map(|&i| self.tensors.get(i as usize))
    }

    /// Looks a tensor up by name, with an error naming it when it is absent.
    pub fn tensor(&self, name: &str) -> Result<TensorEntry<'_>> {
        self.get(name).ok_or_else(|| Error::TensorNotFound {
            name: name.to_owned(),
        })
    }

    /// Tensor names sorted alphabetically (the order `keys()` uses).
    pub fn sorted_names(&self) -> Vec<&str> {
        self.names_alphabetical().collect()
    }

    /// Tensor names sorted alphabetically, without a list of them: when the
    /// names are sorted in the file already this allocates nothing, else
    /// one `u32` per tensor (a quarter of a list of `&str`).
    pub fn names_alphabetical(&self) -> SortedNames<'_> {
        let order = (!self.names_sorted).then(|| {
            let mut order: Vec<u32> = (0..self.tensors.len() as u32).collect();
            order.sort_unstable_by_key(|&i| self.tensors.name(i as usize));
            order
        });
        SortedNames {
            tensors: &self.tensors,
            order,
            front: 0,
        }
    }
}

/// Tensor names in alphabetical order, see [`Header::names_alphabetical`].
#[derive(Debug, Clone)]
pub struct SortedNames<'a> {
    tensors: &'a Table,
    /// Positions in sorted order, or `None` when the table is sorted.
    order: Option<Vec<u32>>,
    front: usize,
}

impl<'a> Iterator for SortedNames<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let position = match &self.order {
            Some(order) => *order.get(self.front)? as usize,
            None if self.front < self.tensors.len() => self.front,
            None => return None,
        };
        self.front += 1;
        Some(self.tensors.name(position))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.tensors.len() - self.front;
        (left, Some(left))
    }
}

impl ExactSizeIterator for SortedNames<'_> {}

/// The JSON walk, with errors that show another format named as such.
fn parse_text(json: &[u8], done: &mut dyn FnMut(usize)) -> Result<ParsedHeader> {
    let text = std::str::from_utf8(json).map_err(|error| Error::HeaderNotUtf8 {
        offset: error.valid_up_to(),
    })?;
    // The UTF-8 check read every byte: none of them needs to stay in
    // memory while the walk starts over from the first.
    done(json.len());
    parse_header_json(text, done).map_err(|error| match error {
        Error::HeaderNotObject | Error::InvalidJson { offset: 0, .. } => {
            foreign(json).map_or(error, Error::ForeignFormat)
        }
        other => other,
    })
}

/// A header that is not JSON at all may be another format whose first
/// bytes happen to read as a plausible length (a zip whose version and flag
/// fields are zero, for example): recognise it from the file's first bytes.
pub(crate) fn foreign_or(error: Error, file_prefix: &[u8]) -> Error {
    match error {
        Error::HeaderNotUtf8 { .. }
        | Error::InvalidJson { .. }
        | Error::HeaderNotObject
        | Error::TrailingCharacters { .. } => {
            foreign(file_prefix).map_or(error, Error::ForeignFormat)
        }
        other => other,
    }
}

/// Builds the name index; also returns the position of the first name
/// seen twice, if any. Validation refuses duplicates: the reference keeps
/// the last of two identical entries silently; we refuse, because the
/// README of the format forbids duplicates and two readers could see
/// different files.
fn build_index(tensors: &Table, hasher: &std::hash::RandomState) -> (HashTable<u32>, Option<u32>) {
    // The table's own offsets are u32 and every entry takes more than 40
    // bytes of JSON, so the count always fits.
    let count = tensors.len() as u32;
    let mut index = HashTable::with_capacity(tensors.len());
    let name = |i: u32| tensors.name(i as usize);
    let hashes: Vec<u64> = (0..count).map(|i| hasher.hash_one(name(i))).collect();
    for (hash, i) in insertion_order(hashes, index.capacity()) {
        // Names are compared only when a hash tag matches: looking each one
        // up in insertion order would be two cache misses per tensor.
        if index.find(hash, |&j| name(j) == name(i)).is_some() {
            return (index, Some(i));
        }
        index.insert_unique(hash, i, |&j| hasher.hash_one(name(j)));
    }
    (index, None)
}

/// The order in which to insert the names so that the table is filled
/// region by region: grouped (one counting-sort pass) by the top 8 bits of
/// the bucket each hash lands in. Inserting in file order touches a random
/// place of a table larger than the cache for every name, which was most of
/// the time of parsing a million-tensor header.
fn insertion_order(hashes: Vec<u64>, capacity: usize) -> Vec<(u64, u32)> {
    // hashbrown keeps 1/8 of its buckets free: capacity is 7/8 of a power
    // of two, and a bucket is picked by the low bits of the hash.
    let buckets = (capacity.saturating_mul(8) / 7).max(1).next_power_of_two();
    let shift = buckets.trailing_zeros().saturating_sub(8);
    let region = |hash: u64| (hash as usize & (buckets - 1)) >> shift;
    let mut starts = [0usize; 257];
    for &hash in &hashes {
        starts[region(hash) + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![(0u64, 0u32); hashes.len()];
    for (i, hash) in hashes.into_iter().enumerate() {
        let slot = &mut starts[region(hash)];
        order[*slot] = (hash, i as u32);
        *slot += 1;
    }
    order
}
