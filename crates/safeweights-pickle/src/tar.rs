//! A minimal tar reader for the scanner and for recognising torch's
//! oldest checkpoint format (a tar with `sys_info`, `pickle`, `storages`
//! and `tensors` members, written by torch before 0.4).
//!
//! It follows Python's `tarfile`, which `torch.load` tries on every file
//! that is not a zip: a header counts when its checksum is right (no magic
//! needed), sizes are octal or base-256, and pax (`x`, `g`) and GNU long
//! name (`L`) records change the following member's name and size. A
//! reader that sized members differently would scan other bytes than
//! torch loads.

use std::ops::Range;

const BLOCK: usize = 512;

/// One member: its name and where its data lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TarMember {
    pub(crate) name: String,
    pub(crate) data: Range<usize>,
}

/// Whether the first block is a tar header with a valid checksum.
pub(crate) fn is_tar(data: &[u8]) -> bool {
    data.get(..BLOCK).is_some_and(checksum_ok)
}

/// The members, or why the archive cannot be walked to its end (the
/// members before that point are returned with the error).
pub(crate) fn members(data: &[u8]) -> (Vec<TarMember>, Option<String>) {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut next_name: Option<String> = None;
    let mut next_size: Option<u64> = None;
    let mut global_size: Option<u64> = None;
    while let Some(block) = data.get(pos..pos + BLOCK) {
        if block.iter().all(|&b| b == 0) {
            return (out, None);
        }
        if !checksum_ok(block) {
            return (
                out,
                Some(format!("bad tar header checksum at offset {pos}")),
            );
        }
        let Some(stored) = number(&block[124..136]) else {
            return (out, Some(format!("bad tar size field at offset {pos}")));
        };
        let size = next_size.take().or(global_size).unwrap_or(stored);
        let start = pos + BLOCK;
        let end = usize::try_from(size)
            .ok()
            .and_then(|n| start.checked_add(n))
            .filter(|&end| end <= data.len());
        let Some(end) = end else {
            return (
                out,
                Some(format!("tar member at offset {pos} runs past the end")),
            );
        };
        let body = &data[start..end];
        match block[156] {
            b'x' | b'g' => {
                let (path, psize) = pax(body);
                if block[156] == b'g' {
                    global_size = psize.or(global_size);
                } else {
                    next_name = path.or(next_name);
                    next_size = psize.or(next_size);
                }
            }
            b'L' => next_name = Some(text(body)),
            _ => {
                let name = next_name.take().unwrap_or_else(|| header_name(block));
                out.push(TarMember {
                    name,
                    data: start..end,
                });
            }
        }
        pos = start + size.div_ceil(BLOCK as u64) as usize * BLOCK;
    }
    (out, None)
}

fn checksum_ok(block: &[u8]) -> bool {
    let Some(stored) = number(&block[148..156]) else {
        return false;
    };
    let unsigned: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b)
            }
        })
        .sum();
    let signed: i64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                i64::from(b as i8)
            }
        })
        .sum();
    i64::try_from(stored).is_ok_and(|s| s == unsigned || s == signed)
}

/// tarfile's `nti`: base-256 when the first byte is 0x80 or 0xff, else
/// octal text up to the first NUL, surrounding whitespace allowed.
fn number(field: &[u8]) -> Option<u64> {
    match field.first()? {
        0x80 => field[1..]
            .iter()
            .try_fold(0u64, |n, &b| n.checked_mul(256)?.checked_add(u64::from(b))),
        0xff => None, // negative
        _ => {
            let text = std::str::from_utf8(field.split(|&b| b == 0).next()?).ok()?;
            let text = text.trim();
            if text.is_empty() {
                return Some(0);
            }
            u64::from_str_radix(text, 8).ok()
        }
    }
}

fn text(bytes: &[u8]) -> String {
    let cut = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(cut).into_owned()
}

fn header_name(block: &[u8]) -> String {
    let name = text(&block[..100]);
    let prefix = text(&block[345..500]);
    if &block[257..263] == b"ustar\0" && !prefix.is_empty() {
        format!("{prefix}/{name}")
    } else {
        name
    }
}

/// `path` and `size` from pax records (`"<len> <key>=<value>\n"`).
fn pax(mut body: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    while let Some(space) = body.iter().position(|&b| b == b' ') {
        let len = std::str::from_utf8(&body[..space])
            .ok()
            .and_then(|t| t.parse::<usize>().ok());
        let Some(record) = len
            .filter(|&n| n > space && n <= body.len())
            .map(|n| &body[..n])
        else {
            break;
        };
        let kv = record[space + 1..]
            .strip_suffix(b"\n")
            .unwrap_or(&record[space + 1..]);
        if let Some(eq) = kv.iter().position(|&b| b == b'=') {
            let value = String::from_utf8_lossy(&kv[eq + 1..]).into_owned();
            match &kv[..eq] {
                b"path" => path = Some(value),
                b"size" => size = value.parse().ok(),
                _ => {}
            }
        }
        body = &body[record.len()..];
    }
    (path, size)
}

/// Whether a tar's member names are torch's pre-0.4 checkpoint layout.
pub(crate) fn is_torch_tar(members: &[TarMember]) -> bool {
    ["storages", "tensors", "pickle"]
        .iter()
        .all(|n| members.iter().any(|m| m.name == *n))
}
