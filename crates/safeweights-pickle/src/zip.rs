//! A minimal, strict zip reader for checkpoints and `.npz` files.
//!
//! It trusts nothing: local headers must agree with the central directory,
//! entries may not overlap (the classic overlapping-entry bomb), names may
//! not escape, deflated sizes are capped before inflating, and every read
//! verifies the CRC-32. Stored entries are returned as borrowed slices, so
//! reading from a memory map copies nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

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

/// How a member's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Stored as-is (what `torch.save` writes).
    Stored,
    /// Raw deflate.
    Deflated,
}

/// One archive member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// Member name, validated not to escape the archive.
    pub name: String,
    /// Compression method.
    pub method: Method,
    /// CRC-32 of the uncompressed bytes, from the central directory.
    pub crc32: u32,
    /// Size of the uncompressed bytes.
    pub size: u64,
    /// Byte range of the (possibly compressed) data within the archive.
    pub data: Range<usize>,
    /// Offset of the member's local header.
    pub local_header: usize,
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

impl ZipArchive {
    /// Parses and validates the archive structure.
    pub fn parse(data: &[u8], limits: &Limits) -> Result<ZipArchive> {
        ZipArchive::parse_inner(data, limits, None)
    }

    /// Parses like a lenient reader (torch's) would: disagreements between
    /// local headers and the central directory are returned as issues
    /// instead of errors, so a scanner can report them and still look
    /// inside. Never use this to read weights.
    pub fn parse_lenient(data: &[u8], limits: &Limits) -> Result<(ZipArchive, Vec<String>)> {
        let mut issues = Vec::new();
        let archive = ZipArchive::parse_inner(data, limits, Some(&mut issues))?;
        Ok((archive, issues))
    }

    fn parse_inner(
        data: &[u8],
        limits: &Limits,
        mut issues: Option<&mut Vec<String>>,
    ) -> Result<ZipArchive> {
        let dir = find_directory(data)?;
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
            let (entry, next) = parse_central(data, pos, dir.range.start, issues.as_deref_mut())?;
            entries.push(entry);
            pos = next;
        }
        if pos > dir.range.end {
            return Err(Error::zip(
                "central directory entries run past its declared size",
            ));
        }
        let by_name = check_layout(&entries)?;
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

    /// Reads a member, inflating if needed, and verifies its CRC-32.
    pub fn read<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        limits: &Limits,
    ) -> Result<Cow<'a, [u8]>> {
        let bytes = self.read_unverified(data, entry, limits)?;
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(Error::zip(format!(
                "member `{}` fails its CRC-32 check (stored {:08x}, computed {crc:08x}): the file \
                 is corrupt or was tampered with",
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
        let raw = data.get(entry.data.clone()).ok_or_else(|| {
            Error::zip(format!("member `{}` lies outside the archive", entry.name))
        })?;
        let bytes = match entry.method {
            Method::Stored => Cow::Borrowed(raw),
            Method::Deflated => Cow::Owned(inflate(raw, entry, limits)?),
        };
        Ok(bytes)
    }

    /// The first `len` bytes of a member (fewer if it is shorter), without
    /// inflating the rest or checking the CRC-32: for peeking at a header
    /// before deciding how to read the whole member with [`read`].
    ///
    /// [`read`]: ZipArchive::read
    pub fn read_prefix<'a>(
        &self,
        data: &'a [u8],
        entry: &ZipEntry,
        len: usize,
    ) -> Result<Cow<'a, [u8]>> {
        let raw = data.get(entry.data.clone()).ok_or_else(|| {
            Error::zip(format!("member `{}` lies outside the archive", entry.name))
        })?;
        let len = len.min(usize::try_from(entry.size).unwrap_or(usize::MAX));
        match entry.method {
            Method::Stored => Ok(Cow::Borrowed(raw.get(..len).unwrap_or(raw))),
            Method::Deflated => inflate_prefix(raw, len, &entry.name).map(Cow::Owned),
        }
    }
}

fn inflate_prefix(raw: &[u8], len: usize, name: &str) -> Result<Vec<u8>> {
    use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
    use miniz_oxide::inflate::TINFLStatus;
    let mut out = vec![0u8; len];
    let mut state = DecompressorOxide::new();
    // A non-wrapping buffer lets the decoder stop once `out` is full.
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(&mut state, raw, &mut out, 0, flags);
    match status {
        TINFLStatus::Done | TINFLStatus::HasMoreOutput if written == len => Ok(out),
        _ => Err(Error::zip(format!(
            "member `{name}` does not inflate to its first {len} bytes ({status:?})"
        ))),
    }
}

