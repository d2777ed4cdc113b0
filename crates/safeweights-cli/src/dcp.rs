//! Distributed checkpoint directories (`safeweights.dcp`): `inspect`,
//! `validate`, `verify` and `consolidate` of a directory holding
//! `safeweights.dcp.json`. The core's [`safeweights::dcp`] opens and checks
//! them; this module prints.

use std::io::Write;
use std::path::Path;

use safeweights::dcp::{DcpCheckpoint, ObjectRecord};
use safeweights::read::{Backend, OpenOptions};
use serde_json::{json, Value};

use crate::commands::{Context, Out};
use crate::digest::{self, Algorithm, METADATA_KEY};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{
    group_digits, human_bytes, print_error, shape_string, write_json, Painter, Table, BOLD, GREEN,
};
use crate::source::Checkpoint;
use safeweights::checksum::XXH3_128_KEY;

pub use safeweights::dcp::is_dcp_directory;

fn open(path: &Path, ctx: &Context) -> CliResult<DcpCheckpoint> {
    let options = OpenOptions {
        backend: Backend::Pread,
        limits: ctx.limits,
    };
    DcpCheckpoint::open(path, &options).map_err(CliError::from)
}

/// Opens and checks a checkpoint directory; returns its chunk count.
pub fn validate(path: &Path, ctx: &Context) -> CliResult<usize> {
    let checkpoint = open(path, ctx)?;
    Ok(checkpoint.tensors().map(|(_, t)| t.chunks.len()).sum())
}

/// The JSON type of an encoded value, for the summary (`int`, `dict`...).
fn value_kind(object: &ObjectRecord) -> String {
    let root = object.value.get("root").unwrap_or(&Value::Null);
    match root {
        Value::Null => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(n) if n.is_f64() => "float".into(),
        Value::Number(_) => "int".into(),
        Value::String(_) => "str".into(),
        Value::Array(_) => "list".into(),
        Value::Object(map) => map
            .keys()
            .next()
            .map(|tag| tag.trim_start_matches('$').to_owned())
            .unwrap_or_else(|| "dict".into()),
    }
}

