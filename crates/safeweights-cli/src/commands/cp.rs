//! `cp`: copy a model file between local disk and object storage, with the
//! source validated first and the destination checked after.

use std::io::Write;
use std::path::Path;

use safeweights::remote::{copy_object, download_file, upload_file};
use safeweights::resolve::is_url;
use serde_json::json;

use crate::cli::CpArgs;
use crate::commands::{Context, Out};
use crate::destination::check_destination;
use crate::exit::{CliError, CliResult, Status};
use crate::output::{fetch_progress, human_bytes, progress, write_json};
use crate::source::{remote_options, Checkpoint};

/// Runs `cp`.
pub fn run(ctx: Context, args: &CpArgs, out: &mut Out) -> CliResult {
    let (from, to) = (args.source.as_str(), args.destination.as_str());
    if !is_url(from) && !is_url(to) {
        return Err(CliError::usage(
            "neither side is a URL: use cp(1) to copy local files",
        ));
    }
    if to.ends_with('/') {
        return Err(CliError::usage(format!(
            "{to}: name the destination file, not a directory"
        )));
    }
    let source = Checkpoint::open(from, &ctx)?;
    check_destination(to, args.force, &ctx)?;
    if source.shard_count() != 1 || (!is_url(from) && Path::new(from).is_dir()) {
        return Err(CliError::usage(format!(
            "{from}: cp copies one .safetensors file; copy each shard and the index"
        )));
    }
    let total: u64 =
        source.shards()[0].header().data_start() + source.shards()[0].header().data_len();
    let header = header_summary(source.shards()[0].header());
    drop(source);
    let bar = if is_url(from) {
        fetch_progress(total, "copying")
    } else {
        progress(total, "uploading")
    };
    let remote = remote_options(&ctx);
    let written = if !is_url(to) {
        download_file(from, Path::new(to), &remote, ctx.sync, |n| bar.inc(n))?
    } else if is_url(from) {
        copy_object(from, to, &remote, |n| bar.inc(n))?
    } else {
        upload_file(Path::new(from), to, &remote, |n| bar.inc(n))?
    };
    bar.finish_and_clear();
    // Read the destination back: same length, same header.
    let copied = Checkpoint::open(to, &ctx)?;
    let same_header = header_summary(copied.shards()[0].header()) == header;
    if written != total || !same_header {
        return Err(CliError::invalid(format!(
            "{to}: the copy does not match the source ({written} of {total} bytes, headers {})",
            if same_header { "equal" } else { "differ" }
        )));
    }
    if ctx.json {
        write_json(
            out,
            &json!({"source": from, "destination": to, "bytes": written, "verified": true}),
        )?;
    } else {
        writeln!(
            out,
            "{from} -> {to}: {} copied and verified",
            human_bytes(written)
        )?;
    }
    Ok(Status::Success)
}

/// What two copies of a file must agree on: the header's length, its
/// metadata and every tensor entry.
fn header_summary(
    header: &safeweights::Header,
) -> (
    u64,
    Option<safeweights::Metadata>,
    Vec<safeweights::TensorInfo>,
) {
    (
        header.header_len(),
        header.metadata().cloned(),
        header.tensors().map(|t| t.to_info()).collect(),
    )
}
