//! `checksum`: print a manifest of per-tensor SHA-256 digests, or store
//! them in the file's metadata (see [`crate::digest`] for the format).

use std::io::Write;

use safeweights::edit::{rewrite_metadata, EditMode, EditOutcome};
use safeweights::Metadata;
use serde_json::json;

use crate::cli::ChecksumArgs;
use crate::commands::{Context, Out};
use crate::digest::{self, METADATA_KEY};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;
use crate::source::Checkpoint;

/// Runs `checksum`.
pub fn run(ctx: Context, args: &ChecksumArgs, out: &mut Out) -> CliResult {
    let checkpoint = Checkpoint::open_path(&args.file, &ctx)?;
    let digests = digest::compute(&checkpoint)?;
    if !args.write {
        write_json(out, &digest::manifest(&digests))?;
        return Ok(Status::Success);
    }
    if checkpoint.is_remote() {
        return Err(CliError::usage(format!(
            "{}: --write edits the file in place, which a remote object cannot be; \
             copy it here with `safeweights cp`, or keep the manifest (without --write)",
            args.file.display()
        )));
    }
    // Each shard stores the digests of its own tensors, so a shard stays
    // verifiable on its own and the index file is left untouched.
    let plans: Vec<(std::path::PathBuf, Metadata)> = checkpoint
        .shards()
        .iter()
        .map(|shard| {
            let own: digest::Digests = shard
                .header()
                .tensors()
                .filter_map(|t| digests.get(t.name).map(|d| (t.name.to_owned(), d.clone())))
                .collect();
            let mut metadata = shard.header().metadata().cloned().unwrap_or_default();
            let stored = serde_json::to_string(&own).unwrap_or_default();
            metadata.insert(METADATA_KEY.to_owned(), stored);
            (shard.path().to_owned(), metadata)
        })
        .collect();
    // Release the memory maps before the headers are rewritten.
    drop(checkpoint);
    let mut in_place = true;
    for (path, metadata) in &plans {
        let outcome = rewrite_metadata(path, Some(metadata), EditMode::InPlaceIfFits)?;
        in_place &= outcome == EditOutcome::InPlace;
    }
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
            "stored {} digests under {METADATA_KEY:?} in {} ({} file(s), {how})",
            digests.len(),
            args.file.display(),
            plans.len()
        )?;
    }
    Ok(Status::Success)
}
