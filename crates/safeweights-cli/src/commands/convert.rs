//! `convert`: PyTorch and numpy checkpoints to safetensors, read by the
//! safe pickle reader (nothing in the input is ever executed).

use std::io::Write;
use std::path::Path;

use safeweights::shards::parse_size;
use safeweights::Dtype;
use safeweights_convert::{
    convert_with_progress, default_output, directory_inputs, is_torch_dcp_directory,
    ConvertOptions, ConvertReport, InputFormat, Stage,
};
use serde_json::json;

use crate::cli::ConvertArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{human_bytes, progress, write_json, Painter, DIM, GREEN, YELLOW};

/// Runs `convert`: exit 0 when converted, 1 when the input is unsafe or
/// invalid (nothing is written), 2 for usage and I/O errors, 3 when the
/// output fails its verification. A directory input converts the Hugging
/// Face checkpoint in it ([`directory_inputs`]) into the matching
/// safetensors layout, beside it or in the output directory.
pub fn run(ctx: Context, args: &ConvertArgs, out: &mut Out) -> CliResult {
    if super::convert_gguf::applies(args) {
        return super::convert_gguf::run(ctx, args, out);
    }
    if args.keep_quantized || args.hf || args.outtype.is_some() || args.arch.is_some() {
        return Err(CliError::usage(
            "--keep-quantized, --hf, --outtype and --arch apply to GGUF conversions only",
        ));
    }
    let mut options = options(args)?;
    options.write.sync = ctx.sync;
    if super::convert_remote::applies(args) {
        return super::convert_remote::run(ctx, args, &options, out);
    }
    // torch's default DCP directory is one checkpoint, not a folder of them.
    if !args.input.is_dir() || is_torch_dcp_directory(&args.input) {
        let output = args
            .output
            .clone()
            .unwrap_or_else(|| default_output(&args.input));
        let report = convert_one(
            &args.input,
            &args.input.display().to_string(),
            &output,
            &options,
        )?;
        print_one(ctx, out, &args.input.display().to_string(), &report)?;
        return Ok(Status::Success);
    }
    let inputs =
        directory_inputs(&args.input).map_err(|e| CliError::from(e).at(args.input.display()))?;
    if let Some(output) = &args.output {
        std::fs::create_dir_all(output).map_err(|e| CliError::from(e).at(output.display()))?;
    }
    let mut reports = Vec::with_capacity(inputs.len());
    for input in &inputs {
        let beside = default_output(input);
        let output = match (&args.output, beside.file_name()) {
            (Some(directory), Some(name)) => directory.join(name),
            _ => beside,
        };
        let report = convert_one(input, &input.display().to_string(), &output, &options)?;
        let shown = input.display().to_string();
        if !ctx.json {
            print_report(out, &shown, &report)?;
        }
        reports.push(report_json(&shown, &report));
    }
    if ctx.json {
        let doc = json!({"input": args.input.display().to_string(), "conversions": reports});
        write_json(out, &doc)?;
    }
    Ok(Status::Success)
}

/// Prints the report of one conversion (`input` as the user named it).
pub(super) fn print_one(
    ctx: Context,
    out: &mut Out,
    input: &str,
    report: &ConvertReport,
) -> CliResult<()> {
    if ctx.json {
        write_json(out, &report_json(input, report))?;
    } else {
        print_report(out, input, report)?;
    }
    Ok(())
}

/// Converts one checkpoint with a progress bar; errors name the input as
/// `shown` (a URL whose download is `input`).
pub(super) fn convert_one(
    input: &Path,
    shown: &str,
    output: &Path,
    options: &ConvertOptions,
) -> CliResult<ConvertReport> {
    let bar = progress(0, "converting");
    let report = convert_with_progress(input, output, options, &mut |p| {
        if p.stage == Stage::Verify && bar.message() != "verifying" {
            bar.set_message("verifying");
            bar.set_position(0);
        }
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
    });
    bar.finish_and_clear();
    report.map_err(|error| {
        let mut error = CliError::from(error);
        let local = input.display().to_string();
        if local != shown {
            // A download: name the URL, never the temporary file.
            error.message = error.message.replace(&local, shown);
            error.path = error.path.map(|p| p.replace(&local, shown));
        }
        error.at(shown)
    })
}

