//! Pickle opcode table and decoder, shared by the VM and the scanner.
//!
//! Decoding only reads an opcode's inline argument; it never interprets
//! anything. Every pickle opcode of protocols 0 to 5 is known here so the
//! scanner can step over opcodes the VM refuses.

use crate::error::{Error, Result};

/// How an opcode's inline argument is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgKind {
    /// No inline argument.
    Nothing,
    /// One unsigned byte.
    U1,
    /// Two bytes, unsigned little-endian.
    U2,
    /// Four bytes, signed little-endian.
    I4,
    /// Four bytes, unsigned little-endian.
    U4,
    /// Eight bytes, unsigned little-endian.
    U8,
    /// Eight bytes, big-endian IEEE double.
    F8,
    /// A one-byte length, then that many bytes.
    Len1,
    /// A four-byte unsigned length, then that many bytes.
    Len4,
    /// A four-byte signed length (negative is invalid), then that many bytes.
    SignedLen4,
    /// An eight-byte length, then that many bytes.
    Len8,
    /// One newline-terminated line.
    Line,
    /// Two newline-terminated lines (module, name).
    TwoLines,
}

/// One opcode's static description.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpInfo {
    pub(crate) byte: u8,
    pub(crate) name: &'static str,
    pub(crate) arg: ArgKind,
}

macro_rules! ops {
    ($($konst:ident = $byte:expr, $arg:ident;)*) => {
        $(pub(crate) const $konst: u8 = $byte;)*
        const TABLE: &[OpInfo] = &[
            $(OpInfo { byte: $konst, name: stringify!($konst), arg: ArgKind::$arg },)*
        ];
    };
}

ops! {
    MARK = b'(', Nothing;
    STOP = b'.', Nothing;
    POP = b'0', Nothing;
    POP_MARK = b'1', Nothing;
    DUP = b'2', Nothing;
    FLOAT = b'F', Line;
    INT = b'I', Line;
    BININT = b'J', I4;
    BININT1 = b'K', U1;
    LONG = b'L', Line;
    BININT2 = b'M', U2;
    NONE = b'N', Nothing;
    PERSID = b'P', Line;
    BINPERSID = b'Q', Nothing;
    REDUCE = b'R', Nothing;
    STRING = b'S', Line;
    BINSTRING = b'T', SignedLen4;
    SHORT_BINSTRING = b'U', Len1;
    UNICODE = b'V', Line;
    BINUNICODE = b'X', Len4;
    APPEND = b'a', Nothing;
    BUILD = b'b', Nothing;
    GLOBAL = b'c', TwoLines;
    DICT = b'd', Nothing;
    EMPTY_DICT = b'}', Nothing;
    APPENDS = b'e', Nothing;
    GET = b'g', Line;
    BINGET = b'h', U1;
    INST = b'i', TwoLines;
    LONG_BINGET = b'j', U4;
    LIST = b'l', Nothing;
    EMPTY_LIST = b']', Nothing;
    OBJ = b'o', Nothing;
    PUT = b'p', Line;
    BINPUT = b'q', U1;
    LONG_BINPUT = b'r', U4;
    SETITEM = b's', Nothing;
    TUPLE = b't', Nothing;
    EMPTY_TUPLE = b')', Nothing;
    SETITEMS = b'u', Nothing;
    BINFLOAT = b'G', F8;
    PROTO = 0x80, U1;
    NEWOBJ = 0x81, Nothing;
    EXT1 = 0x82, U1;
    EXT2 = 0x83, U2;
    EXT4 = 0x84, I4;
    TUPLE1 = 0x85, Nothing;
    TUPLE2 = 0x86, Nothing;
    TUPLE3 = 0x87, Nothing;
    NEWTRUE = 0x88, Nothing;
    NEWFALSE = 0x89, Nothing;
    LONG1 = 0x8a, Len1;
    LONG4 = 0x8b, SignedLen4;
    BINBYTES = b'B', Len4;
    SHORT_BINBYTES = b'C', Len1;
    SHORT_BINUNICODE = 0x8c, Len1;
    BINUNICODE8 = 0x8d, Len8;
    BINBYTES8 = 0x8e, Len8;
    EMPTY_SET = 0x8f, Nothing;
    ADDITEMS = 0x90, Nothing;
    FROZENSET = 0x91, Nothing;
    NEWOBJ_EX = 0x92, Nothing;
    STACK_GLOBAL = 0x93, Nothing;
    MEMOIZE = 0x94, Nothing;
    FRAME = 0x95, U8;
    BYTEARRAY8 = 0x96, Len8;
    NEXT_BUFFER = 0x97, Nothing;
    READONLY_BUFFER = 0x98, Nothing;
}

