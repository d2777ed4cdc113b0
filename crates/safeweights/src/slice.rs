//! Slicing tensors per dimension with start, stop and step.
//!
//! [`SliceArg`] follows Python's rules (negative indices count from the end,
//! out-of-range bounds are clamped); [`resolve`] turns a list of them into
//! concrete [`DimSlice`]s for one shape, and [`gather`] copies the selected
//! elements out of a tensor's bytes in row-major order.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::format::header::checked_numel;
use crate::format::Dtype;

/// One dimension of a slice request, as Python would write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SliceArg {
    /// A single index; the dimension is dropped from the result.
    Index(i64),
    /// `start:stop:step`; missing bounds mean the whole range.
    Range {
        /// First index, or the beginning.
        start: Option<i64>,
        /// One past the last index, or the end.
        stop: Option<i64>,
        /// Step between indices (must be positive).
        step: Option<i64>,
    },
}

impl SliceArg {
    /// The whole dimension, `:`.
    pub const FULL: SliceArg = SliceArg::Range {
        start: None,
        stop: None,
        step: None,
    };
}

/// A resolved selection along one dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DimSlice {
    /// First selected index.
    pub start: usize,
    /// Number of selected indices.
    pub count: usize,
    /// Distance between selected indices (at least 1).
    pub step: usize,
    /// False when the dimension came from a single index and is dropped.
    pub keep: bool,
}

/// Resolves `args` against `shape`. Missing trailing dimensions are taken
/// whole, as numpy does.
pub fn resolve(tensor: &str, shape: &[usize], args: &[SliceArg]) -> Result<Vec<DimSlice>> {
    if args.len() > shape.len() {
        return Err(invalid(
            tensor,
            format!(
                "{} indices given for a tensor with {} dimensions",
                args.len(),
                shape.len()
            ),
        ));
    }
    shape
        .iter()
        .enumerate()
        .map(|(axis, &len)| {
            let arg = args.get(axis).copied().unwrap_or(SliceArg::FULL);
            resolve_dim(tensor, axis, len, arg)
        })
        .collect()
}

fn resolve_dim(tensor: &str, axis: usize, len: usize, arg: SliceArg) -> Result<DimSlice> {
    let len_i = i64::try_from(len).map_err(|_| invalid(tensor, "dimension too large".into()))?;
    match arg {
        SliceArg::Index(index) => {
            let position = if index < 0 { index + len_i } else { index };
            if !(0..len_i).contains(&position) {
                return Err(invalid(
                    tensor,
                    format!("index {index} is out of range for dimension {axis} of size {len}"),
                ));
            }
            Ok(DimSlice {
                start: position as usize,
                count: 1,
                step: 1,
                keep: false,
            })
        }
        SliceArg::Range { start, stop, step } => {
            let step = step.unwrap_or(1);
            if step <= 0 {
                return Err(invalid(
                    tensor,
                    format!("step {step} on dimension {axis}: only positive steps are supported"),
                ));
            }
            let clamp = |bound: Option<i64>, default: i64| {
                let value = bound.unwrap_or(default);
                let value = if value < 0 { value + len_i } else { value };
                value.clamp(0, len_i)
            };
            let start = clamp(start, 0);
            let stop = clamp(stop, len_i);
            let count = if stop > start {
                (stop - start - 1) / step + 1
            } else {
                0
            };
            Ok(DimSlice {
                start: start as usize,
                count: count as usize,
                step: step as usize,
                keep: true,
            })
        }
    }
}

fn invalid(tensor: &str, reason: String) -> Error {
    Error::InvalidSlice {
        tensor: tensor.to_owned(),
        reason,
    }
}

/// Shape of the result of a resolved slice (dropped dimensions removed).
pub fn output_shape(dims: &[DimSlice]) -> Vec<usize> {
    dims.iter().filter(|d| d.keep).map(|d| d.count).collect()
}

/// The copy plan of a slice: contiguous runs of `run_bytes` bytes, one per
/// position of the outer dimensions.
struct Plan {
    run_bytes: usize,
    base: usize,
    outer: Vec<Outer>,
    total: usize,
}

/// A dimension iterated outside the contiguous run.
struct Outer {
    start: usize,
    count: usize,
    step: usize,
    stride_bytes: usize,
}

