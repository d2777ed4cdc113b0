//! Copying a planned [`Selection`] out of a tensor's bytes: contiguous
//! runs in increasing offset order, then the backward axes reversed.

use super::{invalid, DimSlice, Selection};
use crate::error::Result;
use crate::format::header::checked_numel;
use crate::format::Dtype;

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

fn copy_plan(tensor: &str, dtype: Dtype, shape: &[usize], dims: &[DimSlice]) -> Result<Plan> {
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
        if !bits_total.is_multiple_of(8) {
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
    selection: &Selection,
) -> Result<Vec<u8>> {
    gather_with(tensor, dtype, shape, selection, |offset, out| {
        copy_run(tensor, data, offset, out)
    })
}

/// As [`gather`], into `out`, which must be [`output_len`] bytes long.
pub fn gather_into(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    data: &[u8],
    selection: &Selection,
    out: &mut [u8],
) -> Result<()> {
    let plan = copy_plan(tensor, dtype, shape, selection.dims())?;
    if out.len() != plan.total {
        return Err(invalid(
            tensor,
            format!(
                "internal: a {}-byte buffer for a {}-byte slice",
                out.len(),
                plan.total
            ),
        ));
    }
    let mut written = 0;
    visit_runs(&plan, |offset, len| {
        copy_run(tensor, data, offset, &mut out[written..written + len])?;
        written += len;
        Ok(())
    })?;
    selection.finish(tensor, dtype, out)
}

fn copy_run(tensor: &str, data: &[u8], offset: usize, out: &mut [u8]) -> Result<()> {
    let run = data
        .get(offset..offset + out.len())
        .ok_or_else(|| invalid(tensor, "tensor data is shorter than its shape".into()))?;
    out.copy_from_slice(run);
    Ok(())
}

/// The selected elements of a tensor, row-major, in a new buffer that
/// `read(offset, out)` fills one contiguous run at a time (`offset` is
/// relative to the start of the tensor's bytes).
pub fn gather_with(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    selection: &Selection,
    mut read: impl FnMut(usize, &mut [u8]) -> Result<()>,
) -> Result<Vec<u8>> {
    let plan = copy_plan(tensor, dtype, shape, selection.dims())?;
    let mut out = crate::read::try_zeroed(plan.total)?;
    let mut written = 0;
    visit_runs(&plan, |offset, len| {
        read(offset, &mut out[written..written + len])?;
        written += len;
        Ok(())
    })?;
    selection.finish(tensor, dtype, &mut out)?;
    Ok(out)
}

/// Number of bytes a planned slice produces.
pub fn output_len(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    selection: &Selection,
) -> Result<usize> {
    Ok(copy_plan(tensor, dtype, shape, selection.dims())?.total)
}

/// Calls `visit(offset, len)` for every contiguous run of the slice, in
/// increasing offset order; offsets are relative to the start of the
/// tensor's bytes. The runs concatenated hold the selection with every
/// axis in increasing order: [`Selection::finish`] turns them into the
/// slice's bytes.
pub fn for_each_run(
    tensor: &str,
    dtype: Dtype,
    shape: &[usize],
    selection: &Selection,
    visit: impl FnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    visit_runs(&copy_plan(tensor, dtype, shape, selection.dims())?, visit)
}

impl Selection {
    /// Turns the concatenated runs of [`for_each_run`] into the slice's
    /// bytes, in place, by reversing the axes a negative step runs
    /// backwards over.
    pub fn finish(&self, tensor: &str, dtype: Dtype, gathered: &mut [u8]) -> Result<()> {
        let shape = self.gathered_shape();
        for &axis in self.flips() {
            let inner_bits = shape[axis + 1..].iter().product::<usize>() * dtype.bits();
            if !inner_bits.is_multiple_of(8) {
                return Err(invalid(
                    tensor,
                    format!(
                        "a negative step on the last axis of a {dtype} tensor ({} bits per element) does not fall on byte boundaries",
                        dtype.bits()
                    ),
                ));
            }
            reverse_axis(gathered, shape[axis], inner_bits / 8);
        }
        Ok(())
    }
}

/// Reverses the order of `count` items of `inner` bytes within each block
/// of `count * inner` bytes.
fn reverse_axis(data: &mut [u8], count: usize, inner: usize) {
    let block = inner * count;
    if block == 0 {
        return;
    }
    for chunk in data.chunks_exact_mut(block) {
        for i in 0..count / 2 {
            let (head, tail) = chunk.split_at_mut((count - 1 - i) * inner);
            head[i * inner..(i + 1) * inner].swap_with_slice(&mut tail[..inner]);
        }
    }
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

/// Copies `block`, the C-order bytes of a sub-block of shape `sizes` that
/// starts at `offsets` in a tensor of `shape`, into its place in `full`,
/// the whole tensor's C-order bytes, one innermost row at a time: what
/// assembling a tensor from the chunks of a distributed checkpoint needs.
/// `item` is the bytes per element. The caller has checked that the block
/// lies inside the tensor and that the buffers have these shapes' sizes.
pub fn place_block(
    block: &[u8],
    offsets: &[usize],
    sizes: &[usize],
    shape: &[usize],
    item: usize,
    full: &mut [u8],
) {
    let dims = shape.len();
    if dims == 0 {
        full.copy_from_slice(block);
        return;
    }
    let row = sizes[dims - 1] * item;
    if row == 0 {
        return;
    }
    // Strides of the full tensor, in bytes.
    let mut strides = vec![item; dims];
    for d in (0..dims - 1).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let mut index = vec![0usize; dims - 1];
    for source in block.chunks_exact(row) {
        let start: usize = (0..dims)
            .map(|d| (offsets[d] + if d < dims - 1 { index[d] } else { 0 }) * strides[d])
            .sum();
        full[start..start + row].copy_from_slice(source);
        // Next row: the odometer over the outer dimensions.
        for d in (0..dims - 1).rev() {
            index[d] += 1;
            if index[d] < sizes[d] {
                break;
            }
            index[d] = 0;
        }
    }
}
