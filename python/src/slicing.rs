//! Turning a Python index (`t[1:, ::-2, ..., None, -1]`) into the core's
//! index items. The core's one planner (`safeweights::slice::plan`) applies
//! numpy's rules, negative steps, `...` and new axes included; this module
//! only reads Python objects.

use pyo3::prelude::*;
use pyo3::types::{PyEllipsis, PyList, PyNone, PySlice, PyTuple};
use safeweights::slice::SliceArg;

use crate::errors::{new_err, Multi};

/// An index of a type slicing does not take (also a `TypeError`).
fn unsupported(message: String) -> PyErr {
    new_err(Multi::UnsupportedIndex, message)
}

/// Reads `index` as the core's index items.
pub fn parse_index(index: &Bound<'_, PyAny>) -> PyResult<Vec<SliceArg>> {
    let items: Vec<Bound<'_, PyAny>> = match index.cast::<PyTuple>() {
        Ok(tuple) => tuple.iter().collect(),
        // The reference reads a bare `[]` as `[0:0]`: nothing of the first axis.
        Err(_) if is_empty_list(index) => {
            return Ok(vec![SliceArg::Range {
                start: Some(0),
                stop: Some(0),
                step: Some(1),
            }])
        }
        Err(_) => vec![index.clone()],
    };
    items
        .iter()
        .enumerate()
        .map(|(position, item)| item_arg(position, item))
        .collect()
}

fn item_arg(position: usize, item: &Bound<'_, PyAny>) -> PyResult<SliceArg> {
    if item.is_instance_of::<PyNone>() {
        return Ok(SliceArg::NewAxis);
    }
    if item.is_instance_of::<PyEllipsis>() {
        return Ok(SliceArg::Ellipsis);
    }
    if let Ok(slice) = item.cast::<PySlice>() {
        return slice_arg(slice);
    }
    // Booleans included: the reference reads them as 0 and 1.
    if let Ok(value) = item.extract::<i64>() {
        return Ok(SliceArg::Index(value));
    }
    Err(unsupported(format!(
        "unsupported index at position {position} ({}): only integers, slices (`:`), ellipsis (`...`) and None are valid indices",
        item.get_type().name()?
    )))
}

/// Whether `index` is the empty list.
fn is_empty_list(index: &Bound<'_, PyAny>) -> bool {
    index.cast::<PyList>().is_ok_and(|list| list.is_empty())
}

/// A Python slice as the core's range. Python itself validates it first
/// (`slice.indices`), so a zero step or a bound that is not an integer
/// raises exactly what Python raises.
fn slice_arg(slice: &Bound<'_, PySlice>) -> PyResult<SliceArg> {
    slice.indices(0)?;
    Ok(SliceArg::Range {
        start: bound(&slice.getattr("start")?)?,
        stop: bound(&slice.getattr("stop")?)?,
        step: bound(&slice.getattr("step")?)?,
    })
}

/// A slice bound: `None`, or an integer (anything with `__index__`),
/// saturated to 64 bits; no tensor dimension comes near, so saturating
/// selects what the exact value would.
fn bound(value: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    if value.is_none() {
        return Ok(None);
    }
    let index = value
        .py()
        .import("operator")?
        .call_method1("index", (value,))?;
    match index.extract::<i64>() {
        Ok(v) => Ok(Some(v)),
        Err(_) if index.lt(0)? => Ok(Some(i64::MIN)),
        Err(_) => Ok(Some(i64::MAX)),
    }
}
