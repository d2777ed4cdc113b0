//! `diff`: compare two checkpoints tensor by tensor, and their metadata.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use safeweights::analysis::{Comparison, Tolerance};
use safeweights::Metadata;
use serde_json::{json, Value};

use crate::cli::DiffArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{
    fetch_progress, float, group_digits, json_float, progress, shape_string, write_json, Painter,
    GREEN, RED, YELLOW,
};
use crate::parallel::{run_indexed, split, thread_count};
use crate::pattern::Selection;
use crate::source::{Checkpoint, Entry};

/// A tensor present in both checkpoints with the same dtype and shape.
struct Compared {
    name: String,
    identical: bool,
    comparison: Comparison,
}

/// Runs `diff`.
pub fn run(ctx: Context, args: &DiffArgs, out: &mut Out) -> CliResult {
    for (flag, value) in [("--atol", args.atol), ("--rtol", args.rtol)] {
        if !(value.is_finite() && value >= 0.0) {
            return Err(CliError::usage(format!(
                "{flag} must be a non-negative number"
            )));
        }
    }
    let tolerance = Tolerance {
        atol: args.atol,
        rtol: args.rtol,
        equal_nan: args.equal_nan,
    };
    let a = Checkpoint::open_dequantized(&args.a, &ctx)?;
    let b = Checkpoint::open_dequantized(&args.b, &ctx)?;
    let selection = Selection::new(&args.tensors, &[]);
    let index = |c: &'_ Checkpoint| -> BTreeMap<String, ()> {
        c.entries()
            .into_iter()
            .filter(|e| selection.contains(e.info.name))
            .map(|e| (e.info.name.to_owned(), ()))
            .collect()
    };
    let (names_a, names_b) = (index(&a), index(&b));
    let only_a: Vec<&String> = names_a
        .keys()
        .filter(|n| !names_b.contains_key(*n))
        .collect();
    let only_b: Vec<&String> = names_b
        .keys()
        .filter(|n| !names_a.contains_key(*n))
        .collect();
    let mut dtype_changed = Vec::new();
    let mut shape_changed = Vec::new();
    let mut pairs = Vec::new();
    for name in names_a.keys().filter(|n| names_b.contains_key(*n)) {
        let (ea, eb) = (a.find(name)?, b.find(name)?);
        if ea.info.dtype != eb.info.dtype {
            dtype_changed
                .push(json!({"name": name, "a": ea.info.dtype.name(), "b": eb.info.dtype.name()}));
            // Same values in another dtype: compare them, to measure the cast.
            if ea.info.shape == eb.info.shape && comparable_across(ea, eb) {
                pairs.push((ea, eb));
            }
        } else if ea.info.shape != eb.info.shape {
            shape_changed.push(json!({"name": name, "a": ea.info.shape, "b": eb.info.shape}));
        } else {
            pairs.push((ea, eb));
        }
    }
    let compared = compare_all(&a, &b, &pairs, &tolerance)?;
    let metadata = metadata_diff(a.metadata(), b.metadata());
    let metadata_equal = metadata["equal"] == json!(true);
    let equal = only_a.is_empty()
        && only_b.is_empty()
        && dtype_changed.is_empty()
        && shape_changed.is_empty()
        && compared.iter().all(|c| c.comparison.is_equal())
        && metadata_equal;
    if ctx.json {
        let tensors: Vec<Value> = pairs
            .iter()
            .zip(&compared)
            .map(|((e, other), c)| {
                // B's dtype when the values were compared across dtypes.
                let dtype_b = (e.info.dtype != other.info.dtype).then(|| other.info.dtype.name());
                json!({
                    "name": c.name,
                    "dtype": e.info.dtype.name(),
                    "dtype_b": dtype_b,
                    "shape": e.info.shape,
                    "identical": c.identical,
                    "equal": c.comparison.is_equal(),
                    "values": c.comparison.values,
                    "differing": c.comparison.differing,
                    "max_abs_diff": json_float(c.comparison.max_abs_diff),
                    "mean_abs_diff": json_float(c.comparison.mean_abs_diff()),
                })
            })
            .collect();
        let mut doc = json!({
            "equal": equal,
            "only_in_a": only_a,
            "only_in_b": only_b,
            "dtype_changed": dtype_changed,
            "shape_changed": shape_changed,
            "tensors": tensors,
            "metadata": metadata,
        });
        if let Some(http) = a.http_json() {
            doc["http_a"] = http;
        }
        if let Some(http) = b.http_json() {
            doc["http_b"] = http;
        }
        write_json(out, &doc)?;
    } else {
        let p = Painter::stdout();
        for name in &only_a {
            writeln!(out, "{}", p.paint(RED, format!("- {name}: only in A")))?;
        }
        for name in &only_b {
            writeln!(out, "{}", p.paint(GREEN, format!("+ {name}: only in B")))?;
        }
        let across: BTreeMap<&str, &Comparison> = compared
            .iter()
            .filter(|c| !c.identical)
            .map(|c| (c.name.as_str(), &c.comparison))
            .collect();
        for change in &dtype_changed {
            let name = str_of(&change["name"]);
            let mut line = format!(
                "~ {name}: dtype {} -> {}",
                str_of(&change["a"]),
                str_of(&change["b"])
            );
            if let Some(cmp) = across.get(name) {
                line.push_str(&format!(
                    "; {} of {} values differ (max abs diff {}, mean abs diff {})",
                    group_digits(cmp.differing),
                    group_digits(cmp.values),
                    float(cmp.max_abs_diff),
                    float(cmp.mean_abs_diff())
                ));
            }
            writeln!(out, "{}", p.paint(YELLOW, line))?;
        }
        for change in &shape_changed {
            let dims =
                |v: &Value| -> Vec<usize> { serde_json::from_value(v.clone()).unwrap_or_default() };
            let line = format!(
                "~ {}: shape {} -> {}",
                str_of(&change["name"]),
                shape_string(&dims(&change["a"])),
                shape_string(&dims(&change["b"]))
            );
            writeln!(out, "{}", p.paint(YELLOW, line))?;
        }
        let mut identical = 0;
        for ((e, other), c) in pairs.iter().zip(&compared) {
            let cmp = &c.comparison;
            if e.info.dtype != other.info.dtype {
                // Reported with the dtype change above.
                continue;
            } else if c.identical {
                identical += 1;
            } else if cmp.is_equal() {
                writeln!(
                    out,
                    "= {}: equal within tolerance (max abs diff {}, mean abs diff {})",
                    c.name,
                    float(cmp.max_abs_diff),
                    float(cmp.mean_abs_diff())
                )?;
            } else {
                let line = format!(
                    "~ {} {} {}: {} of {} values differ (max abs diff {}, mean abs diff {})",
                    c.name,
                    e.info.dtype,
                    shape_string(e.info.shape),
                    group_digits(cmp.differing),
                    group_digits(cmp.values),
                    float(cmp.max_abs_diff),
                    float(cmp.mean_abs_diff())
                );
                writeln!(out, "{}", p.paint(YELLOW, line))?;
            }
        }
        for (key, value) in metadata["only_in_a"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "{}",
                p.paint(RED, format!("- metadata {key} = {value}"))
            )?;
        }
        for (key, value) in metadata["only_in_b"].as_object().into_iter().flatten() {
            writeln!(
                out,
                "{}",
                p.paint(GREEN, format!("+ metadata {key} = {value}"))
            )?;
        }
        for (key, change) in metadata["changed"].as_object().into_iter().flatten() {
            let line = format!("~ metadata {key}: {} -> {}", change["a"], change["b"]);
            writeln!(out, "{}", p.paint(YELLOW, line))?;
        }
        let verdict = if equal {
            p.paint(GREEN, "equal")
        } else {
            p.paint(RED, "different")
        };
        let same_dtype = pairs
            .iter()
            .filter(|(x, y)| x.info.dtype == y.info.dtype)
            .count();
        writeln!(
            out,
            "{verdict}: {identical} of {same_dtype} common tensors byte-identical"
        )?;
    }
    Ok(Status::negative_if(!equal))
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Compares every pair piece by piece on all cores. Byte-identical pieces
/// skip decoding; they are decoded in a second pass only when the rest of
/// their tensor differs, for exact counts and means. Byte-identical tensors
/// are always equal.
fn compare_all(
    a: &Checkpoint,
    b: &Checkpoint,
    pairs: &[(Entry<'_>, Entry<'_>)],
    tolerance: &Tolerance,
) -> CliResult<Vec<Compared>> {
    let left: Vec<Entry<'_>> = pairs.iter().map(|p| p.0).collect();
    let pieces = split(&left);
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    let bar = if a.is_remote() || b.is_remote() {
        fetch_progress(total, "diff")
    } else {
        progress(total, "diff")
    };
    let compare_piece = |i: usize, skip_identical: bool| -> CliResult<Option<Comparison>> {
        let piece = pieces[i];
        let (ea, eb) = pairs[piece.tensor];
        let (da, db) = (ea.info.dtype, eb.info.dtype);
        let x = a.read(ea, piece.offset, piece.len)?;
        let mut scratch = (Vec::new(), Vec::new());
        if da != db {
            // The same elements of B: pieces hold whole elements of A.
            let (size_a, size_b) = ((da.bits() / 8) as u64, (db.bits() / 8) as u64);
            let y = b.read(
                eb,
                piece.offset / size_a * size_b,
                piece.len / size_a * size_b,
            )?;
            let comparison =
                Comparison::of_bytes_across((da, &x), (db, &y), tolerance, &mut scratch);
            bar.inc(piece.len);
            return Ok(Some(comparison));
        }
        let y = b.read(eb, piece.offset, piece.len)?;
        if skip_identical && x == y {
            bar.inc(piece.len);
            return Ok(None);
        }
        let comparison = Comparison::of_bytes(da, &x, &y, tolerance, &mut scratch);
        bar.inc(piece.len);
        Ok(Some(comparison))
    };
    let threads = thread_count(None);
    let mut partial = run_indexed(pieces.len(), threads, |i| compare_piece(i, true))?;
    let mut identical = vec![true; pairs.len()];
    for (piece, result) in pieces.iter().zip(&partial) {
        identical[piece.tensor] &= result.is_none();
    }
    let redo: Vec<usize> = (0..pieces.len())
        .filter(|&i| partial[i].is_none() && !identical[pieces[i].tensor])
        .collect();
    let redone = run_indexed(redo.len(), threads, |k| compare_piece(redo[k], false))?;
    for (i, result) in redo.into_iter().zip(redone) {
        partial[i] = result;
    }
    bar.finish_and_clear();
    let mut results: Vec<Compared> = pairs
        .iter()
        .zip(identical)
        .map(|((e, _), identical)| Compared {
            name: e.info.name.to_owned(),
            identical,
            comparison: Comparison::identical(if identical { values_of(e) } else { 0 }),
        })
        .collect();
    for (piece, result) in pieces.iter().zip(partial) {
        if let Some(comparison) = result {
            results[piece.tensor].comparison.merge(&comparison);
        }
    }
    Ok(results)
}

