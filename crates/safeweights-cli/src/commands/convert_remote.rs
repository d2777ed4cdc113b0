//! `convert` with a URL on either side. A remote input is downloaded whole
//! into a temporary directory (the pickle, zip and GGUF readers need whole
//! files): one file; a sharded checkpoint's index with every shard it
//! lists beside it; or the checkpoints in a prefix ("directory"), chosen
//! as in a local model directory. An `s3://` output is written to a
//! temporary directory and uploaded file by file by multipart upload (each
//! object appears only when it is complete; shards go up before the index
//! that names them). Safetensors to GGUF streams instead (see
//! `convert_gguf_stream`).

use std::path::{Path, PathBuf};

use safeweights::remote::{fetch_to_dir, list_directory, object_exists, upload_file};
use safeweights::resolve::{is_index_text, is_url};
use safeweights::shards::ShardIndex;
use safeweights_convert::gguf::GgufReport;
use safeweights_convert::{
    default_output, directory_inputs, inputs_among, is_torch_dcp_directory, ConvertOptions,
    ConvertReport, HF_BIN, HF_BIN_INDEX,
};
use serde_json::json;
use tempfile::TempDir;

use crate::cli::ConvertArgs;
use crate::commands::{Context, Out};
use crate::destination::{already_exists, check_destination};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{progress, write_json};
use crate::source::{max_fetch_bytes, remote_options, with_download_bar};

fn url_of(path: &Path) -> Option<&str> {
    path.to_str().filter(|text| is_url(text))
}

fn is_s3(url: &str) -> bool {
    url.to_ascii_lowercase().starts_with("s3://")
}

/// Whether the input or the output is a URL.
pub fn applies(args: &ConvertArgs) -> bool {
    url_of(&args.input).is_some() || args.output.as_deref().and_then(url_of).is_some()
}

/// The last segment of a URL's path (without a query string): the
/// object's file name.
fn file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or(path)
}

/// A conversion's report, whichever the input format.
enum Converted {
    Pickle(ConvertReport),
    Gguf(GgufReport),
}

impl Converted {
    fn files_mut(&mut self) -> &mut Vec<PathBuf> {
        match self {
            Converted::Pickle(report) => &mut report.files,
            Converted::Gguf(report) => &mut report.files,
        }
    }
}

/// Runs a conversion whose input or output is a URL.
pub fn run(ctx: Context, args: &ConvertArgs, options: &ConvertOptions, out: &mut Out) -> CliResult {
    let input_url = url_of(&args.input);
    let output_url = args.output.as_deref().and_then(url_of);
    if output_url.is_some_and(|url| !is_s3(url)) {
        return Err(CliError::usage("only s3:// URLs can be written"));
    }
    let temp = |what: &str| {
        tempfile::tempdir().map_err(|e| CliError::from(e).at(format!("the temporary {what}")))
    };
    // Refuse an existing output before downloading anything (a prefix is
    // checked file by file before the uploads).
    if let Some(url) = output_url.filter(|url| !url.ends_with('/')) {
        check_destination(url, args.force, &ctx)?;
    }
    let downloads = temp("download directory")?;
    let (inputs, directory) = match input_url {
        Some(url) => fetch_inputs(url, downloads.path(), &ctx)?,
        // torch's default DCP directory is one checkpoint, not a folder of them.
        None if args.input.is_dir() && !is_torch_dcp_directory(&args.input) => (
            directory_inputs(&args.input)
                .map_err(|e| CliError::from(e).at(args.input.display()))?,
            true,
        ),
        None => (vec![args.input.clone()], false),
    };
    let staging = output_url.map(|_| temp("directory")).transpose()?;
    let job = Job {
        ctx,
        args,
        options,
        input_url,
        output_url,
        staging: staging.as_ref(),
        downloads: downloads.path(),
    };
    if directory {
        return job.directory(&inputs, out);
    }
    let input = &inputs[0];
    let output: PathBuf = match (output_url, &staging, &args.output) {
        (Some(url), Some(dir), _) => dir.path().join(file_name(url)),
        (_, _, Some(path)) => path.clone(),
        // A URL input without an output: its file name, here.
        _ => default_output(Path::new(file_name(input_url.unwrap_or_default()))),
    };
    let shown = args.input.display().to_string();
    let mut converted = job.convert(input, &shown, &output)?;
    if let Some(url) = output_url {
        let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
        let files = converted.files_mut();
        *files = upload_all(files, base, args.force, &ctx)?;
    }
    match &converted {
        Converted::Pickle(report) => super::convert::print_one(ctx, out, &shown, report)?,
        Converted::Gguf(report) => {
            super::convert_gguf::print_gguf_report(ctx, out, &shown, report)?
        }
    }
    Ok(Status::Success)
}

