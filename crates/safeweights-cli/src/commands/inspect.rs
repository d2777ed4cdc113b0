//! `inspect`: the tensor table and a summary of a checkpoint.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use crate::cli::InspectArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliResult, Status};
use crate::output::{
    group_digits, human_bytes, shape_string, write_json, Painter, Table, BOLD, DIM,
};
use crate::source::Checkpoint;
use crate::structure::{self, STRUCTURE_KEY};

/// Runs `inspect`.
pub fn run(ctx: Context, args: &InspectArgs, out: &mut Out) -> CliResult {
    let local = std::path::Path::new(&args.file);
    if crate::gguf::is_gguf(local) {
        return crate::gguf::inspect(ctx, local, out);
    }
    if crate::dcp::is_dcp_directory(local) {
        return crate::dcp::inspect(ctx, local, out);
    }
    let checkpoint = Checkpoint::open(&args.file, &ctx)?;
    let entries = checkpoint.entries();
    let sharded = checkpoint.shard_count() > 1;
    let parameters: u64 = entries.iter().map(|e| e.info.numel() as u64).sum();
    let total_bytes: u64 = entries.iter().map(|e| e.info.end - e.info.begin).sum();
    let mut per_dtype: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for e in &entries {
        let slot = per_dtype.entry(e.info.dtype.name()).or_default();
        slot.0 += e.info.end - e.info.begin;
        slot.1 += 1;
    }
    let header_sizes = checkpoint.header_sizes();
    if ctx.json {
        let tensors: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut t = json!({
                    "name": e.info.name,
                    "dtype": e.info.dtype.name(),
                    "shape": e.info.shape,
                    "data_offsets": [e.info.begin, e.info.end],
                });
                if sharded {
                    t["shard"] = json!(checkpoint.shard_name(e.shard));
                }
                t
            })
            .collect();
        let mut doc = json!({
            "header_size": header_sizes.iter().sum::<u64>(),
            "metadata": checkpoint.metadata(),
            "tensors": tensors,
            "summary": {
                "tensors": entries.len(),
                "parameters": parameters,
                "bytes": total_bytes,
                "bytes_per_dtype": per_dtype.iter().map(|(d, (b, _))| (*d, *b)).collect::<BTreeMap<_, _>>(),
            },
        });
        if sharded {
            doc["shards"] = (0..checkpoint.shard_count())
                .map(|i| json!({"file": checkpoint.shard_name(i), "header_size": header_sizes[i]}))
                .collect();
        }
        if let Some(http) = checkpoint.http_json() {
            doc["http"] = http;
        }
        write_json(out, &doc)?;
        return Ok(Status::Success);
    }
    let painter = Painter::stdout();
    let mut columns = vec!["name", "dtype", "shape", "size"];
    let mut right = vec![false, false, false, true];
    if sharded {
        columns.push("shard");
        right.push(false);
    }
    let mut table = Table::new(&columns, &right);
    for e in &entries {
        let mut row = vec![
            e.info.name.clone(),
            e.info.dtype.name().to_owned(),
            shape_string(&e.info.shape),
            human_bytes(e.info.end - e.info.begin),
        ];
        if sharded {
            row.push(checkpoint.shard_name(e.shard));
        }
        table.row(row);
    }
    table.write(out, painter)?;
    writeln!(out)?;
    writeln!(out, "{}", painter.paint(BOLD, "summary"))?;
    writeln!(out, "  tensors     {}", group_digits(entries.len() as u64))?;
    writeln!(out, "  parameters  {}", group_digits(parameters))?;
    writeln!(
        out,
        "  data        {} ({} bytes)",
        human_bytes(total_bytes),
        group_digits(total_bytes)
    )?;
    for (dtype, (bytes, count)) in &per_dtype {
        let noun = if *count == 1 { "tensor" } else { "tensors" };
        writeln!(
            out,
            "    {dtype:<12}{} {}",
            human_bytes(*bytes),
            painter.paint(DIM, format!("({count} {noun})"))
        )?;
    }
    writeln!(
        out,
        "  header      {} bytes",
        group_digits(header_sizes.iter().sum())
    )?;
    if sharded {
        writeln!(out, "  shards      {}", checkpoint.shard_count())?;
    }
    if let Some(remote) = checkpoint.remote_stats() {
        writeln!(
            out,
            "  fetched     {} in {} requests",
            human_bytes(remote.bytes()),
            remote.requests()
        )?;
    }
    let structure = checkpoint
        .metadata()
        .and_then(|m| m.get(STRUCTURE_KEY))
        .and_then(|text| structure::summarize(text));
    if let Some(lines) = &structure {
        writeln!(out, "{}", painter.paint(BOLD, "training checkpoint"))?;
        let width = lines
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (key, description) in lines {
            writeln!(out, "  {key:<width$}  {description}")?;
        }
    }
    match checkpoint.metadata() {
        Some(metadata) if !metadata.is_empty() => {
            writeln!(out, "{}", painter.paint(BOLD, "metadata"))?;
            for (key, value) in metadata {
                if key == STRUCTURE_KEY && structure.is_some() {
                    let note = format!(
                        "{} of JSON, summarised above; --json has all of it",
                        human_bytes(value.len() as u64)
                    );
                    writeln!(out, "  {key}: {}", painter.paint(DIM, note))?;
                } else {
                    writeln!(out, "  {key}: {value}")?;
                }
            }
        }
        _ => writeln!(out, "{}", painter.paint(DIM, "no metadata"))?,
    }
    Ok(Status::Success)
}