fn inflate(raw: &[u8], entry: &ZipEntry, limits: &Limits) -> Result<Vec<u8>> {
    let max_by_ratio = (raw.len() as u64).max(1).saturating_mul(limits.max_ratio);
    if entry.size > max_by_ratio {
        return Err(Error::limit(
            "max_ratio",
            limits.max_ratio,
            entry.data.start,
        ));
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
    // The declared size bounds the output, so a lying header cannot make
    // us inflate more than it claims.
    let out = miniz_oxide::inflate::decompress_to_vec_with_limit(raw, cap).map_err(|e| {
        Error::zip(format!(
            "member `{}` does not inflate to its declared {} bytes ({e:?})",
            entry.name, entry.size
        ))
    })?;
    if out.len() as u64 != entry.size {
        return Err(Error::zip(format!(
            "member `{}` inflates to {} bytes but declares {}",
            entry.name,
            out.len(),
            entry.size
        )));
    }
    Ok(out)
}

struct Directory {
    count: u64,
    range: Range<usize>,
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

fn find_directory(data: &[u8]) -> Result<Directory> {
    let lowest = data.len().saturating_sub(EOCD_LEN + usize::from(u16::MAX));
    let eocd = (lowest..=data.len().saturating_sub(EOCD_LEN))
        .rev()
        .find(|&p| {
            le(data, p, 4).ok() == Some(u64::from(EOCD_SIG))
                && le(data, p + 20, 2).ok().map(|c| p + EOCD_LEN + c as usize) == Some(data.len())
        })
        .ok_or_else(|| {
            Error::zip("no end-of-central-directory record (not a zip, or truncated)")
        })?;
    if le(data, eocd + 4, 2)? != 0 || le(data, eocd + 6, 2)? != 0 {
        return Err(Error::zip("multi-disk archives are not supported"));
    }
    let mut count = le(data, eocd + 10, 2)?;
    let mut size = le(data, eocd + 12, 4)?;
    let mut offset = le(data, eocd + 16, 4)?;
    let mut dir_end = eocd;
    if count == 0xffff || size == 0xffff_ffff || offset == 0xffff_ffff {
        let loc = eocd
            .checked_sub(20)
            .filter(|&l| le(data, l, 4).ok() == Some(u64::from(ZIP64_LOCATOR_SIG)))
            .ok_or_else(|| Error::zip("zip64 sizes without a zip64 locator"))?;
        let z = to_usize(le(data, loc + 8, 8)?)?;
        if z >= loc || le(data, z, 4)? != u64::from(ZIP64_EOCD_SIG) {
            return Err(Error::zip("bad zip64 end-of-central-directory record"));
        }
        count = le(data, z + 32, 8)?;
        size = le(data, z + 40, 8)?;
        offset = le(data, z + 48, 8)?;
        dir_end = z;
    }
    let start = to_usize(offset)?;
    let end = start
        .checked_add(to_usize(size)?)
        .filter(|&end| end <= dir_end)
        .ok_or_else(|| Error::zip("central directory lies outside the archive"))?;
    Ok(Directory {
        count,
        range: start..end,
    })
}

/// Parses one central header at `pos`; returns it and the next position.
fn parse_central(
    data: &[u8],
    pos: usize,
    dir_start: usize,
    issues: Option<&mut Vec<String>>,
) -> Result<(ZipEntry, usize)> {
    if le(data, pos, 4)? != u64::from(CENTRAL_SIG) {
        return Err(Error::zip(format!(
            "bad central directory signature at byte {pos}"
        )));
    }
    let flags = le(data, pos + 8, 2)?;
    let method = match le(data, pos + 10, 2)? {
        0 => Method::Stored,
        8 => Method::Deflated,
        m => return Err(Error::zip(format!("unsupported compression method {m}"))),
    };
    if flags & 1 != 0 {
        return Err(Error::zip("encrypted members are not supported"));
    }
    let crc32 = le(data, pos + 16, 4)? as u32;
    let mut csize = le(data, pos + 20, 4)?;
    let mut size = le(data, pos + 24, 4)?;
    let name_len = le(data, pos + 28, 2)? as usize;
    let extra_len = le(data, pos + 30, 2)? as usize;
    let comment_len = le(data, pos + 32, 2)? as usize;
    let mut local = le(data, pos + 42, 4)?;
    let name_start = pos + CENTRAL_LEN;
    let name_bytes = data
        .get(name_start..name_start + name_len)
        .ok_or_else(|| Error::zip("truncated central directory name"))?;
    let extra_start = name_start + name_len;
    let extra = data
        .get(extra_start..extra_start + extra_len)
        .ok_or_else(|| Error::zip("truncated central directory extra field"))?;
    apply_zip64(extra, &mut size, &mut csize, &mut local)?;
    let name = check_name(name_bytes)?;
    let local = to_usize(local)?;
    let data_start = check_local(data, local, name_bytes, method, crc32, flags, issues)?;
    let data_end = data_start
        .checked_add(to_usize(csize)?)
        .filter(|&end| end <= dir_start)
        .ok_or_else(|| {
            Error::zip(format!(
                "member `{name}` runs past the end of the data area"
            ))
        })?;
    if method == Method::Stored && csize != size {
        return Err(Error::zip(format!(
            "stored member `{name}` has different sizes"
        )));
    }
    let entry = ZipEntry {
        name,
        method,
        crc32,
        size,
        data: data_start..data_end,
        local_header: local,
    };
    Ok((entry, extra_start + extra_len + comment_len))
}

fn apply_zip64(mut extra: &[u8], size: &mut u64, csize: &mut u64, local: &mut u64) -> Result<()> {
    while extra.len() >= 4 {
        let id = le(extra, 0, 2)?;
        let len = le(extra, 2, 2)? as usize;
        let body = extra
            .get(4..4 + len)
            .ok_or_else(|| Error::zip("truncated extra field"))?;
        if id == 1 {
            let mut at = 0;
            for field in [size, csize, local] {
                if *field == 0xffff_ffff {
                    *field = le(body, at, 8)?;
                    at += 8;
                }
            }
            return Ok(());
        }
        extra = extra.get(4 + len..).unwrap_or_default();
    }
    Ok(())
}

/// Validates the local header and returns where the member's data starts.
fn check_local(
    data: &[u8],
    pos: usize,
    name: &[u8],
    method: Method,
    crc: u32,
    flags: u64,
    mut issues: Option<&mut Vec<String>>,
) -> Result<usize> {
    let shown = String::from_utf8_lossy(name);
    if pos >= data.len() || le(data, pos, 4)? != u64::from(LOCAL_SIG) {
        return Err(Error::zip(format!("member `{shown}` has no local header")));
    }
    let mut problem = |message: String| match issues.as_deref_mut() {
        Some(list) => {
            list.push(message);
            Ok(())
        }
        None => Err(Error::zip(message)),
    };
    let local_name_len = le(data, pos + 26, 2)? as usize;
    let extra_len = le(data, pos + 28, 2)? as usize;
    let local_name = data.get(pos + LOCAL_LEN..pos + LOCAL_LEN + local_name_len);
    if local_name != Some(name) {
        problem(format!(
            "member `{shown}` has a different name in its local header (`{}`): a known way to \
             hide content from scanners",
            String::from_utf8_lossy(local_name.unwrap_or_default())
        ))?;
    }
    let local_method = le(data, pos + 8, 2)?;
    let expected_method = if method == Method::Stored { 0 } else { 8 };
    if local_method != expected_method {
        problem(format!(
            "member `{shown}` has a different method in its local header"
        ))?;
    }
    // With a data descriptor (flag bit 3) the local CRC and sizes are zero.
    if flags & 8 == 0 && le(data, pos + 14, 4)? as u32 != crc {
        problem(format!(
            "member `{shown}` has a different CRC in its local header"
        ))?;
    }
    Ok(pos + LOCAL_LEN + local_name_len + extra_len)
}

fn check_name(raw: &[u8]) -> Result<String> {
    let name = std::str::from_utf8(raw).map_err(|_| Error::zip("member name is not UTF-8"))?;
    let escapes = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.contains('\0')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|part| part == "..");
    if escapes {
        return Err(Error::zip(format!(
            "member name `{name}` is absolute or escapes the archive"
        )));
    }
    Ok(name.to_owned())
}

/// Refuses duplicate names and overlapping members; returns each member's
/// index by name.
fn check_layout(entries: &[ZipEntry]) -> Result<HashMap<String, usize>> {
    let mut by_offset: Vec<&ZipEntry> = entries.iter().collect();
    by_offset.sort_by_key(|e| e.local_header);
    for pair in by_offset.windows(2) {
        if let [a, b] = pair {
            if a.data.end > b.local_header {
                return Err(Error::zip(format!(
                    "members `{}` and `{}` overlap",
                    a.name, b.name
                )));
            }
        }
    }
    let mut by_name = HashMap::with_capacity(entries.len());
    // Of several duplicated names, the error names the smallest.
    let mut duplicate: Option<&str> = None;
    for (i, entry) in entries.iter().enumerate() {
        if by_name.insert(entry.name.clone(), i).is_some() {
            let name = entry.name.as_str();
            duplicate = Some(duplicate.map_or(name, |d| d.min(name)));
        }
    }
    if let Some(name) = duplicate {
        return Err(Error::zip(format!("duplicate member name `{name}`")));
    }
    Ok(by_name)
}

#[cfg(test)]
#[path = "zip_tests.rs"]
mod tests;
