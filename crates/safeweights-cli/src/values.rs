//! Single tensor elements as printable values, and numpy-style printing of
//! arrays (`print(array)`: space separated, aligned, summarized over 1000
//! elements with 3 edge items, lines wrapped at 75 characters).

use safeweights::analysis::decode::{decode_minifloat, granule_bytes};
use safeweights::Dtype;
use serde_json::Value;

/// numpy's `threshold`: arrays with more elements are summarized.
const THRESHOLD: usize = 1000;
/// numpy's `edgeitems`.
const EDGE: usize = 3;
/// numpy's `linewidth`.
const LINE_WIDTH: usize = 75;
/// numpy's `precision`: at most this many fraction digits.
const PRECISION: usize = 8;

/// One element, decoded exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// A boolean.
    Bool(bool),
    /// An integer (all integer dtypes fit in i128).
    Int(i128),
    /// A float and its shortest decimal form that round-trips in its dtype,
    /// in Rust's `{:e}` notation.
    Float(f64, String),
    /// A complex number (real, imaginary), each as for `Float`.
    Complex((f64, String), (f64, String)),
}

impl Cell {
    /// The element as JSON: numbers, booleans, `"nan"`/`"inf"` strings for
    /// non-finite floats, and `[re, im]` for complex numbers.
    pub fn to_json(&self) -> Value {
        match self {
            Cell::Bool(b) => Value::Bool(*b),
            Cell::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or(Value::Null),
            Cell::Float(v, _) => crate::output::json_float(*v),
            Cell::Complex((re, _), (im, _)) => Value::Array(vec![
                crate::output::json_float(*re),
                crate::output::json_float(*im),
            ]),
        }
    }
}

/// Decodes element `index` of a tensor's bytes.
pub fn cell_at(dtype: Dtype, bytes: &[u8], index: usize) -> Cell {
    let bits = dtype.bits();
    if bits >= 8 {
        let size = bits / 8;
        let raw = &bytes[index * size..(index + 1) * size];
        let mut word = [0u8; 8];
        word[..size].copy_from_slice(raw);
        let unsigned = u64::from_le_bytes(word);
        let signed = |width: u32| ((unsigned << (64 - width)) as i64 >> (64 - width)) as i128;
        return match dtype {
            Dtype::BOOL => Cell::Bool(unsigned != 0),
            Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64 => Cell::Int(i128::from(unsigned)),
            Dtype::I8 | Dtype::I16 | Dtype::I32 | Dtype::I64 => Cell::Int(signed(bits as u32)),
            Dtype::F64 => {
                let v = f64::from_bits(unsigned);
                Cell::Float(v, format!("{v:e}"))
            }
            Dtype::F32 => float32(f32::from_bits(unsigned as u32)),
            Dtype::C64 => {
                let (Cell::Float(re, rs), Cell::Float(im, is)) = (
                    float32(f32::from_bits(unsigned as u32)),
                    float32(f32::from_bits((unsigned >> 32) as u32)),
                ) else {
                    return Cell::Int(0);
                };
                Cell::Complex((re, rs), (im, is))
            }
            _ => small_float(dtype, unsigned as u32),
        };
    }
    // Sub-byte floats: decode the granule holding the element.
    let granule = granule_bytes(dtype);
    let per_granule = granule * 8 / bits;
    let start = index / per_granule * granule;
    let within = index % per_granule;
    let shift = if bits == 4 { 4 * within } else { 6 * within };
    let mut word = [0u8; 4];
    word[..granule].copy_from_slice(&bytes[start..start + granule]);
    let raw = (u32::from_le_bytes(word) >> shift) & ((1 << bits) - 1);
    small_float(dtype, raw)
}

fn float32(v: f32) -> Cell {
    Cell::Float(f64::from(v), format!("{v:e}"))
}

/// A float of 16 bits or fewer with the shortest decimal form that decodes
/// back to the same value (nearer to it than to either neighbour).
fn small_float(dtype: Dtype, bits: u32) -> Cell {
    let value = decode_minifloat(dtype, bits);
    if !value.is_finite() {
        return Cell::Float(value, format!("{value:e}"));
    }
    let mask = (1u32 << dtype.bits()) - 1;
    let neighbours = [
        decode_minifloat(dtype, bits.wrapping_add(1) & mask),
        decode_minifloat(dtype, bits.wrapping_sub(1) & mask),
    ];
    for digits in 0..17 {
        let text = format!("{value:.digits$e}");
        let parsed: f64 = text.parse().unwrap_or(f64::NAN);
        let error = (parsed - value).abs();
        let closest = neighbours
            .iter()
            .filter(|n| n.is_finite() && **n != value)
            .all(|n| error < (n - value).abs() / 2.0);
        if closest {
            return Cell::Float(value, text);
        }
    }
    Cell::Float(value, format!("{value:e}"))
}