fn plan(tensor: &str, dtype: Dtype, shape: &[usize], dims: &[DimSlice]) -> Result<Plan> {
    if dims.len() != shape.len() {
        return Err(invalid(
            tensor,
            "slice rank does not match the tensor".into(),
        ));
    }
    let bits = dtype.bits();
    // Every product below is bounded by the tensor's total bit count, so
    // checking that once rules out overflow in the rest of the plan.
    checked_numel(shape)
        .and_then(|numel| numel.checked_mul(bits))
        .ok_or_else(|| invalid(tensor, "shape overflows".into()))?;
    let mut stride_elems = vec![1usize; shape.len()];
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        stride_elems[axis] = stride_elems[axis + 1] * shape[axis + 1];
    }
    // Fold fully selected trailing dimensions, and one stepped-by-1
    // dimension before them, into a single contiguous run.
    let mut run_elems = 1usize;
    let mut base_elems = 0usize;
    let mut split = dims.len();
    while split > 0 {
        let d = dims[split - 1];
        if d.start == 0 && d.step == 1 && d.count == shape[split - 1] {
            run_elems *= d.count;
            split -= 1;
        } else {
            break;
        }
    }
    if split > 0 && dims[split - 1].step == 1 {
        let d = dims[split - 1];
        run_elems *= d.count;
        base_elems = d.start * stride_elems[split - 1];
        split -= 1;
    }
    let to_bytes = |elems: usize| -> Result<usize> {
        let bits_total = elems * bits;
        if bits_total % 8 != 0 {
            return Err(invalid(
                tensor,
                format!(
                    "{dtype} elements are {bits} bits; this slice does not fall on byte boundaries"
                ),
            ));
        }
        Ok(bits_total / 8)
    };
    let outer = dims[..split]
        .iter()
        .zip(&stride_elems)
        .map(|(d, &stride)| {
            Ok(Outer {
                start: d.start,
                count: d.count,
                step: d.step,
                stride_bytes: to_bytes(stride)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let outer_count: usize = outer.iter().map(|o| o.count).product();
    let run_bytes = to_bytes(run_elems)?;
    Ok(Plan {
        run_bytes,
        base: to_bytes(base_elems)?,
        total: run_bytes * outer_count,
        outer,
    })
}

/// Copies the selected elements of a tensor, row-major, into a new buffer.
///
/// `data` must be the tensor's bytes (`shape` and `dtype` describe it).
pub fn gather(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
    dims: &[DimSlice],
) -> Result<Vec<u8>> {
    gather_with(tensor, dtype, shape, dims, |offset, out| {
        let run = data
            .get(offset..offset + out.len())
            .ok_or_else(|| invalid(tensor, "tensor data is shorter than its shape".into()))?;
        out.copy_from_slice(run);
        Ok(())
    })
}

/// The selected elements of a tensor, row-major, in a new buffer that
/// `read(offset, out)` fills one contiguous run at a time (`offset` is
/// relative to the start of the tensor's bytes).
pub fn gather_with(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    dims: &[DimSlice],
    mut read: impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> Result<Vec<u8>> {
    let plan = plan(tensor, dtype, shape, dims)?;
    let mut out = crate::read::try_zeroed(plan.total)?;
    let mut written = 0;
    visit_runs(&plan, |offset, len| {
        read(offset, &mut out[written..written + len])?;
        written += len;
        Ok(())
    })?;
    Ok(out)
}

/// Number of bytes a resolved slice produces.
pub fn output_len(tensor: &str, dtype: Dtype, shape: &[usize], dims: &[DimSlice]) -> Result<usize> {
    Ok(plan(tensor, dtype, shape, dims)?.total)
}

/// Calls `visit(offset, len)` for every contiguous run of the slice, in
/// output order; offsets are relative to the start of the tensor's bytes.
pub fn for_each_run(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    dims: &[DimSlice],
    visit: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    visit_runs(&plan(tensor, dtype, shape, dims)?, visit)
}

fn visit_runs(plan: &Plan, mut visit: impl FnMut(usize, usize) -> Result<()>) -> Result<()> {
    if plan.total == 0 {
        return Ok(());
    }
    let mut counters = vec![0usize; plan.outer.len()];
    loop {
        let offset = plan
            .outer
            .iter()
            .zip(&counters)
            .fold(plan.base, |acc, (o, &i)| {
                acc + (o.start + i * o.step) * o.stride_bytes
            });
        visit(offset, plan.run_bytes)?;
        // Odometer increment over the outer dimensions, last one fastest.
        let mut axis = counters.len();
        loop {
            if axis == 0 {
                return Ok(());
            }
            axis -= 1;
            counters[axis] += 1;
            if counters[axis] < plan.outer[axis].count {
                break;
            }
            counters[axis] = 0;
        }
    }
}

/// Error from parsing a slice expression such as `"0:2, :, ::4"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceParseError(String);

impl fmt::Display for SliceParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid slice expression: {}", self.0)
    }
}

impl std::error::Error for SliceParseError {}

/// A list of per-dimension slices written as Python would, e.g. `"0:2, :, ::4"`.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn range(start: Option<i64>, stop: Option<i64>, step: Option<i64>) -> SliceArg {
        SliceArg::Range { start, stop, step }
    }

    fn spec(text: &str) -> Result<Vec<SliceArg>, SliceParseError> {
        text.parse::<SliceSpec>().map(|s| s.0)
    }

    #[test]
    fn slice_spec_parses_python_syntax() {
        assert_eq!(
            spec("0:2, :, ::4").unwrap(),
            vec![
                range(Some(0), Some(2), None),
                SliceArg::FULL,
                range(None, None, Some(4))
            ]
        );
        assert_eq!(spec("-1").unwrap(), vec![SliceArg::Index(-1)]);
        assert_eq!(spec(" 3 ").unwrap(), vec![SliceArg::Index(3)]);
        assert_eq!(
            spec("-3:-1:2").unwrap(),
            vec![range(Some(-3), Some(-1), Some(2))]
        );
        assert_eq!(spec("::").unwrap(), vec![SliceArg::FULL]);
        assert_eq!(spec(":5").unwrap(), vec![range(None, Some(5), None)]);
        assert_eq!(spec("").unwrap(), Vec::<SliceArg>::new());
        assert_eq!(spec("   ").unwrap(), Vec::<SliceArg>::new());
    }

    #[test]
    fn slice_spec_rejects_malformed_expressions() {
        for bad in [
            "1:2:3:4",
            "a",
            "1:b",
            ",",
            "0,",
            "1.5",
            "::x",
            "99999999999999999999",
        ] {
            let error = spec(bad).unwrap_err();
            assert!(
                error.to_string().starts_with("invalid slice expression"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn resolve_follows_python_clamping_and_negative_indices() {
        let dims = resolve("t", &[10], &[range(Some(-3), None, None)]).unwrap();
        assert_eq!(
            dims[0],
            DimSlice {
                start: 7,
                count: 3,
                step: 1,
                keep: true
            }
        );
        let dims = resolve("t", &[10], &[range(Some(-100), Some(100), Some(3))]).unwrap();
        assert_eq!(
            dims[0],
            DimSlice {
                start: 0,
                count: 4,
                step: 3,
                keep: true
            }
        );
        let dims = resolve("t", &[10], &[range(Some(8), Some(2), None)]).unwrap();
        assert_eq!(dims[0].count, 0);
        let dims = resolve("t", &[4, 5], &[SliceArg::Index(-1)]).unwrap();
        assert_eq!(
            dims[0],
            DimSlice {
                start: 3,
                count: 1,
                step: 1,
                keep: false
            }
        );
        assert_eq!(
            dims[1],
            DimSlice {
                start: 0,
                count: 5,
                step: 1,
                keep: true
            }
        );
        assert_eq!(output_shape(&dims), vec![5]);
    }

    #[test]
    fn resolve_rejects_bad_requests_naming_the_tensor() {
        let cases = [
            (vec![SliceArg::Index(4)], "out of range"),
            (vec![SliceArg::Index(-5)], "out of range"),
            (vec![SliceArg::Index(i64::MIN)], "out of range"),
            (vec![range(None, None, Some(0))], "positive steps"),
            (vec![range(None, None, Some(-1))], "positive steps"),
            (vec![SliceArg::FULL, SliceArg::FULL], "2 indices"),
        ];
        for (args, needle) in cases {
            let error = resolve("weight", &[4], &args).unwrap_err();
            assert!(matches!(error, Error::InvalidSlice { .. }), "{error:?}");
            let text = error.to_string();
            assert!(
                text.contains("\"weight\"") && text.contains(needle),
                "{text}"
            );
        }
    }

    #[test]
    fn sub_byte_slices_must_fall_on_byte_boundaries() {
        // F4, shape [2, 4]: a row is 2 bytes, so rows can be sliced ...
        let data = [0x10u8, 0x32, 0x54, 0x76];
        let dims = resolve("q", &[2, 4], &[SliceArg::Index(1)]).unwrap();
        assert_eq!(
            gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap(),
            vec![0x54, 0x76]
        );
        // ... but a single column cannot.
        let dims = resolve(
            "q",
            &[2, 4],
            &[SliceArg::FULL, range(Some(1), Some(2), None)],
        )
        .unwrap();
        let error = gather("q", Dtype::F4, &[2, 4], &data, &dims).unwrap_err();
        assert!(matches!(error, Error::InvalidSlice { .. }), "{error:?}");
    }
}
