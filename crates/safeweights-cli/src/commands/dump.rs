//! `dump`: print a tensor's values numpy-style, or write its raw bytes.

use std::io::Write;

use safeweights::slice::{self, SliceArg};
use serde_json::{json, Value};

use crate::cli::DumpArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;
use crate::source::Checkpoint;
use crate::values::{cell_at, format_array, Cell};

/// Runs `dump`.
pub fn run(ctx: Context, args: &DumpArgs, out: &mut Out) -> CliResult {
    let checkpoint = Checkpoint::open(&args.file, &ctx)?;
    let entry = checkpoint.find(&args.tensor)?;
    let info = entry.info;
    let spec: &[SliceArg] = args.slice.as_ref().map_or(&[], |s| &s.0);
    let selection = slice::plan(info.name, info.shape, spec)?;
    let len = slice::output_len(info.name, info.dtype, info.shape, &selection)?;
    let windows = plan_windows(|visit| {
        slice::for_each_run(
            info.name,
            info.dtype,
            info.shape,
            &selection,
            |offset, run| {
                visit(offset as u64, run as u64);
                Ok(())
            },
        )
        .map_err(CliError::from)
    })?;
    let fetched = windows
        .iter()
        .map(|&(start, end)| Ok((start, checkpoint.read(entry, start, end - start)?)))
        .collect::<CliResult<Vec<_>>>()?;
    let mut bytes = Vec::with_capacity(len);
    let mut window = 0;
    slice::for_each_run(
        info.name,
        info.dtype,
        info.shape,
        &selection,
        |offset, run| {
            // Runs come in increasing offset order, so the window holding
            // this run is the current one or a later one.
            while fetched[window].0 + fetched[window].1.len() as u64 <= offset as u64 {
                window += 1;
            }
            let start = offset - fetched[window].0 as usize;
            bytes.extend_from_slice(&fetched[window].1[start..start + run]);
            Ok(())
        },
    )?;
    selection.finish(info.name, info.dtype, &mut bytes)?;
    let shape = selection.shape();
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

/// Runs closer than this are fetched together: one request costs more than
/// downloading this many extra bytes.
const WINDOW_GAP: u64 = 64 << 10;

/// Past this many windows, one request for the whole span is cheaper.
const MAX_WINDOWS: usize = 64;

/// Groups a slice's runs (in increasing offset order) into byte windows
/// to fetch: nearby runs merge, and a slice scattered over too many
/// windows is fetched as the single span that covers it. For a local file
/// reads are borrowed from the map, so the grouping costs nothing.
fn plan_windows(
    runs: impl FnOnce(&mut dyn FnMut(u64, u64)) -> CliResult<()>,
) -> CliResult<Vec<(u64, u64)>> {
    let mut windows: Vec<(u64, u64)> = Vec::new();
    let mut span = (u64::MAX, 0u64);
    runs(&mut |offset, len| {
        let end = offset + len;
        span = (span.0.min(offset), span.1.max(end));
        let merges = windows
            .last()
            .is_some_and(|last| offset <= last.1 + WINDOW_GAP);
        if let (true, Some(last)) = (merges, windows.last_mut()) {
            last.1 = last.1.max(end);
        } else if windows.len() <= MAX_WINDOWS {
            windows.push((offset, end));
        }
    })?;
    if windows.len() > MAX_WINDOWS {
        windows = vec![span];
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn windows(runs: &[(u64, u64)]) -> Vec<(u64, u64)> {
        plan_windows(|visit| {
            runs.iter().for_each(|&(o, l)| visit(o, l));
            Ok(())
        })
        .unwrap()
    }

    #[test]
    fn nearby_runs_merge_and_far_ones_get_their_own_window() {
        assert_eq!(
            windows(&[(0, 4), (8, 4), (1 << 20, 4)]),
            vec![(0, 12), (1 << 20, (1 << 20) + 4)]
        );
        assert_eq!(windows(&[]), vec![]);
    }

    #[test]
    fn too_many_windows_become_one_span() {
        let runs: Vec<(u64, u64)> = (0..1000).map(|i| (i << 20, 4)).collect();
        assert_eq!(windows(&runs), vec![(0, (999 << 20) + 4)]);
    }
}
