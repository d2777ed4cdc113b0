//! A minimal, strict zip reader for checkpoints and `.npz` files.
//!
//! It trusts nothing, and it refuses as *ambiguous* any archive that two
//! plausible readers (torch's miniz, Python's `zipfile` behind `np.load`,
//! a streaming reader) could read as different members: a second or
//! hidden end-of-central-directory record, zip64 values that disagree with
//! the classic ones, bytes before, between or after the records, a central
//! header that disagrees with its local header or data descriptor,
//! overlapping members, names that are duplicated (ignoring case) or
//! decoded differently. The rules and the readers' behaviour behind them
//! are in `zip/eocd.rs` and `zip/entry.rs`. Decompression is bounded by
//! the declared size and [`Limits::max_decompressed`]; reads verify the
//! CRC-32. Stored entries are returned as borrowed slices, so reading from
//! a memory map copies nothing.

mod entry;
mod eocd;

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use crate::decompress::{self, AtCap, Failure};
use crate::error::{Error, Result};
use crate::limits::Limits;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const EOCD_LEN: usize = 22;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;
/// General purpose flag bit 1: an LZMA member ends with an end marker.
const LZMA_END_MARKER: u16 = 1 << 1;

/// How a member's bytes are stored.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Stored as-is (what `torch.save` writes).
    Stored,
    /// Raw deflate (`np.savez_compressed`).
    Deflated,
    /// bzip2 (method 12), which Python's `zipfile` and so `np.load` read.
    Bzip2,
    /// LZMA (method 14), which Python's `zipfile` and so `np.load` read.
    Lzma,
    /// Any other method code; reading such a member fails.
    Unsupported(u16),
}

impl Method {
    /// The method's code in zip headers.
    pub fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
            Method::Bzip2 => 12,
            Method::Lzma => 14,
            Method::Unsupported(code) => code,
        }
    }

    fn from_code(code: u16) -> Method {
        match code {
            0 => Method::Stored,
            8 => Method::Deflated,
            12 => Method::Bzip2,
            14 => Method::Lzma,
            other => Method::Unsupported(other),
        }
    }
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// Member name, validated not to escape the archive.
    pub name: String,
    /// Compression method.
    pub method: Method,
    /// General purpose flag bits from the central header.
    pub flags: u16,
    /// CRC-32 of the uncompressed bytes, from the central directory.
    pub crc32: u32,
    /// Size of the uncompressed bytes.
    pub size: u64,
    /// Byte range of the (possibly compressed) data within the archive.
    pub data: Range<usize>,
    /// Offset of the member's local header.
    pub local_header: usize,
    /// End of the member's record: its data and data descriptor.
    record_end: usize,
}

/// How [`ZipArchive::read_checked`] treats a stored CRC-32 of 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrcCheck {
    /// Every CRC must match (Python's `zipfile`, so `np.load`).
    Always,
    /// A CRC of 0 means "not recorded": `torch.save` writes 0 after
    /// `torch.serialization.set_crc32_options(False)`, and torch's reader
    /// (miniz built without CRC checks) loads such files. Other CRCs are
    /// still verified.
    ZeroMeansUnset,
}

/// A parsed zip central directory. It does not own the archive bytes;
/// pass the same bytes to [`ZipArchive::read`].
#[derive(Debug, Clone)]
pub struct ZipArchive {
    entries: Vec<ZipEntry>,
    /// Member name to its index in `entries`; names are unique.
    by_name: HashMap<String, usize>,
}

/// Whether `data` is a zip archive, as the core's one sniffer recognises it.
pub fn is_zip(data: &[u8]) -> bool {
    safeweights::sniff(data) == safeweights::FileKind::Zip
}

