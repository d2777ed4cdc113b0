//! `stats`: per-tensor summary statistics, streamed on all cores.

use std::io::Write;

use safeweights::analysis::Summary;
use serde_json::{json, Value};

use crate::cli::StatsArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{
    float, json_float, print_error, shape_string, write_json, Painter, Table, RED,
};
use crate::parallel::{run_indexed, split, thread_count, ReadAhead};
use crate::pattern::Selection;
use crate::source::{Checkpoint, Entry};

/// Runs `stats`.
pub fn run(ctx: Context, args: &StatsArgs, out: &mut Out) -> CliResult {
    let checkpoint = if crate::gguf::is_gguf(&args.file) {
        Checkpoint::open_dequantized(&args.file.to_string_lossy(), &ctx)?
    } else {
        Checkpoint::open_path(&args.file, &ctx)?
    };
    let selection = Selection::new(&args.tensors, &[]);
    let entries: Vec<Entry<'_>> = checkpoint
        .entries()
        .into_iter()
        .filter(|e| selection.contains(e.info.name))
        .collect();
    if entries.is_empty() && !args.tensors.is_empty() {
        return Err(CliError::usage(format!(
            "no tensor matches {}",
            args.tensors.join(" or ")
        )));
    }
    let summaries = summarize(&checkpoint, &entries, thread_count(args.threads))?;
    let non_finite: Vec<&str> = entries
        .iter()
        .zip(&summaries)
        .filter(|(_, s)| !s.all_finite())
        .map(|(e, _)| e.info.name)
        .collect();
    if ctx.json {
        let tensors: Vec<Value> = entries
            .iter()
            .zip(&summaries)
            .map(|(e, s)| summary_json(e, s))
            .collect();
        write_json(
            out,
            &json!({"tensors": tensors, "all_finite": non_finite.is_empty()}),
        )?;
    } else {
        print_table(out, &entries, &summaries)?;
    }
    if args.check_finite && !non_finite.is_empty() {
        print_error(&format!(
            "{} tensor(s) hold NaN or infinite values: {}",
            non_finite.len(),
            non_finite.join(", ")
        ));
        return Ok(Status::Negative);
    }
    Ok(Status::Success)
}

/// Summaries of `entries`, in order, computed piece by piece on `threads`.
fn summarize(
    checkpoint: &Checkpoint,
    entries: &[Entry<'_>],
    threads: usize,
) -> CliResult<Vec<Summary>> {
    let pieces = split(entries);
    let total: u64 = pieces.iter().map(|p| p.len).sum();
    let bar = checkpoint.progress(total, "stats");
    let ahead = ReadAhead::new(checkpoint, entries);
    let partial = run_indexed(pieces.len(), threads, |i| {
        let piece = pieces[i];
        let entry = entries[piece.tensor];
        ahead.reached(piece.tensor, piece.offset);
        let bytes = checkpoint.read(entry, piece.offset, piece.len)?;
        let mut scratch = Vec::new();
        let summary = Summary::of_bytes(entry.info.dtype, &bytes, &mut scratch);
        bar.inc(piece.len);
        Ok(summary)
    })?;
    bar.finish_and_clear();
    let mut summaries = vec![Summary::default(); entries.len()];
    for (piece, summary) in pieces.iter().zip(&partial) {
        summaries[piece.tensor].merge(summary);
    }
    Ok(summaries)
}

fn summary_json(entry: &Entry<'_>, s: &Summary) -> Value {
    let opt = |v: Option<f64>| v.map_or(Value::Null, json_float);
    json!({
        "name": entry.info.name,
        "dtype": entry.info.dtype.name(),
        "shape": entry.info.shape,
        "count": s.count,
        "min": opt(s.min()),
        "max": opt(s.max()),
        "mean": opt(s.mean()),
        "std": opt(s.std()),
        "nan": s.nan,
        "pos_inf": s.pos_inf,
        "neg_inf": s.neg_inf,
        "zeros": s.zeros,
    })
}

fn print_table(out: &mut Out, entries: &[Entry<'_>], summaries: &[Summary]) -> CliResult<()> {
    let painter = Painter::stdout();
    let mut table = Table::new(
        &[
            "name", "dtype", "shape", "min", "max", "mean", "std", "nan", "+inf", "-inf", "zeros",
        ],
        &[
            false, false, false, true, true, true, true, true, true, true, true,
        ],
    );
    let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| float(round_sig(v)));
    for (e, s) in entries.iter().zip(summaries) {
        let count = |n: u64| (n.to_string(), (n > 0).then_some(RED));
        table.styled_row(vec![
            (e.info.name.to_owned(), None),
            (e.info.dtype.name().to_owned(), None),
            (shape_string(e.info.shape), None),
            (opt(s.min()), None),
            (opt(s.max()), None),
            (opt(s.mean()), None),
            (opt(s.std()), None),
            count(s.nan),
            count(s.pos_inf),
            count(s.neg_inf),
            (s.zeros.to_string(), None),
        ]);
    }
    table.write(out, painter)?;
    if entries.is_empty() {
        writeln!(out, "(no tensors)")?;
    }
    Ok(())
}

/// Rounds to 6 significant digits for the table (JSON keeps full precision).
fn round_sig(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let text = format!("{value:.5e}");
    text.parse().unwrap_or(value)
}
