//! `.npy` and `.npz` files. The header is a Python dict literal, parsed
//! here by a tiny literal parser, never evaluated. Object arrays (`|O`)
//! are pickles and are refused.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::pickle::{StorageRef, TensorRef};
use crate::scalar::ScalarType;
use crate::zip::ZipArchive;

/// The `.npy` magic string.
pub const MAGIC: &[u8] = b"\x93NUMPY";

/// A parsed `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// The `descr` string, e.g. `<f4`.
    pub descr: String,
    /// Element type.
    pub dtype: Dtype,
    /// Whether elements are stored big-endian.
    pub big_endian: bool,
    /// Whether the data is in column-major order.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<u64>,
    /// Offset of the first data byte.
    pub data_offset: usize,
}

/// Header fields before the dtype is mapped; the scanner uses it to find
/// object arrays.
#[derive(Debug, Clone)]
pub(crate) struct RawHeader {
    pub(crate) descr: String,
    pub(crate) fortran_order: bool,
    pub(crate) shape: Vec<u64>,
    pub(crate) data_offset: usize,
}

/// Parses the header without mapping the dtype.
pub(crate) fn parse_raw_header(data: &[u8]) -> Result<RawHeader> {
    if !data.starts_with(MAGIC) {
        return Err(Error::numpy("missing \\x93NUMPY magic"));
    }
    let major = *data
        .get(6)
        .ok_or_else(|| Error::numpy("truncated header"))?;
    let span = header_span(data, major)?
        .ok_or_else(|| Error::numpy(format!("unsupported format version {major}")))?;
    let end = span.end;
    let text = data
        .get(span)
        .ok_or_else(|| Error::numpy("header runs past the end of the file"))?;
    let text = std::str::from_utf8(text).map_err(|_| Error::numpy("header is not text"))?;
    let fields = literal::parse_dict(text)
        .map_err(|e| Error::numpy(format!("bad header `{}`: {e}", text.trim())))?;
    let mut header = RawHeader {
        descr: String::new(),
        fortran_order: false,
        shape: Vec::new(),
        data_offset: end,
    };
    let mut seen = 0;
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("descr", literal::Lit::Str(s)) => header.descr = s,
            ("descr", _) => return Err(Error::numpy("structured dtypes are not supported")),
            ("fortran_order", literal::Lit::Bool(b)) => header.fortran_order = b,
            ("shape", literal::Lit::Tuple(dims)) => header.shape = dims,
            (k, _) => return Err(Error::numpy(format!("unexpected header field `{k}`"))),
        }
        seen += 1;
    }
    if seen != 3 {
        return Err(Error::numpy(
            "header needs exactly descr, fortran_order and shape",
        ));
    }
    Ok(header)
}

/// Whether a `descr` names an object dtype (`|O`, `O8`, `object`...):
/// such arrays are stored as a pickle that `np.load(allow_pickle=True)`
/// runs. Over-inclusive on purpose: any spelling numpy could read as
/// object counts.
pub(crate) fn descr_has_objects(descr: &str) -> bool {
    let bare = descr.trim().trim_start_matches(['<', '>', '|', '=']);
    bare.starts_with(['O', 'o'])
}

/// The offset of the data after an `.npy` header, from the length field
/// alone (usable when the header text itself does not parse).
pub(crate) fn header_end(data: &[u8]) -> Option<usize> {
    let major = *data.get(6)?;
    header_span(data, major).ok().flatten().map(|span| span.end)
}

/// Where the header text lies, from the length field after the version
/// bytes: 2 bytes wide in format version 1, 4 in versions 2 and 3. `None`
/// for any other `major` version.
fn header_span(data: &[u8], major: u8) -> Result<Option<Range<usize>>> {
    let (start, len) = match major {
        1 => (10, le(data, 8, 2)?),
        2 | 3 => (12, le(data, 8, 4)?),
        _ => return Ok(None),
    };
    Ok(Some(start..start + len))
}

fn le(data: &[u8], pos: usize, n: usize) -> Result<usize> {
    let bytes = data
        .get(pos..pos + n)
        .ok_or_else(|| Error::numpy("truncated header"))?;
    Ok(bytes
        .iter()
        .rev()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)))
}

/// Maps a `descr` such as `<f4` to a dtype and whether it is big-endian.
pub fn map_descr(descr: &str) -> Result<(Dtype, bool)> {
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(|| Error::numpy("empty descr"))?;
    let code = chars.as_str();
    let big_endian = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(Error::numpy(format!("descr `{descr}` has no byte order"))),
    };
    let dtype = match code {
        "b1" => Dtype::BOOL,
        "u1" => Dtype::U8,
        "i1" => Dtype::I8,
        "u2" => Dtype::U16,
        "i2" => Dtype::I16,
        "u4" => Dtype::U32,
        "i4" => Dtype::I32,
        "u8" => Dtype::U64,
        "i8" => Dtype::I64,
        "f2" => Dtype::F16,
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        "c8" => Dtype::C64,
        c if c.starts_with('O') => {
            return Err(Error::numpy(
                "object arrays (`|O`) are pickles that run code when loaded; refusing it \
                 (run `safeweights scan` to see what it would do)",
            ))
        }
        _ => {
            return Err(Error::numpy(format!(
                "descr `{descr}` has no safetensors dtype"
            )))
        }
    };
    Ok((dtype, big_endian))
}