/// Whether `data`, which does not start like a zip, ends like one that
/// Python's `zipfile` would open: an end-of-central-directory record in
/// the last 64 KiB whose directory, found the way `zipfile` finds it
/// (from the record's position back by the directory's size, whatever the
/// offsets say), starts with a central header. `zipfile.ZipFile` reads
/// such a file (a self-extracting archive, a zip after a pickle); torch's
/// reader and `np.load` go by the first bytes. Random data almost never
/// passes both signature checks.
pub fn ends_like_zip(data: &[u8]) -> bool {
    let lowest = data.len().saturating_sub(EOCD_LEN + usize::from(u16::MAX));
    let sig = EOCD_SIG.to_le_bytes();
    let Some(eocd) = data
        .get(lowest..data.len().saturating_sub(EOCD_LEN - 4))
        .and_then(|tail| tail.windows(4).rposition(|w| w == sig))
        .map(|i| lowest + i)
    else {
        return false;
    };
    let Ok(size) = le(data, eocd + 12, 4) else {
        return false;
    };
    usize::try_from(size)
        .ok()
        .and_then(|size| eocd.checked_sub(size))
        .is_some_and(|start| le(data, start, 4).is_ok_and(|s| s == u64::from(CENTRAL_SIG)))
}

/// Turns ambiguities into errors (strict parsing) or collects them
/// (lenient parsing, for the scanner).
struct Checker<'a> {
    issues: Option<&'a mut Vec<String>>,
}

impl Checker<'_> {
    fn ambiguous(&mut self, message: impl Into<String>) -> Result<()> {
        match self.issues.as_deref_mut() {
            Some(list) => {
                list.push(message.into());
                Ok(())
            }
            None => Err(Error::ambiguous(message)),
        }
    }
}

impl ZipArchive {
    /// Parses and validates the archive structure; an archive that
    /// readers could read differently is an [`Error::AmbiguousArchive`].
    pub fn parse(data: &[u8], limits: &Limits) -> Result<ZipArchive> {
        ZipArchive::parse_inner(data, limits, Checker { issues: None })
    }

    /// Parses as torch's reader would and returns every ambiguity found
    /// instead of failing on the first, so a scanner can report them and
    /// still look inside. Never use this to read weights.
    ///
    /// When the archive cannot be read as torch's reader reads it but an
    /// ambiguity was seen on the way (Python's `zipfile` shifting offsets
    /// over prepended data finds members where torch's reader finds none),
    /// the error is that [`Error::AmbiguousArchive`]: some reader loads
    /// members that we could not look at.
    pub fn parse_lenient(data: &[u8], limits: &Limits) -> Result<(ZipArchive, Vec<String>)> {
        let mut issues = Vec::new();
        let checker = Checker {
            issues: Some(&mut issues),
        };
        match ZipArchive::parse_inner(data, limits, checker) {
            Ok(archive) => Ok((archive, issues)),
            Err(e) if !issues.is_empty() => Err(Error::ambiguous(format!(
                "{}; and then: {e}",
                issues.join("; ")
            ))),
            Err(e) => Err(e),
        }
    }

    fn parse_inner(data: &[u8], limits: &Limits, mut check: Checker<'_>) -> Result<ZipArchive> {
        let dir = eocd::locate(data, &mut check)?;
        if dir.count > limits.max_zip_entries as u64 {
            return Err(Error::limit(
                "max_zip_entries",
                limits.max_zip_entries as u64,
                0,
            ));
        }
        let too_many = dir
            .count
            .checked_mul(CENTRAL_LEN as u64)
            .is_none_or(|n| n > dir.range.len() as u64);
        if too_many {
            return Err(Error::zip(
                "central directory is too small for its entry count",
            ));
        }
        let mut entries = Vec::with_capacity(dir.count as usize);
        let mut pos = dir.range.start;
        for _ in 0..dir.count {
            let (entry, next) = entry::parse_central(data, pos, dir.range.start, &mut check)?;
            entries.push(entry);
            pos = next;
        }
        if pos > dir.range.end {
            return Err(Error::zip(
                "central directory entries run past its declared size",
            ));
        }
        if pos < dir.range.end {
            check.ambiguous(format!(
                "the central directory holds {} bytes after its {} declared entries: Python's \
                 zipfile reads entries until the size is used up, torch's reader stops at the count",
                dir.range.end - pos,
                dir.count
            ))?;
        }
        check_tiling(&entries, dir.range.start, &mut check)?;
        let by_name = index_names(&entries, &mut check)?;
        check_total_output(&entries, limits)?;
        Ok(ZipArchive { entries, by_name })
    }

