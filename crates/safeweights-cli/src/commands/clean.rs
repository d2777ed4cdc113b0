//! `clean`: remove the temporary files of interrupted safeweights writes.

use std::io::Write;

use serde_json::json;

use crate::cli::CleanArgs;
use crate::commands::scan::{collect_files, is_temporary};
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;

/// Runs `clean`: exit 0 when every leftover was removed (or listed with
/// `--dry-run`), 2 when one could not be removed.
pub fn run(ctx: Context, args: &CleanArgs, out: &mut Out) -> CliResult {
    let mut removed = Vec::new();
    let mut in_use = Vec::new();
    let mut failed = Vec::new();
    for (path, len) in collect_files(&args.paths)? {
        if !is_temporary(&path) {
            continue;
        }
        let shown = path.display().to_string();
        match safeweights::write::temporary_file_in_use(&path) {
            Ok(true) => in_use.push(shown),
            Ok(false) if args.dry_run => removed.push((shown, len)),
            Ok(false) => match std::fs::remove_file(&path) {
                Ok(()) => removed.push((shown, len)),
                Err(e) => failed.push(format!("{shown}: {e}")),
            },
            Err(e) => failed.push(format!("{shown}: {e}")),
        }
    }
    let bytes: u64 = removed.iter().map(|(_, len)| len).sum();
    if ctx.json {
        let files: Vec<_> = removed
            .iter()
            .map(|(path, len)| json!({"path": path, "bytes": len}))
            .collect();
        write_json(
            out,
            &json!({
                "dry_run": args.dry_run,
                "removed": files,
                "bytes": bytes,
                "in_use": in_use,
                "errors": failed,
            }),
        )?;
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for (path, len) in &removed {
            writeln!(out, "{verb} {path} ({len} bytes)")?;
        }
        for path in &in_use {
            writeln!(out, "kept {path} (a write in progress holds it)")?;
        }
        writeln!(out, "{verb} {} files, {bytes} bytes", removed.len())?;
    }
    match failed.first() {
        None => Ok(Status::Success),
        Some(first) => Err(CliError::usage(format!(
            "{first} ({} files could not be removed)",
            failed.len()
        ))),
    }
}