/// Splits Rust `{:e}` output into sign, digits and decimal exponent.
fn sci_parts(text: &str) -> (bool, String, i32) {
    let (mantissa, exp) = text.split_once('e').unwrap_or((text, "0"));
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (negative, digits, exp.parse().unwrap_or(0))
}

/// Positional form with trailing zeros trimmed: `1.`, `0.25`, `-3.5`.
fn positional(value: f64, text: &str) -> String {
    let (negative, digits, exp) = sci_parts(text);
    let frac_digits = (digits.len() as i32 - 1 - exp).max(0) as usize;
    let body = if frac_digits > PRECISION {
        format!("{:.PRECISION$}", value.abs())
            .trim_end_matches('0')
            .to_owned()
    } else {
        format!("{:.frac_digits$}", value.abs())
    };
    let body = if body.contains('.') {
        body
    } else {
        format!("{body}.")
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

/// Scientific form like numpy: `1.5e-05`, `-2.e+10`.
fn scientific(text: &str) -> String {
    let (negative, digits, exp) = sci_parts(text);
    let digits = if digits.len() > PRECISION + 1 {
        &digits[..PRECISION + 1]
    } else {
        &digits
    };
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let (first, rest) = digits.split_at(1);
    let sign = if negative { "-" } else { "" };
    let exp_sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{first}.{rest}e{exp_sign}{:02}", exp.abs())
}

fn special(value: f64) -> Option<&'static str> {
    if value.is_nan() {
        Some("nan")
    } else if value.is_infinite() {
        Some(if value > 0.0 { "inf" } else { "-inf" })
    } else {
        None
    }
}

/// Formats the displayed cells to strings of equal width.
fn format_cells(cells: &[Cell]) -> Vec<String> {
    let floats: Vec<f64> = cells
        .iter()
        .filter_map(|c| match c {
            Cell::Float(v, _) if v.is_finite() && *v != 0.0 => Some(v.abs()),
            _ => None,
        })
        .collect();
    let max = floats.iter().copied().fold(0.0, f64::max);
    let min = floats.iter().copied().fold(f64::INFINITY, f64::min);
    let sci = !floats.is_empty() && (max >= 1e8 || min < 1e-4 || max / min > 1e3);
    let raw: Vec<String> = cells
        .iter()
        .map(|c| match c {
            Cell::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
            Cell::Int(i) => i.to_string(),
            Cell::Float(v, t) => special(*v).map_or_else(
                || {
                    if sci {
                        scientific(t)
                    } else {
                        positional(*v, t)
                    }
                },
                str::to_owned,
            ),
            Cell::Complex((re, rt), (im, it)) => {
                let re = special(*re).map_or_else(|| positional(*re, rt), str::to_owned);
                let im_text = special(*im).map_or_else(
                    || positional(im.abs(), it.trim_start_matches('-')),
                    str::to_owned,
                );
                let sign = if im.is_sign_negative() { '-' } else { '+' };
                format!("{re}{sign}{im_text}j")
            }
        })
        .collect();
    // Align decimal points: pad the integer part left, the fraction right;
    // nan and inf are right-aligned in the full width, as numpy does.
    let aligned = |s: &str| s.contains('.') && !s.contains('e') && !s.ends_with('j');
    fn split(s: &str) -> (&str, &str) {
        s.find('.').map_or((s, ""), |i| s.split_at(i))
    }
    let numbers = raw.iter().filter(|s| aligned(s));
    let left = numbers
        .clone()
        .map(|s| split(s).0.chars().count())
        .max()
        .unwrap_or(0);
    let right = numbers
        .map(|s| split(s).1.chars().count())
        .max()
        .unwrap_or(0);
    let width = raw
        .iter()
        .filter(|s| !aligned(s))
        .map(|s| s.chars().count())
        .fold(left + right, usize::max);
    raw.iter()
        .map(|s| {
            if aligned(s) {
                let (l, r) = split(s);
                format!("{:>width$}", format!("{l:>left$}{r:<right$}"))
            } else {
                format!("{s:>width$}")
            }
        })
        .collect()
}

/// Flat indices of the displayed elements, in order, with `None` for the
/// `...` of summarized dimensions.
fn displayed(shape: &[usize], summarize: bool) -> Vec<usize> {
    let mut out = Vec::new();
    fn walk(shape: &[usize], base: usize, summarize: bool, out: &mut Vec<usize>) {
        let Some((&len, rest)) = shape.split_first() else {
            out.push(base);
            return;
        };
        let stride: usize = rest.iter().product();
        for i in shown(len, summarize) {
            walk(rest, base + i * stride, summarize, out);
        }
    }
    walk(shape, 0, summarize, &mut out);
    out
}

fn shown(len: usize, summarize: bool) -> Vec<usize> {
    if summarize && len > 2 * EDGE {
        (0..EDGE).chain(len - EDGE..len).collect()
    } else {
        (0..len).collect()
    }
}

/// Prints an array like numpy's `str()`; `cell(i)` decodes flat element `i`.
pub fn format_array(shape: &[usize], cell: impl Fn(usize) -> Cell) -> String {
    let numel: usize = shape.iter().product();
    let summarize = numel > THRESHOLD;
    let indices = displayed(shape, summarize);
    let cells: Vec<Cell> = indices.iter().map(|&i| cell(i)).collect();
    let texts = format_cells(&cells);
    if shape.is_empty() {
        return texts.into_iter().next().unwrap_or_default();
    }
    let mut next = texts.into_iter();
    let mut out = String::new();
    emit(shape, 0, summarize, &mut next, &mut out);
    out
}

fn emit(
    shape: &[usize],
    depth: usize,
    summarize: bool,
    cells: &mut impl Iterator<Item = String>,
    out: &mut String,
) {
    let len = shape[0];
    let positions = shown(len, summarize);
    let gap = summarize && len > 2 * EDGE;
    out.push('[');
    if shape.len() == 1 {
        let indent = " ".repeat(depth + 1);
        let mut line_len = depth + 1;
        for (k, _) in positions.iter().enumerate() {
            let mut item = cells.next().unwrap_or_default();
            if gap && k == EDGE {
                item = format!("... {item}");
            }
            let sep = usize::from(k > 0);
            if k > 0 && line_len + sep + item.len() + 1 > LINE_WIDTH {
                // numpy strips the padding that would end a wrapped line.
                out.truncate(out.trim_end_matches(' ').len());
                out.push('\n');
                out.push_str(&indent);
                line_len = depth + 1;
            } else if k > 0 {
                out.push(' ');
                line_len += 1;
            }
            line_len += item.len();
            out.push_str(&item);
        }
    } else {
        let newlines = "\n".repeat(shape.len() - 1);
        let indent = " ".repeat(depth + 1);
        for (k, _) in positions.iter().enumerate() {
            if k > 0 {
                out.push_str(&newlines);
                out.push_str(&indent);
            }
            if gap && k == EDGE {
                out.push_str("...");
                out.push_str(&newlines);
                out.push_str(&indent);
            }
            emit(&shape[1..], depth + 1, summarize, cells, out);
        }
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(shape: &[usize]) -> String {
        format_array(shape, |i| Cell::Int(i as i128))
    }

    fn f32s(values: &[f32]) -> String {
        format_array(&[values.len()], |i| float32(values[i]))
    }

    #[test]
    fn numpy_like_layout() {
        assert_eq!(ints(&[2, 3]), "[[0 1 2]\n [3 4 5]]");
        assert_eq!(ints(&[2, 1, 2]), "[[[0 1]]\n\n [[2 3]]]");
        assert!(ints(&[1001]).starts_with("[   0    1    2 ...  998  999 1000]"));
        assert_eq!(ints(&[]), "0");
        assert_eq!(ints(&[0]), "[]");
        let big = ints(&[2000, 3]);
        assert!(big
            .starts_with("[[   0    1    2]\n [   3    4    5]\n [   6    7    8]\n ...\n [5991"));
    }

    #[test]
    fn floats_like_numpy() {
        assert_eq!(f32s(&[0.1, 0.25, 1.0]), "[0.1  0.25 1.  ]");
        assert_eq!(f32s(&[1.5, -2.0, f32::NAN]), "[ 1.5 -2.   nan]");
        assert_eq!(f32s(&[1e-5, 1.0]), "[1.e-05 1.e+00]");
        assert_eq!(
            small_float(Dtype::F16, 0x2e66),
            Cell::Float(decode_minifloat(Dtype::F16, 0x2e66), "1e-1".into())
        );
        assert_eq!(format_array(&[2], |i| Cell::Bool(i == 0)), "[ True False]");
    }
}