    /// All members in central-directory order.
    pub fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The member with exactly this name.
    pub fn find(&self, name: &str) -> Option<&ZipEntry> {
        self.find_with_index(name).map(|(_, entry)| entry)
    }

    /// The member with exactly this name and its position in
    /// [`entries`](ZipArchive::entries).
    pub(crate) fn find_with_index(&self, name: &str) -> Option<(usize, &ZipEntry)> {
        let index = *self.by_name.get(name)?;
        Some((index, self.entries.get(index)?))
    }

    /// Reads a member, decompressing if needed, and verifies its CRC-32.
    pub fn read<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        limits: &Limits,
    ) -> Result<Cow<'a, [u8]>> {
        self.read_checked(data, entry, limits, CrcCheck::Always)
    }

    /// Reads a member and verifies its CRC-32 as `crc` says.
    pub fn read_checked<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        limits: &Limits,
        crc: CrcCheck,
    ) -> Result<Cow<'a, [u8]>> {
        let bytes = self.read_unverified(data, entry, limits)?;
        if crc == CrcCheck::ZeroMeansUnset && entry.crc32 == 0 {
            return Ok(bytes);
        }
        let computed = crc32fast::hash(&bytes);
        if computed != entry.crc32 {
            return Err(Error::zip(format!(
                "member `{}` fails its CRC-32 check (stored {:08x}, computed {computed:08x}): the \
                 file is corrupt or was tampered with",
                entry.name, entry.crc32
            )));
        }
        Ok(bytes)
    }

    /// Reads a member without checking its CRC-32, as lenient readers do;
    /// for scanners that must see what such a reader would load.
    pub fn read_unverified<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        limits: &Limits,
    ) -> Result<Cow<'a, [u8]>> {
        let raw = raw_data(data, entry)?;
        if entry.method == Method::Stored {
            return Ok(Cow::Borrowed(raw));
        }
        if entry.size > limits.max_decompressed {
            return Err(Error::limit(
                "max_decompressed",
                limits.max_decompressed,
                entry.data.start,
            ));
        }
        let cap = usize::try_from(entry.size)
            .map_err(|_| Error::zip("member too large for this platform"))?;
        let out = decompress_member(raw, entry, cap, AtCap::Fail).map_err(|failure| {
            let message = match failure {
                Failure::TooLarge(_) => "decompresses to more than".to_owned(),
                Failure::Corrupt(_, why) => format!("is corrupt ({why}) and does not give"),
            };
            Error::zip(format!(
                "member `{}` {message} its declared {} bytes",
                entry.name, entry.size
            ))
        })?;
        if out.len() as u64 != entry.size {
            return Err(Error::zip(format!(
                "member `{}` decompresses to {} bytes but declares {}",
                entry.name,
                out.len(),
                entry.size
            )));
        }
        Ok(Cow::Owned(out))
    }

    /// The first `len` bytes of a member (fewer if it is shorter), without
    /// decompressing the rest or checking the CRC-32: for peeking at a
    /// header before deciding how to read the whole member with [`read`].
    ///
    /// [`read`]: ZipArchive::read
    pub fn read_prefix<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        len: usize,
    ) -> Result<Cow<'a, [u8]>> {
        let raw = raw_data(data, entry)?;
        let len = len.min(usize::try_from(entry.size).unwrap_or(usize::MAX));
        if entry.method == Method::Stored {
            return Ok(Cow::Borrowed(raw.get(..len).unwrap_or(raw)));
        }
        match decompress_member(raw, entry, len, AtCap::Stop) {
            Ok(out) if out.len() == len => Ok(Cow::Owned(out)),
            _ => Err(Error::zip(format!(
                "member `{}` does not decompress to its first {len} bytes",
                entry.name
            ))),
        }
    }
}

fn raw_data<'a>(data: &'a [u8], entry: &ZipEntry) -> Result<&'a [u8]> {
    data.get(entry.data.clone())
        .ok_or_else(|| Error::zip(format!("member `{}` lies outside the archive", entry.name)))
}

