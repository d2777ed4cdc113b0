//! Finding the central directory the way every plausible reader would.
//!
//! The readers that matter locate it differently:
//! - torch's miniz (`mz_zip_reader_locate_header_sig`) takes the last
//!   end-of-central-directory (EOCD) signature with at least 22 bytes after
//!   it, ignores the comment length, honours a zip64 locator whenever one
//!   precedes the EOCD (at the locator's offset, whatever the classic
//!   fields say), reads `count` central headers and uses offsets as they
//!   are.
//! - CPython's `zipfile._EndRecData` takes the last signature in the final
//!   64 KiB + 22 bytes (failing when fewer than 22 bytes follow it), reads
//!   the zip64 record just before the locator (3.11) or at the locator's
//!   offset (3.13+), reads central headers until the directory's *size* is
//!   used up, and shifts every offset by the gap between the directory's
//!   end and the EOCD (prepended data).
//! - Readers that check the comment length (Go's `archive/zip`) skip a
//!   signature whose comment would run past the end of the file.
//!
//! An archive is accepted only where all of these agree; every way they
//! could disagree is reported as an ambiguity.

use std::ops::Range;

use super::{le, to_usize, Checker, EOCD_LEN, EOCD_SIG, ZIP64_EOCD_SIG, ZIP64_LOCATOR_SIG};
use crate::error::{Error, Result};

const LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_LEN: usize = 56;

/// Where the central directory is and how many headers it holds.
#[derive(Debug)]
pub(super) struct Directory {
    pub(super) count: u64,
    pub(super) range: Range<usize>,
}

/// Every position of the EOCD signature in the last 64 KiB + 22 bytes.
fn signatures(data: &[u8]) -> Vec<usize> {
    let lowest = data.len().saturating_sub(EOCD_LEN + usize::from(u16::MAX));
    let sig = EOCD_SIG.to_le_bytes();
    data.get(lowest..)
        .unwrap_or_default()
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == sig)
        .map(|(i, _)| lowest + i)
        .collect()
}

/// Whether the record at `p` has a comment that ends exactly at the end.
fn comment_reaches_end(data: &[u8], p: usize) -> bool {
    le(data, p + 20, 2).is_ok_and(|c| p + EOCD_LEN + c as usize == data.len())
}

/// Finds the EOCD record every reader picks; reports when they differ.
fn find_eocd(data: &[u8], check: &mut Checker<'_>) -> Result<usize> {
    let sigs = signatures(data);
    let complete = |p: &&usize| **p + EOCD_LEN <= data.len();
    let eocd = *sigs.iter().rev().find(complete).ok_or_else(|| {
        Error::zip("no end-of-central-directory record (not a zip, or truncated)")
    })?;
    if sigs.last() != Some(&eocd) {
        check.ambiguous(
            "an end-of-central-directory signature lies in the last 22 bytes: Python's zipfile \
             fails on it while torch's reader uses an earlier record",
        )?;
    }
    if !comment_reaches_end(data, eocd) {
        let comment = le(data, eocd + 20, 2)?;
        check.ambiguous(format!(
            "the end-of-central-directory record's comment length ({comment}) does not end at \
             the end of the file ({} bytes follow the record): readers that check it pick \
             another record than torch's reader and Python's zipfile do",
            data.len() - eocd - EOCD_LEN
        ))?;
    }
    let rivals = sigs
        .iter()
        .filter(|&&p| p != eocd && p + EOCD_LEN <= data.len() && comment_reaches_end(data, p))
        .count();
    if rivals > 0 {
        check.ambiguous(
            "two end-of-central-directory records (one hidden in the other's comment): readers \
             that search from the start and from the end see different directories",
        )?;
    }
    Ok(eocd)
}

