//! A small, faithful model of what CPython 3.11's `zipfile` sees in an
//! archive: `_EndRecData`/`_EndRecData64` locate the end records,
//! `_RealGetContents` reads the central directory (shifting offsets by the
//! "concat" gap, reading headers until the size is used up, decoding names
//! as UTF-8 or cp437 and cutting them at NUL, applying zip64 extras), and
//! `ZipFile.open` checks the local header and finds where the data starts.
//!
//! The fuzz target `zip_differential` checks our reader against it, and
//! `tests/zipfile_model.rs` checks it against the real `zipfile` on many
//! generated and mutated archives, so the model stays honest.

/// One member as `zipfile` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// `ZipInfo.filename`: decoded, cut at the first NUL.
    pub filename: String,
    /// `ZipInfo.header_offset` (after the concat shift; may be negative).
    pub header_offset: i128,
    /// `ZipInfo.compress_size`.
    pub compress_size: u64,
    /// `ZipInfo.file_size`.
    pub file_size: u64,
    /// `ZipInfo.compress_type`.
    pub compress_type: u16,
    /// `ZipInfo.CRC`.
    pub crc: u32,
    /// Where `ZipFile.open` starts reading the data, or `None` when it
    /// raises.
    pub data_start: Option<u64>,
}

const CP437_HIGH: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";

fn le(data: &[u8], pos: usize, n: usize) -> Option<u64> {
    let bytes = data.get(pos..pos.checked_add(n)?)?;
    Some(
        bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    )
}