/// Looks up an opcode byte.
pub(crate) fn info(byte: u8) -> Option<&'static OpInfo> {
    TABLE.iter().find(|op| op.byte == byte)
}

/// A decoded inline argument, borrowing from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Arg<'a> {
    Nothing,
    Int(i64),
    Float(f64),
    Bytes(&'a [u8]),
    Line(&'a [u8]),
    TwoLines(&'a [u8], &'a [u8]),
}

/// One decoded instruction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Instr<'a> {
    pub(crate) op: &'static OpInfo,
    pub(crate) arg: Arg<'a>,
    /// Offset of the opcode byte.
    pub(crate) offset: usize,
    /// Offset just past the instruction.
    pub(crate) end: usize,
}

/// Decodes the instruction at `pos`. `max_len` caps inline strings so a
/// huge length prefix fails before anything is sliced or allocated.
pub(crate) fn decode(data: &[u8], pos: usize, max_len: usize) -> Result<Instr<'_>> {
    let byte = *data
        .get(pos)
        .ok_or_else(|| Error::pickle(pos, "unexpected end of data (no STOP opcode)"))?;
    let op = info(byte).ok_or(Error::RefusedOpcode {
        name: "UNKNOWN",
        byte,
        offset: pos as u64,
    })?;
    let mut cur = Cursor {
        data,
        pos: pos + 1,
        op: pos,
    };
    let arg = match op.arg {
        ArgKind::Nothing => Arg::Nothing,
        ArgKind::U1 => Arg::Int(cur.le_u64(1)? as i64),
        ArgKind::U2 => Arg::Int(i64::from(cur.le_u64(2)? as u16)),
        ArgKind::I4 => Arg::Int(i64::from(cur.le_u64(4)? as u32 as i32)),
        ArgKind::U4 => Arg::Int(cur.le_u64(4)? as i64),
        ArgKind::U8 => Arg::Int(i64::try_from(cur.le_u64(8)?).unwrap_or(i64::MAX)),
        ArgKind::F8 => {
            let raw = cur.take(8)?;
            let mut b = [0u8; 8];
            b.copy_from_slice(raw);
            Arg::Float(f64::from_be_bytes(b))
        }
        ArgKind::Len1 => {
            let n = cur.le_u64(1)?;
            Arg::Bytes(cur.take_len(n, max_len)?)
        }
        ArgKind::Len4 => {
            let n = cur.le_u64(4)?;
            Arg::Bytes(cur.take_len(n, max_len)?)
        }
        ArgKind::SignedLen4 => {
            let n = cur.le_u64(4)? as u32 as i32;
            let n = u64::try_from(n).map_err(|_| Error::pickle(pos, "negative length"))?;
            Arg::Bytes(cur.take_len(n, max_len)?)
        }
        ArgKind::Len8 => {
            let n = cur.le_u64(8)?;
            Arg::Bytes(cur.take_len(n, max_len)?)
        }
        ArgKind::Line => Arg::Line(cur.line(max_len)?),
        ArgKind::TwoLines => {
            let first = cur.line(max_len)?;
            Arg::TwoLines(first, cur.line(max_len)?)
        }
    };
    Ok(Instr {
        op,
        arg,
        offset: pos,
        end: cur.pos,
    })
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
    /// Offset of the opcode, for error messages.
    op: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| Error::pickle(self.op, "opcode argument runs past the end of data"))?;
        let out = self.data.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(out)
    }

    fn le_u64(&mut self, n: usize) -> Result<u64> {
        let raw = self.take(n)?;
        Ok(raw
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn take_len(&mut self, n: u64, max_len: usize) -> Result<&'a [u8]> {
        // A length past the end of the data is a truncated pickle (where
        // CPython fails too), whatever our cap: the cap only matters for
        // bytes that are really there.
        let remaining = self.data.len().saturating_sub(self.pos);
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= remaining)
            .ok_or_else(|| Error::pickle(self.op, "opcode argument runs past the end of data"))?;
        if n > max_len {
            return Err(Error::limit("max_string_len", max_len as u64, self.op));
        }
        self.take(n)
    }

    fn line(&mut self, max_len: usize) -> Result<&'a [u8]> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..max_len.saturating_add(1)).unwrap_or(rest);
        match window.iter().position(|&b| b == b'\n') {
            Some(n) => {
                let line = self.take(n)?;
                self.pos += 1;
                Ok(line)
            }
            None if window.len() > max_len => {
                Err(Error::limit("max_string_len", max_len as u64, self.op))
            }
            None => Err(Error::pickle(
                self.op,
                "text argument has no terminating newline",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_arguments() {
        let data = b"K\x05M\x01\x02J\xff\xff\xff\xffcos\nsystem\nX\x02\x00\x00\x00hi";
        let a = decode(data, 0, 100).unwrap();
        assert_eq!((a.op.name, a.arg, a.end), ("BININT1", Arg::Int(5), 2));
        let b = decode(data, 2, 100).unwrap();
        assert_eq!(b.arg, Arg::Int(0x0201));
        let c = decode(data, 5, 100).unwrap();
        assert_eq!(c.arg, Arg::Int(-1));
        let d = decode(data, 10, 100).unwrap();
        assert_eq!(d.arg, Arg::TwoLines(b"os", b"system"));
        let e = decode(data, d.end, 100).unwrap();
        assert_eq!(e.arg, Arg::Bytes(b"hi"));
    }

    #[test]
    fn truncation_and_limits_are_errors() {
        // A length past the end of the data is a truncation (CPython fails
        // there too), not a limit: the cap applies to bytes that exist.
        assert!(matches!(
            decode(b"X\xff\xff\xff\xff", 0, 1000),
            Err(Error::Pickle { .. })
        ));
        assert!(matches!(
            decode(b"X\x05\x00\x00\x00abcde", 0, 3),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(matches!(
            decode(b"X\x05\x00\x00\x00ab", 0, 100),
            Err(Error::Pickle { .. })
        ));
        assert!(matches!(decode(b"cos", 0, 100), Err(Error::Pickle { .. })));
        assert!(matches!(
            decode(b"caaaaaaa", 0, 3),
            Err(Error::LimitExceeded { .. })
        ));
        assert!(matches!(decode(b"", 0, 3), Err(Error::Pickle { .. })));
        assert!(matches!(
            decode(b"\xff", 0, 3),
            Err(Error::RefusedOpcode { byte: 0xff, .. })
        ));
        assert!(matches!(
            decode(b"T\xff\xff\xff\xff", 0, 100),
            Err(Error::Pickle { .. })
        ));
    }

    #[test]
    fn every_opcode_has_a_unique_byte() {
        for (i, a) in TABLE.iter().enumerate() {
            assert!(
                TABLE.iter().skip(i + 1).all(|b| b.byte != a.byte),
                "{}",
                a.name
            );
        }
        assert_eq!(info(STACK_GLOBAL).unwrap().name, "STACK_GLOBAL");
    }
}