/// Parses and validates an `.npy` header.
pub fn parse_header(data: &[u8]) -> Result<NpyHeader> {
    let raw = parse_raw_header(data)?;
    let (dtype, big_endian) = map_descr(&raw.descr)?;
    Ok(NpyHeader {
        descr: raw.descr,
        dtype,
        big_endian,
        fortran_order: raw.fortran_order,
        shape: raw.shape,
        data_offset: raw.data_offset,
    })
}

/// Bytes of data the header's shape and dtype call for.
pub fn data_len(header: &NpyHeader) -> Result<u64> {
    header
        .shape
        .iter()
        .try_fold(header.dtype.bits() as u64 / 8, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| Error::numpy("shape overflows"))
}

/// Largest header accepted when peeking into an `.npz` member (numpy
/// itself refuses headers over 10,000 bytes by default).
const MAX_HEADER_LEN: usize = 1 << 20;

/// Reads an `.npy` header through `peek`, which returns the first `n`
/// bytes of the file (or all of it when shorter).
fn header_from_prefix<'a>(
    mut peek: impl FnMut(usize) -> Result<Cow<'a, [u8]>>,
) -> Result<NpyHeader> {
    let start = peek(12)?;
    let span = match start.get(6) {
        Some(&major) => header_span(&start, major)?,
        None => None,
    };
    let Some(span) = span else {
        return parse_header(&start);
    };
    let len = span.end;
    if len > MAX_HEADER_LEN {
        return Err(Error::numpy(format!(
            "header of {len} bytes is implausibly large"
        )));
    }
    parse_header(&peek(len)?)
}

/// Reads an `.npy` file: its header and its data as C-order little-endian
/// bytes (borrowed when already in that layout).
pub fn read_npy<'a>(data: &'a [u8], limits: &Limits) -> Result<(NpyHeader, Cow<'a, [u8]>)> {
    let header = parse_header(data)?;
    let scalar =
        ScalarType::for_dtype(header.dtype).ok_or_else(|| Error::numpy("unsupported dtype"))?;
    let body = data.get(header.data_offset..).unwrap_or_default();
    let expected = data_len(&header)?;
    if body.len() as u64 != expected {
        return Err(Error::numpy(format!(
            "data holds {} bytes but shape {:?} of {} needs {expected}",
            body.len(),
            header.shape,
            header.descr
        )));
    }
    let numel = expected / scalar.size as u64;
    // Column-major data is the transposed view of a row-major buffer.
    let mut stride = vec![0u64; header.shape.len()];
    let mut acc = 1u64;
    let dims: Vec<usize> = if header.fortran_order {
        (0..header.shape.len()).collect()
    } else {
        (0..header.shape.len()).rev().collect()
    };
    for i in dims {
        if let (Some(s), Some(&d)) = (stride.get_mut(i), header.shape.get(i)) {
            *s = acc;
            acc = acc.saturating_mul(d);
        }
    }
    let storage = Arc::new(StorageRef {
        key: "npy".into(),
        scalar: Some(scalar),
        numel,
        location: "cpu".into(),
        view: None,
    });
    let view = TensorRef::new(storage, scalar, 0, header.shape.clone(), stride)?;
    let bytes = crate::torch::tensor_bytes(&view, body, header.big_endian, limits)?;
    Ok((header, bytes))
}

/// An `.npz` archive: a zip of `.npy` members.
#[derive(Debug, Clone)]
pub struct Npz {
    archive: ZipArchive,
}

impl Npz {
    /// Parses the archive structure.
    pub fn parse(data: &[u8], limits: &Limits) -> Result<Npz> {
        Ok(Npz {
            archive: ZipArchive::parse(data, limits)?,
        })
    }

    /// Wraps an archive already parsed with [`ZipArchive::parse`].
    pub fn from_archive(archive: ZipArchive) -> Npz {
        Npz { archive }
    }

    /// Array names: member names without the `.npy` suffix.
    pub fn names(&self) -> Vec<&str> {
        self.archive
            .entries()
            .iter()
            .filter_map(|e| e.name.strip_suffix(".npy"))
            .collect()
    }

    /// Members that are not `.npy` arrays (numpy would return their raw
    /// bytes; they hold no tensor).
    pub fn other_members(&self) -> Vec<&str> {
        self.archive
            .entries()
            .iter()
            .map(|e| e.name.as_str())
            .filter(|name| !name.ends_with(".npy"))
            .collect()
    }

