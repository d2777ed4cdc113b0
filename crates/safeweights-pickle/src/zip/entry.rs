//! Central directory headers and the local headers they point to.
//!
//! Torch's miniz and Python's `zipfile` both take the name, method, sizes
//! and CRC from the central header and only the name and extra lengths
//! from the local header; streaming readers take everything from the
//! local header. Any field that differs between the two is therefore an
//! ambiguity, as is a name two readers would decode differently.

use super::{
    le, to_usize, Checker, Method, ZipEntry, CENTRAL_LEN, CENTRAL_SIG, LOCAL_LEN, LOCAL_SIG,
};
use crate::error::{Error, Result};

const DESCRIPTOR_SIG: u64 = 0x0807_4b50;
/// General purpose flag bits.
const ENCRYPTED: u16 = 1;
const DATA_DESCRIPTOR: u16 = 1 << 3;
const COMPRESSED_PATCH: u16 = 1 << 5;
const STRONG_ENCRYPTION: u16 = 1 << 6;
const UTF8_NAME: u16 = 1 << 11;
const MASKED_HEADERS: u16 = 1 << 13;

/// Fields read from a central header.
struct Central<'a> {
    flags: u16,
    method: u16,
    crc32: u32,
    csize: u64,
    size: u64,
    local: u64,
    name: &'a [u8],
    zip64: bool,
}

/// Parses one central header at `pos`; returns the entry and the next
/// position. `dir_start` bounds the data area.
pub(super) fn parse_central(
    data: &[u8],
    pos: usize,
    dir_start: usize,
    check: &mut Checker<'_>,
) -> Result<(ZipEntry, usize)> {
    if le(data, pos, 4)? != u64::from(CENTRAL_SIG) {
        return Err(Error::zip(format!(
            "bad central directory signature at byte {pos}"
        )));
    }
    let name_len = le(data, pos + 28, 2)? as usize;
    let extra_len = le(data, pos + 30, 2)? as usize;
    let comment_len = le(data, pos + 32, 2)? as usize;
    let name_start = pos + CENTRAL_LEN;
    let extra_start = name_start + name_len;
    let next = extra_start + extra_len + comment_len;
    let name = data
        .get(name_start..extra_start)
        .ok_or_else(|| Error::zip("truncated central directory name"))?;
    let extra = data
        .get(extra_start..extra_start + extra_len)
        .ok_or_else(|| Error::zip("truncated central directory extra field"))?;
    // Python's zipfile refuses archives that need a newer zip version
    // than 6.3; what it cannot open, we do not read either.
    let needs = le(data, pos + 6, 1)?;
    if needs > 63 {
        return Err(Error::zip(format!(
            "member needs zip version {}.{}, newer than any reader of model files supports",
            needs / 10,
            needs % 10
        )));
    }
    if le(data, pos + 34, 2)? != 0 {
        return Err(Error::zip("multi-disk archives are not supported"));
    }
    let mut c = Central {
        flags: le(data, pos + 8, 2)? as u16,
        method: le(data, pos + 10, 2)? as u16,
        crc32: le(data, pos + 16, 4)? as u32,
        csize: le(data, pos + 20, 4)?,
        size: le(data, pos + 24, 4)?,
        local: le(data, pos + 42, 4)?,
        name,
        zip64: false,
    };
    c.zip64 = apply_zip64(extra, [&mut c.size, &mut c.csize, &mut c.local], check)?;
    let entry = to_entry(data, &c, dir_start, check)?;
    Ok((entry, next))
}

fn to_entry(
    data: &[u8],
    c: &Central<'_>,
    dir_start: usize,
    check: &mut Checker<'_>,
) -> Result<ZipEntry> {
    let shown = String::from_utf8_lossy(c.name).into_owned();
    if c.flags & (ENCRYPTED | STRONG_ENCRYPTION | MASKED_HEADERS) != 0 {
        return Err(Error::zip(format!("member `{shown}` is encrypted")));
    }
    if c.flags & COMPRESSED_PATCH != 0 {
        return Err(Error::zip(format!(
            "member `{shown}` is a compressed patch"
        )));
    }
    let name = check_name(c.name, c.flags, check)?;
    let method = Method::from_code(c.method);
    let local = to_usize(c.local)?;
    let data_start = check_local(data, local, c, &shown, check)?;
    let data_end = data_start
        .checked_add(to_usize(c.csize)?)
        .filter(|&end| end <= dir_start)
        .ok_or_else(|| {
            Error::zip(format!(
                "member `{shown}` runs past the end of the data area"
            ))
        })?;
    if method == Method::Stored && c.csize != c.size {
        return Err(Error::zip(format!(
            "stored member `{shown}` has different sizes"
        )));
    }
    let descriptor = if c.flags & DATA_DESCRIPTOR != 0 {
        descriptor_len(data, data_end, c, &shown, check)?
    } else {
        0
    };
    Ok(ZipEntry {
        name,
        method,
        flags: c.flags,
        crc32: c.crc32,
        size: c.size,
        data: data_start..data_end,
        local_header: local,
        record_end: data_end + descriptor,
    })
}

