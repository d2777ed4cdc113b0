//! `checksum`: print a manifest of per-tensor SHA-256 digests, or store
//! them in the file's metadata (see [`crate::digest`] for the format).

use std::io::Write;

use safeweights::edit::{rewrite_metadata, EditMode, EditOutcome};
use serde_json::json;

use crate::cli::ChecksumArgs;
use crate::commands::{Context, Out};
use crate::digest::{self, METADATA_KEY};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;
use crate::source::Checkpoint;

/// Runs `checksum`.
pub fn run(ctx: Context, args: &ChecksumArgs, out: &mut Out) -> CliResult {
    let checkpoint = Checkpoint::open_local(&args.file)?;
    let digests = digest::compute(&checkpoint)?;
    if !args.write {
        write_json(out, &digest::manifest(&digests))?;
        return Ok(Status::Success);
    }
    if checkpoint.shard_count() != 1 || args.file.is_dir() {
        return Err(CliError::usage(
            "--write needs a single .safetensors file; run it on each shard",
        ));
    }
    let mut metadata = checkpoint.metadata().cloned().unwrap_or_default();
    let stored = serde_json::to_string(&digests).map_err(|e| CliError::usage(e.to_string()))?;
    metadata.insert(METADATA_KEY.to_owned(), stored);
    // Release the memory map before the header is rewritten.
    drop(checkpoint);
    let outcome = rewrite_metadata(&args.file, Some(&metadata), EditMode::InPlaceIfFits)?;
    let in_place = outcome == EditOutcome::InPlace;
    if ctx.json {
        write_json(
            out,
            &json!({"written": digests.len(), "in_place": in_place, "key": METADATA_KEY}),
        )?;
    } else {
        let how = if in_place {
            "in place"
        } else {
            "by rewriting the file"
        };
        writeln!(
            out,
            "stored {} digests under {METADATA_KEY:?} in {} ({how})",
            digests.len(),
            args.file.display()
        )?;
    }
    Ok(Status::Success)
}