/// One `convert` run with a URL involved.
struct Job<'a> {
    ctx: Context,
    args: &'a ConvertArgs,
    options: &'a ConvertOptions,
    input_url: Option<&'a str>,
    output_url: Option<&'a str>,
    staging: Option<&'a TempDir>,
    downloads: &'a Path,
}

impl Job<'_> {
    /// Converts one local (or downloaded) input; errors name the input as
    /// the user named it, never the temporary directory.
    fn convert(&self, input: &Path, shown: &str, output: &Path) -> CliResult<Converted> {
        let named = |mut error: CliError| {
            if let Some(url) = self.input_url {
                let base = url.trim_end_matches('/');
                let base = if self.input_url.is_some_and(|u| u.ends_with('/')) {
                    base
                } else {
                    base.rsplit_once('/').map_or(base, |(dir, _)| dir)
                };
                let local = self.downloads.display().to_string();
                error.message = error.message.replace(&local, base);
                error.path = error.path.map(|p| p.replace(&local, base));
            }
            error
        };
        if crate::gguf::is_gguf(input) {
            let report = super::convert_gguf::gguf_to_files(self.ctx, self.args, input, output)
                .map_err(named)?;
            return Ok(Converted::Gguf(report));
        }
        let report =
            super::convert::convert_one(input, shown, output, self.options).map_err(named)?;
        Ok(Converted::Pickle(report))
    }

    /// Converts every checkpoint of a model directory (local, or fetched
    /// from a prefix), each to Hugging Face's safetensors name in the
    /// output directory (a prefix for an `s3://` output).
    fn directory(&self, inputs: &[PathBuf], out: &mut Out) -> CliResult {
        let mut reports = Vec::with_capacity(inputs.len());
        for input in inputs {
            let beside = default_output(input);
            let name = beside
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let output = match (self.staging, &self.args.output) {
                (Some(dir), _) => dir.path().join(&name),
                (None, Some(dir)) => {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| CliError::from(e).at(dir.display()))?;
                    dir.join(&name)
                }
                (None, None) => PathBuf::from(&name),
            };
            let input_name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shown = match self.input_url {
                Some(url) => format!("{}/{input_name}", url.trim_end_matches('/')),
                None => input.display().to_string(),
            };
            let mut converted = self.convert(input, &shown, &output)?;
            if let Some(url) = self.output_url {
                let files = converted.files_mut();
                let staged = std::mem::take(files);
                *files = upload_all(
                    &staged,
                    url.trim_end_matches('/'),
                    self.args.force,
                    &self.ctx,
                )?;
                for file in staged {
                    std::fs::remove_file(&file).ok();
                }
            }
            let Converted::Pickle(report) = &converted else {
                return Err(CliError::usage(format!(
                    "{shown}: a GGUF file in a directory converts on its own; name it"
                )));
            };
            if !self.ctx.json {
                super::convert::print_one(self.ctx, out, &shown, report)?;
            }
            reports.push(super::convert::report_json(&shown, report));
        }
        if self.ctx.json {
            let input = self.args.input.display().to_string();
            write_json(out, &json!({"input": input, "conversions": reports}))?;
        }
        Ok(Status::Success)
    }
}