/// Replaces 0xFFFFFFFF fields by the zip64 extra field's values, in the
/// order the format (and both miniz and zipfile) read them. Returns
/// whether a zip64 field was used. Like Python's zipfile, refuses an extra
/// area whose fields run past its end; a second zip64 field is ambiguous
/// (miniz reads the first, zipfile each in turn).
fn apply_zip64(mut extra: &[u8], fields: [&mut u64; 3], check: &mut Checker<'_>) -> Result<bool> {
    let mut zip64: Option<&[u8]> = None;
    while extra.len() >= 4 {
        let id = le(extra, 0, 2)?;
        let len = le(extra, 2, 2)? as usize;
        let body = extra
            .get(4..4 + len)
            .ok_or_else(|| Error::zip("truncated extra field"))?;
        if id == 1 {
            if zip64.is_some() {
                check.ambiguous("two zip64 extra fields in one header")?;
            } else {
                zip64 = Some(body);
            }
        }
        extra = extra.get(4 + len..).unwrap_or_default();
    }
    let Some(body) = zip64 else {
        return Ok(false);
    };
    let mut at = 0;
    for field in fields {
        if *field == 0xffff_ffff {
            *field = le(body, at, 8)?;
            at += 8;
        }
    }
    Ok(at > 0)
}

/// Validates the local header against the central one and returns where
/// the member's data starts.
fn check_local(
    data: &[u8],
    pos: usize,
    c: &Central<'_>,
    shown: &str,
    check: &mut Checker<'_>,
) -> Result<usize> {
    if pos >= data.len() || le(data, pos, 4)? != u64::from(LOCAL_SIG) {
        return Err(Error::zip(format!("member `{shown}` has no local header")));
    }
    let name_len = le(data, pos + 26, 2)? as usize;
    let extra_len = le(data, pos + 28, 2)? as usize;
    let name_start = pos + LOCAL_LEN;
    let local_name = data.get(name_start..name_start + name_len);
    let extra = data
        .get(name_start + name_len..name_start + name_len + extra_len)
        .ok_or_else(|| Error::zip(format!("member `{shown}` has a truncated local header")))?;
    if local_name != Some(c.name) {
        check.ambiguous(format!(
            "member `{shown}` has another name in its local header (`{}`): streaming readers \
             see that name, torch's reader the central one, and Python's zipfile refuses it",
            String::from_utf8_lossy(local_name.unwrap_or_default())
        ))?;
    }
    if le(data, pos + 6, 2)? != u64::from(c.flags) {
        check.ambiguous(format!(
            "member `{shown}` has other flags in its local header"
        ))?;
    }
    if le(data, pos + 8, 2)? != u64::from(c.method) {
        check.ambiguous(format!(
            "member `{shown}` has another compression method in its local header"
        ))?;
    }
    let mut size = le(data, pos + 22, 4)?;
    let mut csize = le(data, pos + 18, 4)?;
    let mut no_offset = 0;
    apply_zip64(extra, [&mut size, &mut csize, &mut no_offset], check)?;
    let crc = le(data, pos + 14, 4)?;
    // With a data descriptor (flag bit 3) the local values may be zero.
    let deferred = c.flags & DATA_DESCRIPTOR != 0;
    let agrees = |local: u64, central: u64| local == central || (deferred && local == 0);
    if !agrees(crc, u64::from(c.crc32)) || !agrees(size, c.size) || !agrees(csize, c.csize) {
        check.ambiguous(format!(
            "member `{shown}` has another CRC or size in its local header: streaming readers \
             would read other bytes than torch's reader and Python's zipfile"
        ))?;
    }
    Ok(name_start + name_len + extra_len)
}

/// The length of the data descriptor after a member's data; checks that
/// it repeats the central header's CRC and sizes.
fn descriptor_len(
    data: &[u8],
    at: usize,
    c: &Central<'_>,
    shown: &str,
    check: &mut Checker<'_>,
) -> Result<usize> {
    let signed = le(data, at, 4).ok() == Some(DESCRIPTOR_SIG);
    let start = at + if signed { 4 } else { 0 };
    let width = if c.zip64 { 8 } else { 4 };
    let values = (
        le(data, start, 4)?,
        le(data, start + 4, width)?,
        le(data, start + 4 + width, width)?,
    );
    if values != (u64::from(c.crc32), c.csize, c.size) {
        check.ambiguous(format!(
            "member `{shown}`'s data descriptor disagrees with its central header"
        ))?;
    }
    Ok(start + 4 + 2 * width - at)
}

/// Decodes a member name as every reader would, or reports why readers
/// could see different names.
fn check_name(raw: &[u8], flags: u16, check: &mut Checker<'_>) -> Result<String> {
    let shown = String::from_utf8_lossy(raw);
    if raw.contains(&0) {
        check.ambiguous(format!(
            "member name `{}` holds a NUL byte: Python's zipfile cuts the name there, torch's \
             reader does not",
            shown.escape_debug()
        ))?;
    }
    if !raw.is_ascii() && flags & UTF8_NAME == 0 {
        check.ambiguous(format!(
            "member name `{shown}` is not ASCII and not marked UTF-8: Python's zipfile decodes \
             it as cp437, other readers as UTF-8"
        ))?;
    }
    let name = std::str::from_utf8(raw)
        .map_err(|_| Error::zip(format!("member name `{shown}` is not UTF-8")))?;
    let escapes = name.is_empty()
        || name.starts_with('/')
        || name.contains('\\')
        || name.as_bytes().get(1) == Some(&b':')
        || name.split('/').any(|part| part == "..");
    if escapes {
        return Err(Error::zip(format!(
            "member name `{name}` is absolute or escapes the archive"
        )));
    }
    Ok(name.to_owned())
}
