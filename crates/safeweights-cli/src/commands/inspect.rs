//! `inspect`: the tensor table and a summary of a checkpoint.

use std::collections::BTreeMap;
use std::io::Write;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::cli::InspectArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliResult, Status};
use crate::output::{
    group_digits, human_bytes, shape_string, write_json, Columns, Painter, BOLD, DIM,
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
    let sharded = checkpoint.shard_count() > 1;
    let mut parameters = 0u64;
    let mut total_bytes = 0u64;
    let mut per_dtype: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for e in checkpoint.iter_entries() {
        parameters += e.info.numel() as u64;
        total_bytes += e.info.end - e.info.begin;
        let slot = per_dtype.entry(e.info.dtype.name()).or_default();
        slot.0 += e.info.end - e.info.begin;
        slot.1 += 1;
    }
    let tensor_count = checkpoint.tensor_count();
    let header_sizes = checkpoint.header_sizes();
    if ctx.json {
        // Keys in alphabetical order, as serde_json's maps print them.
        let mut doc = json!({
            "header_size": header_sizes.iter().sum::<u64>(),
            "metadata": checkpoint.metadata(),
            "summary": {
                "tensors": tensor_count,
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
        let shard_names: Option<Vec<String>> = sharded.then(|| {
            (0..checkpoint.shard_count())
                .map(|i| checkpoint.shard_name(i))
                .collect()
        });
        let document = InspectJson {
            head: &doc,
            tensors: TensorsJson {
                checkpoint: &checkpoint,
                shard_names: shard_names.as_deref(),
            },
        };
        write_json(out, &document)?;
        return Ok(Status::Success);
    }
    let painter = Painter::stdout();
    let mut columns = vec!["name", "dtype", "shape", "size"];
    let mut right = vec![false, false, false, true];
    if sharded {
        columns.push("shard");
        right.push(false);
    }
    let shard_names: Vec<String> = (0..checkpoint.shard_count())
        .map(|i| checkpoint.shard_name(i))
        .collect();
    let rows = || {
        checkpoint.iter_entries().map(|e| {
            let shard = sharded.then(|| (shard_names[e.shard].clone(), None));
            [
                e.info.name.to_owned(),
                e.info.dtype.name().to_owned(),
                shape_string(e.info.shape),
                human_bytes(e.info.end - e.info.begin),
            ]
            .into_iter()
            .map(|cell| (cell, None))
            .chain(shard)
        })
    };
    Columns {
        header: &columns,
        right: &right,
    }
    .write(out, painter, rows)?;
    writeln!(out)?;
    writeln!(out, "{}", painter.paint(BOLD, "summary"))?;
    writeln!(out, "  tensors     {}", group_digits(tensor_count as u64))?;
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

/// The `--json` document: the small keys of `head` and the tensor list,
/// which is written entry by entry as it is serialised, never built.
struct InspectJson<'a> {
    head: &'a Value,
    tensors: TensorsJson<'a>,
}

impl Serialize for InspectJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let head = self.head.as_object().into_iter().flatten();
        let mut map = serializer.serialize_map(None)?;
        // "tensors" sorts after every key of the head.
        for (key, value) in head {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("tensors", &self.tensors)?;
        map.end()
    }
}

struct TensorsJson<'a> {
    checkpoint: &'a Checkpoint,
    /// The shard file names, for a sharded checkpoint.
    shard_names: Option<&'a [String]>,
}

impl Serialize for TensorsJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.checkpoint.iter_entries().map(|e| TensorJson {
            data_offsets: [e.info.begin, e.info.end],
            dtype: e.info.dtype.name(),
            name: e.info.name,
            shape: e.info.shape,
            shard: self.shard_names.map(|names| names[e.shard].as_str()),
        }))
    }
}

/// One tensor, keys in alphabetical order like the rest of the output.
#[derive(Serialize)]
struct TensorJson<'a> {
    data_offsets: [u64; 2],
    dtype: &'static str,
    name: &'a str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    shard: Option<&'a str>,
}