/// `inspect` of a checkpoint directory: ranks, files, tensors with their
/// full shapes and chunk counts, non-tensor values with their types.
pub fn inspect(ctx: Context, path: &Path, out: &mut Out) -> CliResult {
    let checkpoint = open(path, &ctx)?;
    let document = checkpoint.document();
    let mut parameters = 0u64;
    let mut bytes = 0u64;
    let mut tensors = Vec::new();
    for (name, record) in checkpoint.tensors() {
        let dtype = match record.chunks.first() {
            Some(chunk) => checkpoint.chunk(chunk)?.1.dtype.name(),
            None => "?",
        };
        let chunk_bytes: u64 = record
            .chunks
            .iter()
            .map(|c| checkpoint.chunk(c).map(|(_, i)| i.end - i.begin))
            .sum::<Result<u64, _>>()?;
        parameters += record.size.iter().map(|&n| n as u64).product::<u64>();
        bytes += chunk_bytes;
        tensors.push((name, dtype, record, chunk_bytes));
    }
    let objects: Vec<(&str, String)> = checkpoint
        .objects()
        .map(|(n, o)| (n, value_kind(o)))
        .collect();
    if ctx.json {
        let value = json!({
            "format": "safeweights.dcp",
            "save_id": document.save_id,
            "world_size": document.world_size,
            "files": document.files.iter().map(|(n, f)| json!({"name": n, "rank": f.rank, "bytes": f.bytes})).collect::<Vec<_>>(),
            "tensors": tensors.iter().map(|(name, dtype, record, b)| json!({
                "name": name, "dtype": dtype, "shape": record.size, "bytes": b,
                "chunks": record.chunks.iter().map(|c| json!({"offsets": c.offsets, "sizes": c.sizes, "file": c.file})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "values": objects.iter().map(|(n, k)| json!({"name": n, "type": k})).collect::<Vec<_>>(),
            "parameters": parameters,
            "bytes": bytes,
        });
        write_json(out, &value)?;
        return Ok(Status::Success);
    }
    let painter = Painter::stdout();
    let mut table = Table::new(
        &["tensor", "dtype", "shape", "chunks", "size"],
        &[false, false, false, true, true],
    );
    for (name, dtype, record, b) in &tensors {
        table.row(vec![
            (*name).to_owned(),
            (*dtype).to_owned(),
            shape_string(&record.size),
            record.chunks.len().to_string(),
            human_bytes(*b),
        ]);
    }
    table.write(out, painter)?;
    if !objects.is_empty() {
        writeln!(out)?;
        let mut values = Table::new(&["value", "type"], &[false, false]);
        for (name, kind) in &objects {
            values.row(vec![(*name).to_owned(), kind.clone()]);
        }
        values.write(out, painter)?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} distributed checkpoint (safeweights.dcp): {} ranks, {} files, {} tensors ({} parameters, {}), {} values",
        painter.paint(BOLD, path.display()),
        document.world_size,
        document.files.len(),
        tensors.len(),
        group_digits(parameters),
        human_bytes(bytes),
        objects.len()
    )?;
    Ok(Status::Success)
}

/// `verify` of a checkpoint directory: every shard's tensors against the
/// digests stored in it. Exit 1 on any mismatch, missing digest or
/// unreadable shard.
pub fn verify(ctx: Context, path: &Path, out: &mut Out) -> CliResult {
    let checkpoint = open(path, &ctx)?;
    let mut checked = 0usize;
    let mut problems: Vec<String> = Vec::new();
    for (name, file) in checkpoint.shards() {
        let shard_path = path.join(name);
        let shown = shard_path.display().to_string();
        // XXH3-128 digests written while saving; SHA-256 ones in
        // checkpoints saved before that.
        let metadata = file.header().metadata();
        let stored = [
            (XXH3_128_KEY, Algorithm::Xxh3_128),
            (METADATA_KEY, Algorithm::Sha256),
        ]
        .into_iter()
        .find_map(|(key, algorithm)| Some((metadata?.get(key)?, algorithm)));
        let Some((text, algorithm)) = stored else {
            problems.push(format!(
                "{shown}: no checksums stored (saved with checksums=False?)"
            ));
            continue;
        };
        let expected = digest::parse_stored(text).map_err(|e| e.at(&shown))?;
        let shard = Checkpoint::open_path(&shard_path, &ctx).map_err(|e| e.at(&shown))?;
        let actual = digest::compute_with(&shard, algorithm).map_err(|e| e.at(&shown))?;
        for (tensor, hex) in &actual {
            match expected.get(tensor) {
                Some(stored) if stored == hex => checked += 1,
                Some(_) => problems.push(format!(
                    "{shown}: tensor {tensor:?} does not match its checksum"
                )),
                None => problems.push(format!("{shown}: tensor {tensor:?} has no checksum")),
            }
        }
        for tensor in expected.keys().filter(|t| !actual.contains_key(*t)) {
            problems.push(format!(
                "{shown}: tensor {tensor:?} has a checksum but is missing"
            ));
        }
    }
    let ok = problems.is_empty();
    if ctx.json {
        write_json(
            out,
            &json!({"ok": ok, "checked": checked, "problems": problems}),
        )?;
    } else if ok {
        let painter = Painter::stdout();
        writeln!(
            out,
            "{}: {checked} tensors in {} files {}",
            path.display(),
            checkpoint.shards().len(),
            painter.paint(GREEN, "ok")
        )?;
    }
    for problem in &problems {
        print_error(problem);
    }
    Ok(Status::negative_if(!ok))
}

/// `consolidate`: full tensors in a Hugging Face layout.
pub fn consolidate(
    ctx: Context,
    path: &Path,
    output: &Path,
    max_shard_size: u64,
    force: bool,
    out: &mut Out,
) -> CliResult {
    let index = output.join(safeweights::dcp::INDEX_FILE);
    if index.exists() && !force {
        return Err(CliError::usage(format!(
            "{} exists: pass --force to replace it",
            index.display()
        )));
    }
    let checkpoint = open(path, &ctx)?;
    let options = safeweights::write::WriteOptions {
        sync: ctx.sync,
        ..Default::default()
    };
    let written = safeweights::dcp::consolidate(&checkpoint, output, max_shard_size, &options)?;
    if ctx.json {
        write_json(
            out,
            &json!({"written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>()}),
        )?;
    } else {
        for file in &written {
            writeln!(out, "{}", file.display())?;
        }
    }
    Ok(Status::Success)
}
