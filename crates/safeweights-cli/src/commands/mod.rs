//! One module per command; [`run`] dispatches.

use std::io::{self, BufWriter, StdoutLock, Write};
use std::path::Path;
use std::time::Duration;

use safeweights::format::{HeaderLimits, DEFAULT_MAX_HEADER_SIZE};
use safeweights::shards::parse_size;

use crate::cli::{Cli, Command};
use crate::exit::{CliError, CliResult};

mod checksum;
mod clean;
mod convert;
mod convert_gguf;
mod convert_gguf_stream;
mod convert_remote;
mod copy;
mod cp;
mod diff;
mod dump;
mod filter;
mod generate;
mod inspect;
mod metadata;
mod scan;
mod shard;
mod stats;
mod validate;
mod verify;

/// Settings shared by every command.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Print JSON instead of text.
    pub json: bool,
    /// Network timeout for remote files.
    pub timeout: Duration,
    /// Writers flush files and directories to disk (off with `--no-fsync`).
    pub sync: bool,
    /// Header size limit for every file read.
    pub limits: HeaderLimits,
}

/// Buffered stdout; write errors (a closed pipe) surface as `CliError`.
pub type Out = BufWriter<StdoutLock<'static>>;

/// Runs the command chosen on the command line.
pub fn run(cli: &Cli) -> CliResult {
    if !(cli.timeout.is_finite() && cli.timeout > 0.0 && cli.timeout < 1e9) {
        return Err(CliError::usage(
            "--timeout must be a positive number of seconds",
        ));
    }
    let max_header_size = match &cli.max_header_size {
        None => DEFAULT_MAX_HEADER_SIZE,
        Some(text) => parse_size(text).ok_or_else(|| {
            CliError::usage(format!(
                "--max-header-size {text:?} is not a size such as 200MB or 1GiB"
            ))
        })?,
    };
    let ctx = Context {
        json: cli.json,
        timeout: Duration::from_secs_f64(cli.timeout),
        sync: !cli.no_fsync,
        limits: HeaderLimits { max_header_size },
    };
    if let Some(path) = local_only_output(&cli.command).and_then(Path::to_str) {
        if safeweights::resolve::is_url(path) {
            return Err(CliError::usage(format!(
                "{path}: this command writes local files; write here, then `safeweights cp` the files to object storage"
            )));
        }
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let status = match &cli.command {
        Command::Inspect(args) => inspect::run(ctx, args, &mut out),
        Command::Validate(args) => validate::run(ctx, args, &mut out),
        Command::Diff(args) => diff::run(ctx, args, &mut out),
        Command::Stats(args) => stats::run(ctx, args, &mut out),
        Command::Dump(args) => dump::run(ctx, args, &mut out),
        Command::Checksum(args) => checksum::run(ctx, args, &mut out),
        Command::Verify(args) => verify::run(ctx, args, &mut out),
        Command::Metadata(args) => metadata::run(ctx, args, &mut out),
        Command::Shard(args) => shard::run_shard(ctx, args, &mut out),
        Command::Merge(args) => shard::run_merge(ctx, args, &mut out),
        Command::Consolidate(args) => {
            let limit = parse_size(&args.max_shard_size).ok_or_else(|| {
                CliError::usage(format!(
                    "--max-shard-size {:?} is not a size such as 5GB or 2GiB",
                    args.max_shard_size
                ))
            })?;
            crate::dcp::consolidate(
                ctx,
                &args.ckpt_dir,
                &args.out_dir,
                limit,
                args.force,
                &mut out,
            )
        }
        Command::Filter(args) => filter::run(ctx, args, &mut out),
        Command::Scan(args) => scan::run(ctx, args, &mut out),
        Command::Clean(args) => clean::run(ctx, args, &mut out),
        Command::Convert(args) => convert::run(ctx, args, &mut out),
        Command::Completions(args) => generate::completions(ctx, args, &mut out),
        Command::Man(args) => generate::man(ctx, args, &mut out),
        Command::Cp(args) => cp::run(ctx, args, &mut out),
    };
    // Flush even after an error, so partial output is not lost, but
    // report the command's error first.
    let flushed = out.flush();
    let status = status?;
    flushed?;
    Ok(status)
}

/// The output of a command that writes local files only (a URL there
/// would otherwise become a local path named `s3:/...`).
fn local_only_output(command: &Command) -> Option<&Path> {
    match command {
        Command::Filter(args) => Some(&args.output),
        Command::Shard(args) => Some(&args.outdir),
        Command::Merge(args) => Some(&args.output),
        Command::Consolidate(args) => Some(&args.out_dir),
        _ => None,
    }
}
