//! `validate`: check files against every rule of the format.

use std::io::Write;

use serde_json::json;

use crate::cli::ValidateArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, ErrorKind, Status};
use crate::output::{print_error, write_json, Painter, GREEN};
use crate::source::Checkpoint;

/// Runs `validate`: exit 0 if all valid, 1 if any is invalid, 2 if any
/// cannot be opened (that takes precedence: the answer is incomplete).
pub fn run(ctx: Context, args: &ValidateArgs, out: &mut Out) -> CliResult {
    let painter = Painter::stdout();
    let mut reports = Vec::with_capacity(args.files.len());
    let mut worst: Option<ErrorKind> = None;
    for path in &args.files {
        let shown = path.display().to_string();
        // GGUF by content, whatever the name; everything else as safetensors.
        let opened = if crate::gguf::is_gguf(path) {
            crate::gguf::validate(path)
        } else if crate::dcp::is_dcp_directory(path) {
            crate::dcp::validate(path, &ctx)
        } else {
            Checkpoint::open_path(path, &ctx).map(|checkpoint| checkpoint.tensor_count())
        };
        match opened {
            Ok(tensors) => {
                if !ctx.json {
                    writeln!(
                        out,
                        "{shown}: {} ({tensors} tensors)",
                        painter.paint(GREEN, "valid")
                    )?;
                }
                reports
                    .push(json!({"path": shown, "valid": true, "error": null, "tensors": tensors}));
            }
            Err(error) => {
                let error = error.at(&shown);
                worst = worst.max(Some(error.kind));
                let message = error.to_string();
                print_error(&message);
                reports.push(json!({
                    "path": shown,
                    "valid": false,
                    "error": message,
                    "kind": error.kind.name(),
                    "unreadable": error.exit_code() == 2,
                }));
            }
        }
    }
    if ctx.json {
        write_json(out, &json!({"valid": worst.is_none(), "files": reports}))?;
    }
    // The worst kind wins: a file that cannot be read makes the answer
    // incomplete, which outranks "invalid".
    match worst {
        None => Ok(Status::Success),
        Some(kind) if kind.exit_code() == 1 => Ok(Status::Negative),
        Some(kind) => Err(CliError::reported(kind)),
    }
}
