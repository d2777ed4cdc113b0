//! `shard` and `merge`: rewrite a checkpoint as bounded shards or as one
//! file, as `safeweights::shards::write_sharded` and
//! `safeweights::write::serialize_to_file` write the same tensors (byte for
//! byte but for the random checkpoint id), in the order they appear in the
//! input (shard by shard, by data offset).

use std::io::Write;
use std::path::PathBuf;

use safeweights::shards::{parse_size, publish_shards, ShardSet};
use serde_json::json;

use crate::cli::{MergeArgs, ShardArgs};
use crate::commands::copy::{write_file, write_one_file};
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;
use crate::source::{Checkpoint, Entry};

/// Runs `shard`.
pub fn run_shard(ctx: Context, args: &ShardArgs, out: &mut Out) -> CliResult {
    let max = parse_size(&args.max_shard_size).ok_or_else(|| {
        CliError::usage(format!(
            "--max-shard-size {:?}: expected a size like 5GB, 500MB, 2GiB or a byte count",
            args.max_shard_size
        ))
    })?;
    let checkpoint = Checkpoint::open_path(&args.input, &ctx)?;
    let entries = checkpoint.entries();
    let names: Vec<&str> = entries.iter().map(|e| e.info.name).collect();
    let sizes: Vec<u64> = entries.iter().map(|e| e.info.end - e.info.begin).collect();
    std::fs::create_dir_all(&args.outdir)
        .map_err(|e| CliError::from(e).at(args.outdir.display()))?;
    let set = ShardSet {
        names: &names,
        sizes: &sizes,
        max_shard_size: max,
        overwrite: args.force,
        sync: ctx.sync,
    };
    let bar = checkpoint.progress(sizes.iter().sum(), "shard");
    let written = publish_shards(
        &args.outdir,
        &set,
        checkpoint.metadata(),
        |range, metadata, path| {
            let tensors = named(&entries[range]);
            write_file(&checkpoint, &tensors, metadata, path, &bar, ctx.sync)
        },
    )?;
    bar.finish_and_clear();
    report(ctx, out, &written)
}

/// Runs `merge`.
pub fn run_merge(ctx: Context, args: &MergeArgs, out: &mut Out) -> CliResult {
    let checkpoint = Checkpoint::open_path(&args.input, &ctx)?;
    let entries = named(&checkpoint.entries());
    write_one_file(&checkpoint, &entries, &args.output, "merge", ctx.sync)?;
    report(ctx, out, std::slice::from_ref(&args.output))
}

fn named<'a>(entries: &[Entry<'a>]) -> Vec<(Entry<'a>, String)> {
    entries
        .iter()
        .map(|e| (*e, e.info.name.to_owned()))
        .collect()
}

fn report(ctx: Context, out: &mut Out, written: &[PathBuf]) -> CliResult {
    let paths: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    if ctx.json {
        write_json(out, &json!({"written": paths}))?;
    } else {
        for path in &paths {
            writeln!(out, "wrote {path}")?;
        }
    }
    Ok(Status::Success)
}
