//! Turning a Python index (`t[1:, ::2, ..., None, -1]`) into the core's
//! per-dimension slices, with numpy's semantics.
//!
//! The core slices with positive steps only. A negative step selects the
//! same elements as a positive one, in reverse, so we ask the core for the
//! positive selection and reverse that axis of the gathered bytes.

use pyo3::prelude::*;
use pyo3::types::{PyEllipsis, PyList, PyNone, PySlice, PyTuple};
use safeweights::slice::SliceArg;

use crate::errors::{new_err, Multi};

/// What a Python index asks for.
#[derive(Debug)]
pub struct SlicePlan {
    /// One entry per tensor dimension, all with positive steps.
    pub args: Vec<SliceArg>,
    /// Axes of the gathered result (dimensions kept by `args`) to reverse.
    pub flips: Vec<usize>,
    /// The final dimensions in order: `Some(k)` is gathered axis `k`,
    /// `None` a new axis of length 1 from `None` in the index.
    pub layout: Vec<Option<usize>>,
}

impl SlicePlan {
    /// The final shape given the gathered shape.
    pub fn final_shape(&self, gathered: &[usize]) -> Vec<usize> {
        self.layout
            .iter()
            .map(|axis| axis.map_or(1, |k| gathered[k]))
            .collect()
    }
}

fn invalid(message: String) -> PyErr {
    new_err(Multi::InvalidSlice, message)
}

/// An index of a type slicing does not take (also a `TypeError`).
fn unsupported(message: String) -> PyErr {
    new_err(Multi::UnsupportedIndex, message)
}

/// Parses `index` for a tensor of `shape`.
pub fn parse_index(index: &Bound<'_, PyAny>, shape: &[usize]) -> PyResult<SlicePlan> {
    let items: Vec<Bound<'_, PyAny>> = match index.cast::<PyTuple>() {
        Ok(tuple) => tuple.iter().collect(),
        // The reference reads a bare `[]` as `[0:0]`: nothing of the first axis.
        Err(_) if is_empty_list(index) => vec![PySlice::new(index.py(), 0, 0, 1).into_any()],
        Err(_) => vec![index.clone()],
    };
    let ellipses = items
        .iter()
        .filter(|i| i.is_instance_of::<PyEllipsis>())
        .count();
    if ellipses > 1 {
        return Err(invalid(
            "an index can only have a single ellipsis ('...')".into(),
        ));
    }
    let consuming = items
        .iter()
        .filter(|i| !i.is_instance_of::<PyEllipsis>() && !i.is_instance_of::<PyNone>())
        .count();
    if consuming > shape.len() {
        return Err(invalid(format!(
            "too many indices: the tensor has {} dimensions but {consuming} were indexed",
            shape.len()
        )));
    }
    let mut plan = SlicePlan {
        args: Vec::with_capacity(shape.len()),
        flips: Vec::new(),
        layout: Vec::new(),
    };
    let mut kept = 0;
    for (position, item) in items.iter().enumerate() {
        if item.is_instance_of::<PyNone>() {
            plan.layout.push(None);
        } else if item.is_instance_of::<PyEllipsis>() {
            for _ in 0..shape.len() - consuming {
                plan.args.push(SliceArg::FULL);
                plan.layout.push(Some(kept));
                kept += 1;
            }
        } else if let Ok(slice) = item.cast::<PySlice>() {
            let len = shape[plan.args.len()];
            let (arg, flip) = slice_arg(slice, len)?;
            if flip {
                plan.flips.push(kept);
            }
            plan.args.push(arg);
            plan.layout.push(Some(kept));
            kept += 1;
        } else if let Ok(value) = item.extract::<i64>() {
            // Booleans included: the reference reads them as 0 and 1.
            plan.args.push(SliceArg::Index(value));
        } else {
            return Err(unsupported(format!(
                "unsupported index at position {position} ({}): only integers, slices (`:`), ellipsis (`...`) and None are valid indices",
                item.get_type().name()?
            )));
        }
    }
    while plan.args.len() < shape.len() {
        plan.args.push(SliceArg::FULL);
        plan.layout.push(Some(kept));
        kept += 1;
    }
    Ok(plan)
}

/// Whether `index` is the empty list.
fn is_empty_list(index: &Bound<'_, PyAny>) -> bool {
    index.cast::<PyList>().is_ok_and(|list| list.is_empty())
}

/// A Python slice as a positive-step range, plus whether it runs backwards.
fn slice_arg(slice: &Bound<'_, PySlice>, len: usize) -> PyResult<(SliceArg, bool)> {
    let len = isize::try_from(len).map_err(|_| invalid("dimension too large".into()))?;
    let indices = slice.indices(len)?;
    let (start, step, count) = (
        indices.start as i64,
        indices.step as i64,
        indices.slicelength as i64,
    );
    let range = |start: i64, stop: i64, step: i64| SliceArg::Range {
        start: Some(start),
        stop: Some(stop),
        step: Some(step),
    };
    if count == 0 {
        return Ok((range(0, 0, 1), false));
    }
    if step > 0 {
        return Ok((range(start, start + (count - 1) * step + 1, step), false));
    }
    let last = start + (count - 1) * step;
    Ok((range(last, start + 1, -step), true))
}

/// Reverses axis `axis` of a row-major buffer of `shape` with elements of
/// `bits` bits.
pub fn flip_axis(data: &[u8], shape: &[usize], axis: usize, bits: usize) -> PyResult<Vec<u8>> {
    let inner_bits = shape[axis + 1..].iter().product::<usize>() * bits;
    if inner_bits % 8 != 0 {
        return Err(invalid(
            "a negative step on the last axis of a sub-byte dtype does not fall on byte boundaries"
                .into(),
        ));
    }
    let inner = inner_bits / 8;
    let count = shape[axis];
    let block = inner * count;
    let mut out = vec![0u8; data.len()];
    if block == 0 {
        return Ok(out);
    }
    for (source, target) in data.chunks_exact(block).zip(out.chunks_exact_mut(block)) {
        for i in 0..count {
            let from = (count - 1 - i) * inner;
            target[i * inner..(i + 1) * inner].copy_from_slice(&source[from..from + inner]);
        }
    }
    Ok(out)
}