/// The zip64 values, when a locator precedes the EOCD: `(count, size,
/// offset, record position)`.
fn zip64(data: &[u8], eocd: usize, check: &mut Checker<'_>) -> Result<Option<[usize; 4]>> {
    let Some(loc) = eocd.checked_sub(LOCATOR_LEN) else {
        return Ok(None);
    };
    if le(data, loc, 4)? != u64::from(ZIP64_LOCATOR_SIG) {
        return Ok(None);
    }
    if le(data, loc + 4, 4)? != 0 || le(data, loc + 16, 4)? != 1 {
        return Err(Error::zip("multi-disk zip64 archives are not supported"));
    }
    let at = to_usize(le(data, loc + 8, 8)?)?;
    let before = loc.checked_sub(ZIP64_EOCD_LEN);
    if Some(at) != before {
        check.ambiguous(format!(
            "the zip64 locator points at byte {at} but the record just before it starts at {}: \
             Python 3.11's zipfile reads one, torch's reader and newer Pythons the other",
            before.map_or("-".to_owned(), |b| b.to_string())
        ))?;
    }
    if at.checked_add(ZIP64_EOCD_LEN).is_none_or(|end| end > loc)
        || le(data, at, 4)? != u64::from(ZIP64_EOCD_SIG)
    {
        check.ambiguous(
            "a zip64 locator without a zip64 end-of-central-directory record where it points: \
             readers disagree on whether to fall back to the classic record",
        )?;
        return Ok(None);
    }
    if le(data, at + 4, 8)? != (ZIP64_EOCD_LEN - 12) as u64 {
        check.ambiguous("the zip64 end-of-central-directory record has extensible data")?;
    }
    if le(data, at + 16, 4)? != 0 || le(data, at + 20, 4)? != 0 {
        return Err(Error::zip("multi-disk zip64 archives are not supported"));
    }
    if le(data, at + 24, 8)? != le(data, at + 32, 8)? {
        return Err(Error::zip(
            "zip64 entry counts disagree (multi-disk archive?)",
        ));
    }
    let count = to_usize(le(data, at + 32, 8)?)?;
    let size = to_usize(le(data, at + 40, 8)?)?;
    let offset = to_usize(le(data, at + 48, 8)?)?;
    Ok(Some([count, size, offset, at]))
}

/// Locates and validates the central directory.
pub(super) fn locate(data: &[u8], check: &mut Checker<'_>) -> Result<Directory> {
    let eocd = find_eocd(data, check)?;
    if le(data, eocd + 4, 2)? != 0 || le(data, eocd + 6, 2)? != 0 {
        return Err(Error::zip("multi-disk archives are not supported"));
    }
    let on_disk = le(data, eocd + 8, 2)?;
    let classic = [
        (le(data, eocd + 10, 2)?, 0xffff),
        (le(data, eocd + 12, 4)?, 0xffff_ffff),
        (le(data, eocd + 16, 4)?, 0xffff_ffff),
    ];
    if on_disk != classic[0].0 {
        return Err(Error::zip("entry counts disagree (multi-disk archive?)"));
    }
    let (count, size, offset, dir_end) = match zip64(data, eocd, check)? {
        Some([count, size, offset, at]) => {
            let wide = [count, size, offset];
            for ((value, sentinel), wide) in classic.iter().zip(wide) {
                if *value != *sentinel && *value != wide as u64 {
                    check.ambiguous(format!(
                        "the zip64 record says {wide} where the classic record says {value}: \
                         readers that use zip64 only for 0xFFFF fields see another directory \
                         than torch's reader and Python's zipfile"
                    ))?;
                }
            }
            (count as u64, size, offset, at)
        }
        None => {
            if classic.iter().any(|(value, sentinel)| value == sentinel) {
                return Err(Error::zip("zip64 sizes without a zip64 locator"));
            }
            let [count, size, offset] = classic.map(|(value, _)| value);
            (count, to_usize(size)?, to_usize(offset)?, eocd)
        }
    };
    let end = offset
        .checked_add(size)
        .filter(|&end| end <= dir_end)
        .ok_or_else(|| Error::zip("central directory lies outside the archive"))?;
    if end != dir_end {
        check.ambiguous(format!(
            "{} bytes lie between the central directory and the end record: Python's zipfile \
             shifts every offset by that much (it assumes data was prepended), torch's reader \
             does not",
            dir_end - end
        ))?;
    }
    Ok(Directory {
        count,
        range: offset..end,
    })
}