/// Whether two tensors of different dtypes can be compared value by value:
/// whole-byte elements that decode to as many values each.
fn comparable_across(a: Entry<'_>, b: Entry<'_>) -> bool {
    use safeweights::analysis::decode::values_per_element;
    let whole = |e: Entry<'_>| e.info.dtype.bits().is_multiple_of(8);
    whole(a) && whole(b) && values_per_element(a.info.dtype) == values_per_element(b.info.dtype)
}

/// Number of values a tensor decodes to.
fn values_of(entry: &Entry<'_>) -> u64 {
    (entry.info.numel() * safeweights::analysis::decode::values_per_element(entry.info.dtype))
        as u64
}

/// `{"equal", "only_in_a", "only_in_b", "changed": {key: {"a", "b"}}}`.
fn metadata_diff(a: Option<&Metadata>, b: Option<&Metadata>) -> Value {
    let empty = Metadata::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut only_a = serde_json::Map::new();
    let mut only_b = serde_json::Map::new();
    let mut changed = serde_json::Map::new();
    for key in keys {
        match (a.get(key), b.get(key)) {
            (Some(x), None) => {
                only_a.insert(key.clone(), json!(x));
            }
            (None, Some(y)) => {
                only_b.insert(key.clone(), json!(y));
            }
            (Some(x), Some(y)) if x != y => {
                changed.insert(key.clone(), json!({"a": x, "b": y}));
            }
            _ => {}
        }
    }
    let equal = only_a.is_empty() && only_b.is_empty() && changed.is_empty();
    json!({"equal": equal, "only_in_a": only_a, "only_in_b": only_b, "changed": changed})
}
