//! `convert` to and from GGUF: a GGUF input (recognised by content) becomes
//! safetensors; an output named `*.gguf` is written from safetensors.

use std::io::Write;
use std::path::{Path, PathBuf};

use safeweights::resolve::is_url;
use safeweights::Dtype;
use safeweights_convert::gguf::{
    gguf_to_safetensors, safetensors_to_gguf, Arch, GgufReport, GgufToSafetensors,
    SafetensorsToGguf,
};
use safeweights_gguf::GgmlType;
use serde_json::json;

use crate::cli::ConvertArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{human_bytes, write_json, Painter, GREEN};

/// Whether this `convert` involves GGUF: a GGUF input, or a `.gguf` output.
pub fn applies(args: &ConvertArgs) -> bool {
    crate::gguf::is_gguf(&args.input) || output_is_gguf(args)
}

fn output_is_gguf(args: &ConvertArgs) -> bool {
    args.output
        .as_deref()
        .and_then(Path::extension)
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// Runs a GGUF conversion: exit 0 converted, 1 invalid input, 2 usage or I/O.
pub fn run(ctx: Context, args: &ConvertArgs, out: &mut Out) -> CliResult {
    if args.max_shard_size.is_some() || args.drop_values {
        return Err(CliError::usage(
            "--max-shard-size and --drop-values do not apply to GGUF conversions",
        ));
    }
    if crate::gguf::is_gguf(&args.input) {
        return to_safetensors(ctx, args, out);
    }
    if args.dtype.is_some() || args.keep_quantized || args.hf {
        return Err(CliError::usage(
            "--dtype, --keep-quantized and --hf apply to a GGUF input; use --outtype for a GGUF output",
        ));
    }
    to_gguf(ctx, args, out)
}

fn to_safetensors(ctx: Context, args: &ConvertArgs, out: &mut Out) -> CliResult {
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| args.input.with_extension("safetensors"));
    let report = gguf_to_files(ctx, args, &args.input, &output)?;
    let shown = args.input.display().to_string();
    print_gguf_report(ctx, out, &shown, &report)?;
    Ok(Status::Success)
}

/// Converts the GGUF file `input` to safetensors at `output` (local
/// paths), with the options of `args`.
pub(super) fn gguf_to_files(
    ctx: Context,
    args: &ConvertArgs,
    input: &Path,
    output: &Path,
) -> CliResult<GgufReport> {
    if args.outtype.is_some() || args.arch.is_some() {
        return Err(CliError::usage(
            "--outtype and --arch choose how a GGUF file is written; this input already is GGUF",
        ));
    }
    let dtype = match args
        .dtype
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => None,
        Some("f32" | "float32") => Some(Dtype::F32),
        Some("f16" | "float16") => Some(Dtype::F16),
        Some("bf16" | "bfloat16") => Some(Dtype::BF16),
        Some(other) => {
            return Err(CliError::usage(format!(
                "--dtype {other:?}: GGUF tensors can be written as f32, f16 or bf16"
            )))
        }
    };
    let mut options = GgufToSafetensors {
        dtype,
        keep_quantized: args.keep_quantized,
        hf: args.hf,
        force: args.force,
        ..GgufToSafetensors::default()
    };
    options.write.sync = ctx.sync;
    gguf_to_safetensors(input, output, &options).map_err(CliError::from)
}

/// Prints what a GGUF to safetensors conversion wrote (`report.files`: the
/// paths or URLs written).
pub(super) fn print_gguf_report(
    ctx: Context,
    out: &mut Out,
    input: &str,
    report: &GgufReport,
) -> CliResult<()> {
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    if ctx.json {
        let doc = json!({
            "input": input,
            "input_format": "gguf",
            "tensors": report.tensors,
            "converted": report.converted,
            "bytes": report.bytes,
            "files": files,
        });
        write_json(out, &doc)?;
    } else {
        let paint = Painter::stdout();
        writeln!(
            out,
            "{} {} (GGUF) -> {}: {} tensors ({} dequantized or cast), {}",
            paint.paint(GREEN, "converted"),
            input,
            files.join(", "),
            report.tensors,
            report.converted,
            human_bytes(report.bytes)
        )?;
    }
    Ok(())
}

fn parse_outtype(text: &str) -> CliResult<GgmlType> {
    let ty = match text.to_ascii_lowercase().as_str() {
        "f32" => GgmlType::F32,
        "f16" => GgmlType::F16,
        "bf16" => GgmlType::Bf16,
        "q8_0" => GgmlType::Q8_0,
        "q4_0" => GgmlType::Q4_0,
        "q4_1" => GgmlType::Q4_1,
        "q5_0" => GgmlType::Q5_0,
        "q5_1" => GgmlType::Q5_1,
        _ => {
            return Err(CliError::usage(format!(
                "--outtype {text:?}: choose f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1"
            )))
        }
    };
    Ok(ty)
}

fn to_gguf(ctx: Context, args: &ConvertArgs, out: &mut Out) -> CliResult {
    let output: PathBuf = args.output.clone().unwrap_or_default();
    let arch = match args.arch.as_deref() {
        None | Some("none") => Arch::None,
        Some("llama") => Arch::Llama,
        Some(other) => {
            return Err(CliError::usage(format!(
                "--arch {other:?}: choose llama or none"
            )))
        }
    };
    let options = SafetensorsToGguf {
        outtype: args.outtype.as_deref().map(parse_outtype).transpose()?,
        arch,
        force: args.force,
        sync: ctx.sync,
    };
    let remote = [&args.input, &output]
        .iter()
        .any(|p| p.to_str().is_some_and(is_url));
    let report = if remote {
        super::convert_gguf_stream::run(ctx, &args.input, &output, &options)?
    } else {
        safetensors_to_gguf(&args.input, &output, &options).map_err(CliError::from)?
    };
    if ctx.json {
        let doc = json!({
            "input": args.input.display().to_string(),
            "output_format": "gguf",
            "tensors": report.tensors,
            "quantized": report.quantized,
            "rebuilt": report.rebuilt,
            "files": [report.file.display().to_string()],
        });
        write_json(out, &doc)?;
    } else {
        let paint = Painter::stdout();
        let how = if report.rebuilt {
            "raw blocks rebuilt as they were".to_owned()
        } else {
            format!("{} quantized or cast", report.quantized)
        };
        writeln!(
            out,
            "{} {} -> {} (GGUF): {} tensors ({how})",
            paint.paint(GREEN, "converted"),
            args.input.display(),
            report.file.display(),
            report.tensors,
        )?;
    }
    Ok(Status::Success)
}