/// Downloads what a URL names into `dir`: one file, an index with its
/// shards, or the checkpoints under a prefix. Returns the local inputs and
/// whether the URL was a directory.
fn fetch_inputs(url: &str, dir: &Path, ctx: &Context) -> CliResult<(Vec<PathBuf>, bool)> {
    let Some(prefix) = directory_prefix(url, ctx)? else {
        return Ok((vec![fetch_one(url, dir, ctx)?], false));
    };
    let names = if is_s3(&prefix) {
        list_directory(&prefix, &remote_options(ctx))?
    } else {
        // An HTTP server cannot list: look for Hugging Face's names.
        let mut found = Vec::new();
        for name in [HF_BIN_INDEX, HF_BIN] {
            if object_exists(&format!("{prefix}{name}"), &remote_options(ctx))? {
                found.push(name.to_owned());
            }
        }
        found
    };
    let chosen = inputs_among(&names).map_err(|e| CliError::from(e).at(&prefix))?;
    let mut inputs = Vec::with_capacity(chosen.len());
    for name in chosen {
        inputs.push(fetch_one(&format!("{prefix}{name}"), dir, ctx)?);
    }
    Ok((inputs, true))
}

/// The prefix (ending in `/`) when `url` names a directory: it ends with
/// `/`, or (`s3://`) no object has its name but objects sit under it.
fn directory_prefix(url: &str, ctx: &Context) -> CliResult<Option<String>> {
    if url.ends_with('/') {
        return Ok(Some(url.to_owned()));
    }
    let remote = remote_options(ctx);
    if !is_s3(url) || object_exists(url, &remote)? {
        return Ok(None);
    }
    let prefix = format!("{url}/");
    let listed = list_directory(&prefix, &remote)?;
    Ok((!listed.is_empty()).then_some(prefix))
}

/// Downloads one object into `dir` under its own name; for a sharded
/// checkpoint's index, every shard it lists too, beside it, where the
/// converter looks for them.
fn fetch_one(url: &str, dir: &Path, ctx: &Context) -> CliResult<PathBuf> {
    let name = match file_name(url) {
        "" | "." | ".." => "input",
        name => name,
    };
    let path = download(url, dir, name, ctx)?;
    let mut prefix = [0u8; 64];
    let read = std::fs::File::open(&path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut prefix))
        .map_err(|e| CliError::from(e).at(url))?;
    if !is_index_text(&prefix[..read]) {
        return Ok(path);
    }
    let text = std::fs::read(&path).map_err(|e| CliError::from(e).at(url))?;
    let text = String::from_utf8(text)
        .map_err(|_| CliError::invalid(format!("{url}: the index file is not UTF-8 text")))?;
    let index = ShardIndex::from_json(&text).map_err(|e| CliError::from(e).at(url))?;
    let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
    for shard in index.shard_files() {
        // `ShardIndex` refuses shard names that are not plain file names,
        // so every shard lands inside `dir`.
        download(&format!("{base}/{shard}"), dir, shard, ctx)?;
    }
    Ok(path)
}

fn download(url: &str, dir: &Path, name: &str, ctx: &Context) -> CliResult<PathBuf> {
    with_download_bar(|progress| {
        fetch_to_dir(
            url,
            dir,
            name,
            &remote_options(ctx),
            max_fetch_bytes(),
            progress,
        )
    })
}

/// Uploads each written file beside the others under `base`, in order (the
/// index comes last), returning their URLs. Without `force`, every
/// destination is checked before the first upload, so a refusal uploads
/// nothing.
fn upload_all(
    files: &[PathBuf],
    base: &str,
    force: bool,
    ctx: &Context,
) -> CliResult<Vec<PathBuf>> {
    let remote = remote_options(ctx);
    let urls: Vec<String> = files
        .iter()
        .map(|file| {
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            format!("{base}/{name}")
        })
        .collect();
    if !force {
        for url in &urls {
            if object_exists(url, &remote)? {
                return Err(already_exists(url));
            }
        }
    }
    for (file, url) in files.iter().zip(&urls) {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let bar = progress(len, "uploading");
        upload_file(file, url, &remote, |n| bar.inc(n))?;
        bar.finish_and_clear();
    }
    Ok(urls.into_iter().map(PathBuf::from).collect())
}
