//! `validate`: check files against every rule of the format.

use std::io::Write;

use serde_json::json;

use crate::cli::ValidateArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{print_error, write_json, Painter, GREEN};
use crate::source::Checkpoint;

/// Runs `validate`: exit 0 if all valid, 1 if any is invalid, 2 if any
/// cannot be opened (that takes precedence: the answer is incomplete).
pub fn run(ctx: Context, args: &ValidateArgs, out: &mut Out) -> CliResult {
    let painter = Painter::stdout();
    let mut reports = Vec::with_capacity(args.files.len());
    let mut worst = 0u8;
    for path in &args.files {
        let shown = path.display().to_string();
        match Checkpoint::open_local(path) {
            Ok(checkpoint) => {
                let tensors = checkpoint.entries().len();
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
                worst = worst.max(error.code);
                // Library errors about a file already start with its path.
                let message = if error.message.starts_with(&shown) {
                    error.message.clone()
                } else {
                    format!("{shown}: {}", error.message)
                };
                print_error(&message);
                reports.push(json!({
                    "path": shown,
                    "valid": false,
                    "error": message,
                    "unreadable": error.code == 2,
                }));
            }
        }
    }
    if ctx.json {
        write_json(out, &json!({"valid": worst == 0, "files": reports}))?;
    }
    match worst {
        0 => Ok(Status::Success),
        1 => Ok(Status::Negative),
        code => Err(CliError::silent(code)),
    }
}