fn options(args: &ConvertArgs) -> CliResult<ConvertOptions> {
    let max_shard_size = match &args.max_shard_size {
        Some(text) => Some(parse_size(text).ok_or_else(|| {
            CliError::usage(format!(
                "--max-shard-size {text:?} is not a size such as 5GB, 500MB or 2GiB"
            ))
        })?),
        None => None,
    };
    let dtype = args.dtype.as_deref().map(parse_dtype).transpose()?;
    Ok(ConvertOptions {
        max_shard_size,
        dtype,
        force: args.force,
        verify: !args.no_verify,
        keep_checkpoint_metadata: !args.drop_values,
        ..ConvertOptions::default()
    })
}

fn parse_dtype(text: &str) -> CliResult<Dtype> {
    match text.to_ascii_lowercase().as_str() {
        "bf16" | "bfloat16" => Ok(Dtype::BF16),
        "f16" | "fp16" | "float16" | "half" => Ok(Dtype::F16),
        "f32" | "fp32" | "float32" | "float" => Ok(Dtype::F32),
        _ => Err(CliError::usage(format!(
            "--dtype {text:?}: floating tensors can be cast to bf16, f16 or f32"
        ))),
    }
}

fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::TorchZip => "torch zip checkpoint",
        InputFormat::TorchLegacy => "legacy torch checkpoint",
        InputFormat::Npy => "numpy .npy",
        InputFormat::Npz => "numpy .npz",
        InputFormat::TorchDcp => "torch distributed checkpoint (.metadata + .distcp)",
        _ => "checkpoint",
    }
}

fn print_report(out: &mut Out, input: &str, report: &ConvertReport) -> std::io::Result<()> {
    let painter = Painter::stdout();
    let shards = if report.input_files > 1 {
        format!(", {} shards", report.input_files)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{} {} {}",
        painter.paint(GREEN, "converted"),
        input,
        painter.paint(
            DIM,
            format!("({}{shards})", format_name(report.input_format))
        )
    )?;
    writeln!(
        out,
        "  {} tensors, {}{}",
        report.tensors,
        human_bytes(report.bytes),
        if report.cast > 0 {
            format!(", {} cast", report.cast)
        } else {
            String::new()
        }
    )?;
    for file in &report.files {
        writeln!(out, "  wrote {}", file.display())?;
    }
    for (alias, kept) in &report.aliases {
        writeln!(out, "  {alias} shares the bytes of {kept} (stored once)")?;
    }
    for skipped in &report.skipped {
        // An empty path is the checkpoint as a whole (its structure).
        let (label, path) = match skipped.path.as_str() {
            "" => ("not kept:", "structure"),
            path => ("not a tensor:", path),
        };
        writeln!(
            out,
            "  {} {path}: {}",
            painter.paint(YELLOW, label),
            skipped.reason
        )?;
    }
    if report.structure {
        writeln!(
            out,
            "  structure kept: safeweights.load returns what torch.load returned"
        )?;
    }
    if report.verified {
        writeln!(out, "  verified: every tensor matches the input")?;
    }
    Ok(())
}

pub(super) fn report_json(input: &str, report: &ConvertReport) -> serde_json::Value {
    json!({
        "input": input,
        "format": format_name(report.input_format),
        "input_files": report.input_files,
        "files": report.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
        "tensors": report.tensors,
        "bytes": report.bytes,
        "cast": report.cast,
        "aliases": report.aliases.iter().map(|(a, k)| json!({"alias": a, "kept": k})).collect::<Vec<_>>(),
        "skipped": report.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Vec<_>>(),
        "structure": report.structure,
        "verified": report.verified,
    })
}
