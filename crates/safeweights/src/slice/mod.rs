//! The one slicing planner: per-dimension slices with start, stop and any
//! non-zero step, single indices, `...` and new axes, with numpy's rules.
//!
//! [`SliceArg`] is one item of an index as Python writes it; [`plan`] turns
//! a list of them into a [`Selection`] for one shape; [`gather`] and its
//! siblings copy the selected elements out in row-major order. The CLI
//! (`dump --slice`), the Python bindings and the readers all plan here.
//!
//! A negative step selects the same elements as a positive one, in
//! reverse: the copy reads them in increasing order (so reads stay
//! sequential and contiguous runs stay long) and reverses those axes of the
//! result afterwards.

mod copy;
mod parse;

pub use copy::{for_each_run, gather, gather_into, gather_with, output_len, place_block};
pub use parse::{SliceParseError, SliceSpec};

use crate::error::{Error, Result};

/// One item of an index, as Python would write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SliceArg {
    /// A single index; the dimension is dropped from the result.
    Index(i64),
    /// `start:stop:step`; missing bounds mean the whole range in the
    /// step's direction. The step must not be zero.
    Range {
        /// First index, or the beginning (the end for a negative step).
        start: Option<i64>,
        /// One past the last index, or the end (the beginning for a negative step).
        stop: Option<i64>,
        /// Step between indices; negative steps run backwards.
        step: Option<i64>,
    },
    /// `None` (numpy's `newaxis`): a new dimension of length 1.
    NewAxis,
    /// `...`: as many whole dimensions as the other items leave.
    Ellipsis,
}

impl SliceArg {
    /// The whole dimension, `:`.
    pub const FULL: SliceArg = SliceArg::Range {
        start: None,
        stop: None,
        step: None,
    };

    /// Whether the item selects along a dimension of the tensor (new axes
    /// and `...` do not).
    fn consumes_a_dimension(self) -> bool {
        matches!(self, SliceArg::Index(_) | SliceArg::Range { .. })
    }
}

/// A resolved selection along one dimension of the tensor, in increasing
/// index order.
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

/// A planned slice of one tensor: what to read, and how to arrange it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// One per tensor dimension, in increasing index order.
    dims: Vec<DimSlice>,
    /// Axes of the gathered result (kept dimensions) to reverse.
    flips: Vec<usize>,
    /// The result's dimensions: `Some(k)` is kept dimension `k`, `None` a new axis.
    layout: Vec<Option<usize>>,
}

impl Selection {
    /// The selection along each dimension of the tensor.
    pub fn dims(&self) -> &[DimSlice] {
        &self.dims
    }

    /// The shape of the result, new axes included.
    pub fn shape(&self) -> Vec<usize> {
        let gathered = self.gathered_shape();
        self.layout
            .iter()
            .map(|axis| axis.map_or(1, |k| gathered[k]))
            .collect()
    }

    /// The shape of the gathered bytes: the kept dimensions, in order.
    fn gathered_shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.count)
            .collect()
    }

    /// Axes of the gathered result that run backwards.
    pub(crate) fn flips(&self) -> &[usize] {
        &self.flips
    }
}

