//! `convert` with a URL on either side: the input is downloaded whole into
//! a temporary file (the pickle, zip and GGUF readers need the whole
//! file), the output is written to a temporary directory and uploaded
//! file by file by multipart upload (each object appears only when it is
//! complete; shards go up before the index that names them).

use std::path::{Path, PathBuf};

use safeweights::remote::upload_file;
use safeweights::resolve::is_url;
use safeweights_convert::{default_output, ConvertOptions};

use crate::cli::ConvertArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::progress;
use crate::source::{fetch_whole, remote_options};

fn url_of(path: &Path) -> Option<&str> {
    path.to_str().filter(|text| is_url(text))
}

/// Whether the input or the output is a URL.
pub fn applies(args: &ConvertArgs) -> bool {
    url_of(&args.input).is_some() || args.output.as_deref().and_then(url_of).is_some()
}

/// The last segment of a URL's path: the object's file name.
fn file_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// Runs a conversion whose input or output is a URL.
pub fn run(ctx: Context, args: &ConvertArgs, options: &ConvertOptions, out: &mut Out) -> CliResult {
    let input_url = url_of(&args.input);
    let output_url = args.output.as_deref().and_then(url_of);
    if output_url.is_some_and(|url| !url.to_ascii_lowercase().starts_with("s3://")) {
        return Err(CliError::usage("only s3:// URLs can be written"));
    }
    let fetched = input_url.map(|url| fetch_whole(url, &ctx)).transpose()?;
    let input = fetched
        .as_ref()
        .map_or_else(|| args.input.clone(), |t| t.path().to_owned());
    if input.is_dir() {
        return Err(CliError::usage(format!(
            "{}: a directory converts to local files only; convert it, then `safeweights cp` each file",
            args.input.display()
        )));
    }
    let staging = output_url
        .map(|_| tempfile::tempdir().map_err(|e| CliError::from(e).at("the temporary directory")))
        .transpose()?;
    let output: PathBuf = match (output_url, &staging, &args.output) {
        (Some(url), Some(dir), _) => dir.path().join(file_name(url)),
        (_, _, Some(path)) => path.clone(),
        // A URL input without an output: its file name, here.
        _ => default_output(Path::new(file_name(input_url.unwrap_or_default()))),
    };
    let shown = args.input.display().to_string();
    let local = ConvertArgs {
        input: input.clone(),
        output: Some(output.clone()),
        ..args.clone()
    };
    if super::convert_gguf::applies(&local) {
        if output_url.is_some() {
            return Err(CliError::usage(
                "GGUF conversions write local files; convert, then `safeweights cp` the result",
            ));
        }
        return super::convert_gguf::run(ctx, &local, out);
    }
    let mut report = super::convert::convert_one(&input, &shown, &output, options)?;
    drop(fetched);
    if let Some(url) = output_url {
        let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
        report.files = upload_all(&report.files, base, &ctx)?;
    }
    super::convert::print_one(ctx, out, &shown, &report)?;
    Ok(Status::Success)
}

/// Uploads each written file beside the others under `base`, in order (the
/// index comes last), returning their URLs.
fn upload_all(files: &[PathBuf], base: &str, ctx: &Context) -> CliResult<Vec<PathBuf>> {
    let remote = remote_options(ctx);
    let mut urls = Vec::with_capacity(files.len());
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let url = format!("{base}/{name}");
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let bar = progress(len, "uploading");
        upload_file(file, &url, &remote, |n| bar.inc(n))?;
        bar.finish_and_clear();
        urls.push(PathBuf::from(url));
    }
    Ok(urls)
}