/// Decodes a name as `zipfile` does: UTF-8 when flag bit 11 is set (an
/// error when invalid), cp437 otherwise.
fn decode(raw: &[u8], flags: u64) -> Option<String> {
    if flags & 0x800 != 0 {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let high: Vec<char> = CP437_HIGH.chars().collect();
    Some(
        raw.iter()
            .map(|&b| {
                if b < 0x80 {
                    char::from(b)
                } else {
                    high[usize::from(b - 0x80)]
                }
            })
            .collect(),
    )
}

struct EndRec {
    count_size_offset: (u64, u64, u64),
    location: u64,
    zip64: bool,
}

fn end_rec(data: &[u8]) -> Option<EndRec> {
    const SIG: &[u8] = b"PK\x05\x06";
    let len = data.len();
    let at = if len >= 22 && &data[len - 22..len - 18] == SIG && data[len - 2..] == [0, 0] {
        len - 22
    } else {
        let lowest = len.saturating_sub(65536 + 22);
        let window = &data[lowest..];
        let start = window.windows(4).rposition(|w| w == SIG)?;
        if start + 22 > window.len() {
            return None;
        }
        lowest + start
    };
    let mut rec = EndRec {
        count_size_offset: (
            le(data, at + 10, 2)?,
            le(data, at + 12, 4)?,
            le(data, at + 16, 4)?,
        ),
        location: at as u64,
        zip64: false,
    };
    // _EndRecData64: the locator just before, then the record just before it.
    let Some(loc) = at.checked_sub(20) else {
        return Some(rec);
    };
    if le(data, loc, 4)? != 0x0706_4b50 {
        return Some(rec);
    }
    if le(data, loc + 4, 4)? != 0 || le(data, loc + 16, 4)? > 1 {
        return None;
    }
    let record = loc.checked_sub(56)?;
    if le(data, record, 4)? != 0x0606_4b50 {
        return Some(rec);
    }
    rec.count_size_offset = (
        le(data, record + 32, 8)?,
        le(data, record + 40, 8)?,
        le(data, record + 48, 8)?,
    );
    rec.zip64 = true;
    Some(rec)
}

/// Applies zip64 extras as `ZipInfo._decodeExtra` does (every id-1 field,
/// in turn); `None` when it would raise.
fn decode_extra(mut extra: &[u8], info: &mut Info, header_offset: &mut u64) -> Option<()> {
    while extra.len() >= 4 {
        let tp = le(extra, 0, 2)?;
        let ln = le(extra, 2, 2)? as usize;
        if ln + 4 > extra.len() {
            return None;
        }
        if tp == 1 {
            let mut body = &extra[4..ln + 4];
            let take = |body: &mut &[u8]| -> Option<u64> {
                let v = le(body, 0, 8)?;
                *body = &body[8..];
                Some(v)
            };
            if info.file_size == 0xffff_ffff || info.file_size == u64::MAX {
                info.file_size = take(&mut body)?;
            }
            if info.compress_size == 0xffff_ffff {
                info.compress_size = take(&mut body)?;
            }
            if *header_offset == 0xffff_ffff {
                *header_offset = take(&mut body)?;
            }
        }
        extra = &extra[ln + 4..];
    }
    Some(())
}

/// Where `ZipFile.open` would start reading the member's data.
fn open(data: &[u8], info: &Info, orig_filename: &str, flags: u64) -> Option<u64> {
    let pos = usize::try_from(info.header_offset).ok()?;
    let header = data.get(pos..pos.checked_add(30)?)?;
    if le(header, 0, 4)? != 0x0403_4b50 {
        return None;
    }
    let name_len = le(header, 26, 2)? as usize;
    let extra_len = le(header, 28, 2)? as usize;
    let name_start = pos + 30;
    let name_end = (name_start + name_len).min(data.len());
    let data_start = (name_end + extra_len).min(data.len());
    if flags & (1 << 5 | 1 << 6 | 1) != 0 {
        return None;
    }
    let local = decode(
        &data[name_start.min(data.len())..name_end],
        le(header, 6, 2)?,
    )?;
    if local != orig_filename || ![0, 8, 12, 14].contains(&info.compress_type) {
        return None;
    }
    Some(data_start as u64)
}

/// What `zipfile.ZipFile(data).infolist()` (plus `open` per member)
/// gives, or `None` when opening the archive raises.
pub fn infolist(data: &[u8]) -> Option<Vec<Info>> {
    let rec = end_rec(data)?;
    let (_, size_cd, offset_cd) = rec.count_size_offset;
    let mut concat = i128::from(rec.location) - i128::from(size_cd) - i128::from(offset_cd);
    if rec.zip64 {
        concat -= 76;
    }
    let start_dir = i128::from(offset_cd) + concat;
    if start_dir < 0 {
        return None;
    }
    let clamp = |v: i128| usize::try_from(v.min(data.len() as i128)).unwrap_or(0);
    let start = clamp(start_dir);
    let end = clamp(start_dir + i128::from(size_cd)).max(start);
    let cd = &data[start..end];
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut total = 0u64;
    while total < size_cd {
        let header = cd.get(pos..pos + 46)?;
        if le(header, 0, 4)? != 0x0201_4b50 {
            return None;
        }
        let (n, e, c) = (
            le(header, 28, 2)? as usize,
            le(header, 30, 2)? as usize,
            le(header, 32, 2)? as usize,
        );
        let clip = |a: usize, b: usize| &cd[a.min(cd.len())..b.min(cd.len())];
        let name = clip(pos + 46, pos + 46 + n);
        let extra = clip(pos + 46 + n, pos + 46 + n + e);
        let flags = le(header, 8, 2)?;
        if le(header, 6, 1)? > 63 {
            return None;
        }
        let orig = decode(name, flags)?;
        let filename = orig.split('\0').next().unwrap_or_default().to_owned();
        let mut info = Info {
            filename,
            header_offset: 0,
            compress_size: le(header, 20, 4)?,
            file_size: le(header, 24, 4)?,
            compress_type: le(header, 10, 2)? as u16,
            crc: le(header, 16, 4)? as u32,
            data_start: None,
        };
        let mut header_offset = le(header, 42, 4)?;
        decode_extra(extra, &mut info, &mut header_offset)?;
        info.header_offset = i128::from(header_offset) + concat;
        info.data_start = open(data, &info, &orig, flags);
        out.push(info);
        pos += 46 + n + e + c;
        total += (46 + n + e + c) as u64;
    }
    Some(out)
}