/// Plans `args` against a tensor of `shape`, with numpy's rules: negative
/// indices count from the end, out-of-range bounds are clamped, missing
/// trailing dimensions are taken whole, at most one `...`.
pub fn plan(tensor: &str, shape: &[usize], args: &[SliceArg]) -> Result<Selection> {
    let ellipses = args.iter().filter(|a| **a == SliceArg::Ellipsis).count();
    if ellipses > 1 {
        return Err(invalid(
            tensor,
            "an index can only have a single ellipsis ('...')".into(),
        ));
    }
    let consuming = args.iter().filter(|a| a.consumes_a_dimension()).count();
    if consuming > shape.len() {
        return Err(invalid(
            tensor,
            format!(
                "too many indices: the tensor has {} dimensions but {consuming} were indexed",
                shape.len()
            ),
        ));
    }
    let mut selection = Selection {
        dims: Vec::with_capacity(shape.len()),
        flips: Vec::new(),
        layout: Vec::new(),
    };
    let implicit = std::iter::repeat_n(SliceArg::FULL, shape.len() - consuming);
    let mut implicit = Some(implicit);
    let mut items: Vec<SliceArg> = Vec::with_capacity(args.len() + shape.len());
    for &arg in args {
        if arg == SliceArg::Ellipsis {
            items.extend(implicit.take().into_iter().flatten());
        } else {
            items.push(arg);
        }
    }
    items.extend(implicit.into_iter().flatten());
    let mut kept = 0;
    for arg in items {
        if arg == SliceArg::NewAxis {
            selection.layout.push(None);
            continue;
        }
        let axis = selection.dims.len();
        let (dim, reversed) = resolve_dim(tensor, axis, shape[axis], arg)?;
        if dim.keep {
            if reversed {
                selection.flips.push(kept);
            }
            selection.layout.push(Some(kept));
            kept += 1;
        }
        selection.dims.push(dim);
    }
    Ok(selection)
}

/// One dimension's selection in increasing order, and whether the request
/// runs backwards over it (only reported when that reorders anything).
fn resolve_dim(tensor: &str, axis: usize, len: usize, arg: SliceArg) -> Result<(DimSlice, bool)> {
    let len_i = i64::try_from(len).map_err(|_| invalid(tensor, "dimension too large".into()))?;
    let (start, stop, step) = match arg {
        SliceArg::Index(index) => {
            let position = if index < 0 { index + len_i } else { index };
            if !(0..len_i).contains(&position) {
                return Err(invalid(
                    tensor,
                    format!("index {index} is out of range for dimension {axis} of size {len}"),
                ));
            }
            let dim = DimSlice {
                start: position as usize,
                count: 1,
                step: 1,
                keep: false,
            };
            return Ok((dim, false));
        }
        SliceArg::Range { start, stop, step } => (start, stop, step.unwrap_or(1)),
        SliceArg::NewAxis | SliceArg::Ellipsis => {
            return Err(invalid(tensor, "internal: unexpanded index item".into()))
        }
    };
    if step == 0 {
        return Err(invalid(
            tensor,
            format!("step 0 on dimension {axis}: the step cannot be zero"),
        ));
    }
    let (first, count) = python_range(start, stop, step, len_i);
    let stride = step.unsigned_abs();
    // The selection in increasing order: a backward range starts at its
    // last element.
    let lowest = if step > 0 || count == 0 {
        first
    } else {
        first - (count - 1) * stride as i64
    };
    let dim = DimSlice {
        start: if count == 0 { 0 } else { lowest as usize },
        count: count as usize,
        step: usize::try_from(stride).unwrap_or(usize::MAX).max(1),
        keep: true,
    };
    Ok((dim, step < 0 && count > 1))
}

/// Python's `slice.indices` followed by `len(range(...))`: the first index
/// selected and how many, for a non-zero `step`.
fn python_range(start: Option<i64>, stop: Option<i64>, step: i64, len: i64) -> (i64, i64) {
    let backwards = step < 0;
    // Bounds clamp to [0, len] going forwards and to [-1, len - 1] going
    // backwards, where -1 means "before the first element".
    let (low, high) = if backwards { (-1, len - 1) } else { (0, len) };
    let clamp = |bound: Option<i64>, default: i64| match bound {
        None => default,
        Some(value) => {
            let value = if value < 0 {
                value.saturating_add(len)
            } else {
                value
            };
            value.clamp(low, high)
        }
    };
    let (start, stop) = if backwards {
        (clamp(start, high), clamp(stop, low))
    } else {
        (clamp(start, low), clamp(stop, high))
    };
    let span = if backwards {
        start - stop
    } else {
        stop - start
    };
    let count = if span > 0 {
        (span - 1) / step.unsigned_abs().min(i64::MAX as u64) as i64 + 1
    } else {
        0
    };
    (start, count)
}

fn invalid(tensor: &str, reason: String) -> Error {
    Error::InvalidSlice {
        tensor: tensor.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests;
