//! A JSON cursor that understands exactly the shapes a safetensors header uses.
//!
//! The header is untrusted and can be 100 MB, so instead of building a generic
//! JSON tree we walk it once, byte by byte, and only accept the structures the
//! format defines: an object of objects, arrays of integers, strings. Nothing
//! recurses, so deeply nested input cannot exhaust the stack, and every
//! allocation is bounded by the bytes consumed.

use std::borrow::Cow;

use crate::error::{Error, Result};

/// A position in the header text.
pub(crate) struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// A JSON integer that may not fit the format's rules; the caller decides
/// which error to raise.
pub(crate) enum Number {
    /// A non-negative integer that fits in u64.
    Unsigned(u64),
    /// A negative integer.
    Negative,
    /// A number with a fraction or an exponent.
    Fractional,
    /// An integer too large for u64.
    TooLarge,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Cursor {
            text,
            bytes: text.as_bytes(),
            pos: 0,
        }
    }

    pub(crate) fn offset(&self) -> usize {
        self.pos
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> Error {
        Error::InvalidJson {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    pub(crate) fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next non-whitespace byte, without consuming it.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes.get(self.pos).copied()
    }

    pub(crate) fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consumes `byte` if it is next.
    pub(crate) fn eat(&mut self, byte: u8) -> bool {
        if self.peek() == Some(byte) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(format!("expected '{}'", byte as char)))
        }
    }

    /// Consumes the literal `null` if it is next.
    pub(crate) fn eat_null(&mut self) -> bool {
        self.skip_whitespace();
        if self.bytes.get(self.pos..self.pos + 4) == Some(b"null") {
            self.pos += 4;
            true
        } else {
            false
        }
    }

    /// After an element of an object or array: true if another follows,
    /// false if `close` ended the container.
    pub(crate) fn next_element(&mut self, close: u8) -> Result<bool> {
        if self.eat(b',') {
            Ok(true)
        } else if self.eat(close) {
            Ok(false)
        } else {
            Err(self.error(format!("expected ',' or '{}'", close as char)))
        }
    }

    /// A short name for the JSON value that starts here, for error messages.
    pub(crate) fn describe_value(&mut self) -> &'static str {
        match self.peek() {
            Some(b'"') => "a string",
            Some(b'{') => "an object",
            Some(b'[') => "an array",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "a number",
            _ => "not a JSON value",
        }
    }

    /// Parses a string, borrowing from the header when it has no escapes.
    pub(crate) fn string(&mut self) -> Result<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.pos;
        // One tight scan to the first byte that needs a decision; names are
        // most of a large header, so this loop is most of the parse.
        let run = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
        self.pos = run.map_or(self.bytes.len(), |n| start + n);
        match self.bytes.get(self.pos) {
            Some(b'"') => {
                let raw = self.piece(start, self.pos);
                self.pos += 1;
                Ok(Cow::Borrowed(raw))
            }
            Some(b'\\') => self.escaped_string(start).map(Cow::Owned),
            Some(_) => Err(self.error("control character inside a string")),
            None => Err(self.error("unterminated string")),
        }
    }

    /// The text between two byte offsets, both at ASCII delimiters, so at
    /// character boundaries: slicing checks only the two ends.
    fn piece(&self, start: usize, end: usize) -> &'a str {
        self.text.get(start..end).unwrap_or_default()
    }

    fn escaped_string(&mut self, start: usize) -> Result<String> {
        let mut out = String::from(self.piece(start, self.pos));
        loop {
            let run_start = self.pos;
            while let Some(byte) = self.bytes.get(self.pos) {
                if matches!(byte, b'"' | b'\\') || *byte < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(self.piece(run_start, self.pos));
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let decoded = self.escape()?;
                    out.push(decoded);
                }
                Some(_) => return Err(self.error("control character inside a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    fn escape(&mut self) -> Result<char> {
        let byte = self.bytes.get(self.pos).copied();
        self.pos += 1;
        Ok(match byte {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn unicode_escape(&mut self) -> Result<char> {
        let first = self.hex4()?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err(self.error("lone leading surrogate in \\u escape"));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("invalid trailing surrogate in \\u escape"));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in \\u escape")),
            other => other,
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("truncated \\u escape"))?;
        let mut value = 0u32;
        for digit in digits {
            let nibble = (*digit as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid hex digit in \\u escape"))?;
            value = value * 16 + nibble;
        }
        self.pos += 4;
        Ok(value)
    }

    /// Parses a JSON number and classifies it.
    pub(crate) fn number(&mut self) -> Result<Number> {
        self.skip_whitespace();
        let negative = self.bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut value: Option<u64> = Some(0);
        while let Some(digit @ b'0'..=b'9') = self.bytes.get(self.pos) {
            value = value
                .and_then(|v| v.checked_mul(10))
                .and_then(|v| v.checked_add(u64::from(digit - b'0')));
            self.pos += 1;
        }
        let digit_count = self.pos - digits_start;
        if digit_count == 0 {
            return Err(self.error("expected a number"));
        }
        if digit_count > 1 && self.bytes.get(digits_start) == Some(&b'0') {
            return Err(self.error("number with a leading zero"));
        }
        if self.skip_fraction_and_exponent()? {
            return Ok(Number::Fractional);
        }
        Ok(match (negative, value) {
            // `-0` is negative too: serde_json reads it as a float, so the
            // reference rejects it, and two readers must not disagree.
            (true, _) => Number::Negative,
            (false, Some(value)) => Number::Unsigned(value),
            (false, None) => Number::TooLarge,
        })
    }

    /// Consumes `.123` and `e-4` parts; true if there were any.
    fn skip_fraction_and_exponent(&mut self) -> Result<bool> {
        let mut seen = false;
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.digits()?;
            seen = true;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.digits()?;
            seen = true;
        }
        Ok(seen)
    }

    fn digits(&mut self) -> Result<()> {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected digits"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_string(text: &str) -> Result<String> {
        Cursor::new(text).string().map(Cow::into_owned)
    }

    #[test]
    fn strings_decode_escapes_and_surrogate_pairs() {
        assert_eq!(parse_string(r#""a\"b\\c\/\n""#).unwrap(), "a\"b\\c/\n");
        assert_eq!(parse_string(r#""\u00e9\ud83d\ude00""#).unwrap(), "é😀");
        assert!(parse_string(r#""\ud83d""#).is_err());
        assert!(parse_string("\"a\u{1}\"").is_err());
        assert!(parse_string(r#""abc"#).is_err());
    }

    #[test]
    fn numbers_are_classified() {
        let classify = |text: &str| match Cursor::new(text).number() {
            Ok(Number::Unsigned(v)) => format!("u{v}"),
            Ok(Number::Negative) => "neg".into(),
            Ok(Number::Fractional) => "frac".into(),
            Ok(Number::TooLarge) => "big".into(),
            Err(_) => "err".into(),
        };
        assert_eq!(classify("42"), "u42");
        assert_eq!(classify("-3"), "neg");
        assert_eq!(classify("-0"), "neg");
        assert_eq!(classify("1.0"), "frac");
        assert_eq!(classify("1e3"), "frac");
        assert_eq!(classify("99999999999999999999"), "big");
        assert_eq!(classify("01"), "err");
        assert_eq!(classify("-"), "err");
    }
}
