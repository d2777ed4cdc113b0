//! Safetensors to GGUF with a URL on either side, streamed both ways: the
//! input (a file, an index and its shards, or an `s3://` prefix holding
//! them) is read tensor by tensor by ranged requests, and an `s3://`
//! output is written by multipart upload as the GGUF writer produces it,
//! so neither the input nor the output is ever on disk or whole in
//! memory. The object appears only when the upload completes.

use std::io::BufWriter;
use std::path::Path;

use safeweights::remote::{fetch_to_temp, unwrap_io, RemoteWriter};
use safeweights::resolve::is_url;
use safeweights::write::AtomicFile;
use safeweights_convert::gguf::{write_gguf, Arch, GgufSource, GgufWriteReport, SafetensorsToGguf};
use serde_json::Value as Json;

use crate::commands::Context;
use crate::destination::check_destination;
use crate::exit::{CliError, CliResult};
use crate::source::{max_fetch_bytes, remote_options, Checkpoint};

/// Converts `input` to the GGUF file `output`, either of them a URL.
pub fn run(
    ctx: Context,
    input: &Path,
    output: &Path,
    options: &SafetensorsToGguf,
) -> CliResult<GgufWriteReport> {
    let (input_text, output_text) = (input.to_string_lossy(), output.to_string_lossy());
    let output_url = is_url(&output_text).then_some(output_text.as_ref());
    if output_url.is_some_and(|url| !url.to_ascii_lowercase().starts_with("s3://")) {
        return Err(CliError::usage("only s3:// URLs can be written"));
    }
    let checkpoint = Checkpoint::open(&input_text, &ctx)?;
    check_destination(&output_text, options.force, &ctx)?;
    let config = match (options.arch, is_url(&input_text)) {
        (Arch::Llama, true) => Some(remote_config(&input_text, &ctx)?),
        _ => None,
    };
    let source = GgufSource {
        checkpoint: checkpoint.sharded(),
        input,
        config: config.as_ref(),
    };
    match output_url {
        Some(url) => {
            let writer = RemoteWriter::create(url, &remote_options(&ctx))?;
            let sink = BufWriter::with_capacity(8 << 20, writer);
            let (report, sink) = write_gguf(&source, output, sink, options)?;
            // On any error above the writer was dropped: the upload aborted.
            let writer = sink
                .into_inner()
                .map_err(|e| CliError::from(unwrap_io(e.into_error())))?;
            writer.finish()?;
            Ok(report)
        }
        None => {
            let file = AtomicFile::create(output)?;
            let sink = BufWriter::with_capacity(8 << 20, file.file());
            let (report, _) = write_gguf(&source, output, sink, options)?;
            file.commit(options.sync)?;
            Ok(report)
        }
    }
}

/// The `config.json` beside a remote checkpoint (for `--arch llama`).
fn remote_config(input: &str, ctx: &Context) -> CliResult<Json> {
    let base = input.trim_end_matches('/');
    let base = if input.ends_with('/') || !base.rsplit('/').next().unwrap_or("").contains('.') {
        base
    } else {
        base.rsplit_once('/').map_or(base, |(dir, _)| dir)
    };
    let url = format!("{base}/config.json");
    let fetched = fetch_to_temp(&url, &remote_options(ctx), max_fetch_bytes(), |_, _| {})?;
    let text = std::fs::read_to_string(fetched.path()).map_err(|e| CliError::from(e).at(&url))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::invalid(format!("{url}: config.json is not JSON: {e}")))
}
