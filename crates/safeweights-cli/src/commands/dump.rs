//! `dump`: print a tensor's values numpy-style, or write its raw bytes.

use std::io::Write;

use safeweights::slice::{self, SliceArg};
use serde_json::{json, Value};

use crate::cli::DumpArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliResult, Status};
use crate::output::write_json;
use crate::source::Checkpoint;
use crate::values::{cell_at, format_array, Cell};

/// Runs `dump`.
pub fn run(ctx: Context, args: &DumpArgs, out: &mut Out) -> CliResult {
    let checkpoint = Checkpoint::open(&args.file, ctx.timeout)?;
    let entry = checkpoint.find(&args.tensor)?;
    let info = entry.info;
    let spec: &[SliceArg] = args.slice.as_ref().map_or(&[], |s| &s.0);
    let dims = slice::resolve(&info.name, &info.shape, spec)?;
    let len = slice::output_len(&info.name, info.dtype, &info.shape, &dims)?;
    // Fetch only the byte span the slice touches, then gather its runs.
    let mut span = (u64::MAX, 0u64);
    slice::for_each_run(&info.name, info.dtype, &info.shape, &dims, |offset, run| {
        span = (span.0.min(offset as u64), span.1.max((offset + run) as u64));
        Ok(())
    })?;
    let mut bytes = Vec::with_capacity(len);
    if span.0 < span.1 {
        let source = checkpoint.read(entry, span.0, span.1 - span.0)?;
        slice::for_each_run(&info.name, info.dtype, &info.shape, &dims, |offset, run| {
            let start = offset - span.0 as usize;
            bytes.extend_from_slice(&source[start..start + run]);
            Ok(())
        })?;
    }
    let shape = slice::output_shape(&dims);
    if args.raw {
        out.write_all(&bytes)?;
        return Ok(Status::Success);
    }
    let cell = |i: usize| cell_at(info.dtype, &bytes, i);
    if ctx.json {
        let numel: usize = shape.iter().product();
        let flat: Vec<Cell> = (0..numel).map(cell).collect();
        let mut doc = json!({
            "name": info.name,
            "dtype": info.dtype.name(),
            "shape": shape,
            "values": nest(&shape, &flat),
        });
        if let Some(http) = checkpoint.http_json() {
            doc["http"] = http;
        }
        write_json(out, &doc)?;
    } else {
        writeln!(out, "{}", format_array(&shape, cell))?;
    }
    Ok(Status::Success)
}

/// Nested JSON arrays of `cells` with the given shape.
fn nest(shape: &[usize], cells: &[Cell]) -> Value {
    match shape.split_first() {
        None => cells.first().map_or(Value::Null, Cell::to_json),
        Some((&len, rest)) => {
            let stride: usize = rest.iter().product();
            Value::Array(
                (0..len)
                    .map(|i| nest(rest, cells.get(i * stride..(i + 1) * stride).unwrap_or(&[])))
                    .collect(),
            )
        }
    }
}