    /// Every array's name and header, in archive order, read without
    /// inflating the data. Each member's size must match its header.
    pub fn headers(&self, data: &[u8]) -> Result<Vec<(String, NpyHeader)>> {
        let mut out = Vec::new();
        for entry in self.archive.entries() {
            let Some(name) = entry.name.strip_suffix(".npy") else {
                continue;
            };
            let header = header_from_prefix(|n| self.archive.read_prefix(data, entry, n))
                .map_err(|e| e.within(entry.name.clone()))?;
            let expected = (header.data_offset as u64).checked_add(data_len(&header)?);
            if expected != Some(entry.size) {
                return Err(Error::numpy(format!(
                    "member holds {} bytes but its header calls for {}",
                    entry.size,
                    expected.unwrap_or(u64::MAX)
                ))
                .within(entry.name.clone()));
            }
            out.push((name.to_owned(), header));
        }
        Ok(out)
    }

    /// Reads one array (the member is inflated within `limits`).
    pub fn read(&self, data: &[u8], name: &str, limits: &Limits) -> Result<(NpyHeader, Vec<u8>)> {
        let member = format!("{name}.npy");
        let entry = self
            .archive
            .find(&member)
            .ok_or_else(|| Error::numpy(format!("no array `{name}`")))?;
        let bytes = self.archive.read(data, entry, limits)?;
        let (header, array) = read_npy(&bytes, limits).map_err(|e| e.within(member))?;
        Ok((header, array.into_owned()))
    }
}

mod literal {
    //! Python literals as they appear in `.npy` headers.

    #[derive(Debug, PartialEq)]
    pub(super) enum Lit {
        Str(String),
        Bool(bool),
        Tuple(Vec<u64>),
    }

    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl P<'_> {
        fn ws(&mut self) {
            while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> bool {
            self.ws();
            let hit = self.s.get(self.i) == Some(&c);
            if hit {
                self.i += 1;
            }
            hit
        }
        fn string(&mut self) -> Result<String, String> {
            self.ws();
            let q = *self
                .s
                .get(self.i)
                .filter(|&&q| q == b'\'' || q == b'"')
                .ok_or("expected a string")?;
            let start = self.i + 1;
            let len = self
                .s
                .get(start..)
                .unwrap_or_default()
                .iter()
                .position(|&c| c == q)
                .ok_or("unterminated string")?;
            self.i = start + len + 1;
            let raw = self.s.get(start..start + len).unwrap_or_default();
            if raw.contains(&b'\\') {
                return Err("escapes are not supported".into());
            }
            Ok(String::from_utf8_lossy(raw).into_owned())
        }
        fn word(&mut self) -> &[u8] {
            self.ws();
            let start = self.i;
            while self
                .s
                .get(self.i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            {
                self.i += 1;
            }
            self.s.get(start..self.i).unwrap_or_default()
        }
        fn value(&mut self) -> Result<Lit, String> {
            self.ws();
            match self.s.get(self.i) {
                Some(b'\'' | b'"') => Ok(Lit::Str(self.string()?)),
                Some(b'(') => {
                    self.i += 1;
                    let mut dims = Vec::new();
                    while !self.eat(b')') {
                        let w = std::str::from_utf8(self.word()).unwrap_or_default();
                        let w = w.strip_suffix('L').unwrap_or(w);
                        dims.push(
                            w.parse::<u64>()
                                .map_err(|_| format!("bad dimension `{w}`"))?,
                        );
                        if dims.len() > 64 {
                            return Err("too many dimensions".into());
                        }
                        if !self.eat(b',') && !self.eat(b')') {
                            return Err("expected `,` or `)`".into());
                        } else if self.s.get(self.i - 1) == Some(&b')') {
                            break;
                        }
                    }
                    Ok(Lit::Tuple(dims))
                }
                Some(b'[' | b'{') => Err("structured dtypes are not supported".into()),
                _ => match self.word() {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    _ => Err("unexpected token".into()),
                },
            }
        }
    }

    /// Parses `{'key': literal, ...}` with string keys.
    pub(super) fn parse_dict(text: &str) -> Result<Vec<(String, Lit)>, String> {
        let mut p = P {
            s: text.as_bytes(),
            i: 0,
        };
        if !p.eat(b'{') {
            return Err("expected `{`".into());
        }
        let mut out = Vec::new();
        while !p.eat(b'}') {
            let key = p.string()?;
            if !p.eat(b':') {
                return Err("expected `:`".into());
            }
            out.push((key, p.value()?));
            if out.len() > 8 {
                return Err("too many fields".into());
            }
            if !p.eat(b',') && !p.eat(b'}') {
                return Err("expected `,` or `}`".into());
            } else if p.s.get(p.i - 1) == Some(&b'}') {
                break;
            }
        }
        p.ws();
        if p.i != p.s.len() {
            return Err("trailing characters".into());
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "numpy_tests.rs"]
mod tests;