fn decompress_member(
    raw: &[u8],
    entry: &ZipEntry,
    cap: usize,
    at_cap: AtCap,
) -> std::result::Result<Vec<u8>, Failure> {
    match entry.method {
        Method::Stored => Ok(raw.get(..cap).unwrap_or(raw).to_vec()),
        Method::Deflated => decompress::deflate(raw, cap, at_cap),
        Method::Bzip2 => decompress::bzip2(raw, cap, at_cap),
        Method::Lzma => {
            let end_marker = entry.flags & LZMA_END_MARKER != 0;
            decompress::zip_lzma(raw, entry.size, end_marker, cap, at_cap)
        }
        Method::Unsupported(code) => Err(Failure::Corrupt(
            Vec::new(),
            format!("compression method {code} is not supported; only stored, deflate, bzip2 and LZMA are"),
        )),
    }
}

fn le(data: &[u8], pos: usize, n: usize) -> Result<u64> {
    let bytes = pos
        .checked_add(n)
        .and_then(|end| data.get(pos..end))
        .ok_or_else(|| Error::zip(format!("truncated structure at byte {pos}")))?;
    Ok(bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

fn to_usize(v: u64) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::zip("offset too large for this platform"))
}

/// The records must tile the data area: the first starts at byte 0, each
/// starts where the previous one (with its data descriptor) ends, and the
/// last ends where the central directory starts. Anything else is either
/// an overlap (one byte range read as two members) or bytes no member
/// owns, where a streaming reader could find a member the others miss.
fn check_tiling(entries: &[ZipEntry], dir_start: usize, check: &mut Checker<'_>) -> Result<()> {
    let mut by_offset: Vec<&ZipEntry> = entries.iter().collect();
    by_offset.sort_by_key(|e| e.local_header);
    let mut expected = 0;
    let mut previous: Option<&str> = None;
    for entry in by_offset {
        if entry.local_header < expected {
            let other = previous.unwrap_or_default();
            check.ambiguous(format!("members `{other}` and `{}` overlap", entry.name))?;
        } else if entry.local_header > expected {
            check.ambiguous(format!(
                "{} bytes before member `{}` belong to no member (data prepended or hidden \
                 between records)",
                entry.local_header - expected,
                entry.name
            ))?;
        }
        expected = expected.max(entry.record_end);
        previous = Some(&entry.name);
    }
    if expected != dir_start {
        check.ambiguous(format!(
            "{} bytes between the last member and the central directory belong to no member",
            dir_start.abs_diff(expected)
        ))?;
    }
    Ok(())
}

/// Indexes members by name. Duplicates are ambiguous (Python's zipfile
/// keeps the last, torch's sorted lookup an arbitrary one), and so are
/// names equal but for ASCII case (miniz compares names ignoring case
/// unless asked not to).
fn index_names(entries: &[ZipEntry], check: &mut Checker<'_>) -> Result<HashMap<String, usize>> {
    let mut by_name = HashMap::with_capacity(entries.len());
    let mut folded = std::collections::HashSet::with_capacity(entries.len());
    // Of several duplicated names, the message names the smallest.
    let mut duplicate: Option<&str> = None;
    for (i, entry) in entries.iter().enumerate() {
        let name = entry.name.as_str();
        // Most names are lowercase already: fold (and allocate) only the rest.
        let key: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        let clash = !folded.insert(key);
        if by_name.insert(entry.name.clone(), i).is_some() || clash {
            duplicate = Some(duplicate.map_or(name, |d| d.min(name)));
        }
    }
    if let Some(name) = duplicate {
        check.ambiguous(format!(
            "duplicate member name `{name}` (names are compared ignoring case): readers pick \
             different copies"
        ))?;
    }
    Ok(by_name)
}

/// Bounds the total output of the compressed members: reading every
/// member once can never produce more than `max_total_decompressed`.
fn check_total_output(entries: &[ZipEntry], limits: &Limits) -> Result<()> {
    let total = entries
        .iter()
        .filter(|e| e.method != Method::Stored)
        .fold(0u64, |acc, e| acc.saturating_add(e.size));
    if total > limits.max_total_decompressed {
        return Err(Error::limit(
            "max_total_decompressed",
            limits.max_total_decompressed,
            0,
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "zip_tests.rs"]
mod tests;
