//! The text operands of protocol 0 opcodes, decoded exactly as CPython's
//! `_pickle` decodes them. A scanner that reads `S'o\x73'` as `o\x73`
//! while the unpickler reads `os` misses the import; one that rejects a
//! memo key CPython accepts (`g1_0`) stops where the unpickler goes on.
//! Every function returns `None` exactly where CPython raises.

/// `PyLong_FromString(s, NULL, 10)` as used by GET and PUT: optional
/// surrounding whitespace, an optional sign, decimal digits with single
/// underscores between them. `None` where CPython raises (or the value
/// does not fit in an `i64`, where CPython raises OverflowError).
pub(crate) fn py_int(line: &[u8]) -> Option<i64> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = line.iter().position(|b| !is_space(b))?;
    let end = line.iter().rposition(|b| !is_space(b))? + 1;
    let text = &line[start..end];
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    // Underscores only between two digits.
    if digits.first().is_none_or(|b| !b.is_ascii_digit())
        || digits.last().is_none_or(|b| !b.is_ascii_digit())
        || digits.windows(2).any(|w| w == b"__")
    {
        return None;
    }
    let mut value: i64 = 0;
    for &b in digits.iter().filter(|&&b| b != b'_') {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
    }
    Some(if negative { -value } else { value })
}

/// The STRING opcode's operand: quoted, then `PyBytes_DecodeEscape`
/// (`\x73`, octal `\163`, `\n`, ...; unknown escapes stay as written).
pub(crate) fn string_operand(line: &[u8]) -> Option<Vec<u8>> {
    let quote = *line.first()?;
    if line.len() < 2 || line.last() != Some(&quote) || !matches!(quote, b'\'' | b'"') {
        return None;
    }
    decode_escape(&line[1..line.len() - 1])
}

fn decode_escape(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let c = *s.get(i + 1)?; // a trailing backslash is an error
        i += 2;
        match c {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(c),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(value as u8); // CPython keeps the low byte of \400..\777
            }
            b'x' => {
                let hex = s.get(i..i + 2)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// The UNICODE opcode's operand: `raw-unicode-escape` (latin-1 bytes, with
/// `\uXXXX` and `\UXXXXXXXX` escapes; a backslash before anything else is
/// kept together with that character).
pub(crate) fn raw_unicode_escape(s: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' || i >= s.len() {
            out.push(char::from(c));
            continue;
        }
        let next = s[i];
        i += 1;
        let count = match next {
            b'u' => 4,
            b'U' => 8,
            _ => {
                out.push('\\');
                out.push(char::from(next));
                continue;
            }
        };
        let hex = std::str::from_utf8(s.get(i..i + count)?).ok()?;
        let code = u32::from_str_radix(hex, 16).ok()?;
        if hex.starts_with(['+', '-']) || code > 0x10_ffff {
            return None;
        }
        // Lone surrogates are legal in a Python str but name nothing importable.
        out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
        i += count;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_keys_parse_like_cpython_int() {
        for (text, want) in [
            (&b"1_0"[..], Some(10)),
            (b" 7 ", Some(7)),
            (b"+3", Some(3)),
            (b"-1", Some(-1)),
            (b"007", Some(7)),
            (b"1__0", None),
            (b"_1", None),
            (b"1_", None),
            (b"0x10", None),
            (b"", None),
            (b"1 0", None),
            (b"99999999999999999999", None),
        ] {
            assert_eq!(py_int(text), want, "{text:?}");
        }
    }

    #[test]
    fn string_escapes_decode_like_cpython() {
        assert_eq!(string_operand(b"'o\\x73'").unwrap(), b"os");
        assert_eq!(string_operand(b"\"\\163ys\\164em\"").unwrap(), b"system");
        assert_eq!(string_operand(b"'a\\qb\\\\'").unwrap(), b"a\\qb\\");
        assert_eq!(string_operand(b"'\\777'").unwrap(), b"\xff");
        for bad in [&b"os"[..], b"'os\"", b"'", b"'\\x7'", b"'a\\'"] {
            assert_eq!(string_operand(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn raw_unicode_escapes_decode_like_cpython() {
        assert_eq!(raw_unicode_escape(b"\\u006fs").unwrap(), "os");
        assert_eq!(raw_unicode_escape(b"\\U00000073ys").unwrap(), "sys");
        assert_eq!(raw_unicode_escape(b"a\\\\u0041").unwrap(), "a\\\\u0041");
        assert_eq!(raw_unicode_escape(b"\\x41\xe9").unwrap(), "\\x41\u{e9}");
        assert_eq!(raw_unicode_escape(b"\\u00"), None);
        assert_eq!(raw_unicode_escape(b"\\U00110000"), None);
    }
}
