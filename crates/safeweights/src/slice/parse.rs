//! Parsing slice expressions as Python writes them, e.g. `"0:2, ::-1, None, ..."`.

use std::fmt;
use std::str::FromStr;

use super::SliceArg;

/// Error from parsing a slice expression such as `"0:2, :, ::4"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceParseError(String);

impl fmt::Display for SliceParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid slice expression: {}", self.0)
    }
}

impl std::error::Error for SliceParseError {}

/// A list of index items written as Python would, e.g. `"0:2, ::-1, None, ..."`
/// (`None` or `newaxis` for a new axis, `...` for the remaining dimensions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceSpec(pub Vec<SliceArg>);

impl FromStr for SliceSpec {
    type Err = SliceParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(SliceSpec(Vec::new()));
        }
        text.split(',')
            .map(parse_arg)
            .collect::<Result<_, _>>()
            .map(SliceSpec)
    }
}

fn parse_arg(part: &str) -> Result<SliceArg, SliceParseError> {
    let part = part.trim();
    let number = |s: &str| -> Result<Option<i64>, SliceParseError> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| SliceParseError(format!("{s:?} is not an integer")))
    };
    match part {
        "None" | "newaxis" => return Ok(SliceArg::NewAxis),
        "..." => return Ok(SliceArg::Ellipsis),
        _ => {}
    }
    let pieces: Vec<&str> = part.split(':').collect();
    match pieces.as_slice() {
        [index] => number(index)?
            .map(SliceArg::Index)
            .ok_or_else(|| SliceParseError("empty index".into())),
        [start, stop] => Ok(SliceArg::Range {
            start: number(start)?,
            stop: number(stop)?,
            step: None,
        }),
        [start, stop, step] => Ok(SliceArg::Range {
            start: number(start)?,
            stop: number(stop)?,
            step: number(step)?,
        }),
        _ => Err(SliceParseError(format!("{part:?} has too many ':'"))),
    }
}
