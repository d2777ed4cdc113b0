//! `verify`: recompute per-tensor digests and compare with stored ones.

use std::io::Write;

use serde_json::json;

use crate::cli::VerifyArgs;
use crate::commands::{Context, Out};
use crate::digest::{self, METADATA_KEY};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{print_error, write_json, Painter, GREEN};
use crate::source::Checkpoint;

/// Runs `verify`. Exit 1 when a digest mismatches, a listed tensor is
/// missing, a tensor has no digest, or there are no digests at all.
pub fn run(ctx: Context, args: &VerifyArgs, out: &mut Out) -> CliResult {
    if args.manifest.is_none() && crate::dcp::is_dcp_directory(&args.file) {
        if !args.tensors.is_empty() {
            return Err(CliError::usage(
                "--tensor applies to safetensors checkpoints, not DCP directories",
            ));
        }
        return crate::dcp::verify(ctx, &args.file, out);
    }
    let checkpoint = Checkpoint::open_path(&args.file, &ctx)?;
    let expected = match &args.manifest {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| CliError::from(e).at(path.display()))?;
            digest::parse_manifest(&text).map_err(|e| e.at(path.display()))?
        }
        None => stored_digests(&checkpoint)?.ok_or_else(|| {
            CliError::invalid(format!(
                "{}: no checksums stored (no {METADATA_KEY:?} metadata); run `safeweights checksum --write` first or pass --manifest",
                args.file.display()
            ))
        })?,
    };
    let (actual, expected) = if args.tensors.is_empty() {
        (digest::compute(&checkpoint)?, expected)
    } else {
        only_named(&checkpoint, &args.tensors, expected)?
    };
    let mismatched: Vec<&String> = actual
        .iter()
        .filter(|(name, hex)| expected.get(*name).is_some_and(|e| e != *hex))
        .map(|(name, _)| name)
        .collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|n| !actual.contains_key(*n))
        .collect();
    let unlisted: Vec<&String> = actual
        .keys()
        .filter(|n| !expected.contains_key(*n))
        .collect();
    let ok = mismatched.is_empty() && missing.is_empty() && unlisted.is_empty();
    if ctx.json {
        write_json(
            out,
            &json!({
                "ok": ok,
                "checked": actual.len() - unlisted.len(),
                "mismatched": mismatched,
                "missing": missing,
                "unlisted": unlisted,
                "http": checkpoint.http_json(),
            }),
        )?;
    } else if ok {
        let painter = Painter::stdout();
        writeln!(
            out,
            "{}: {} tensors {}",
            args.file.display(),
            actual.len(),
            painter.paint(GREEN, "ok")
        )?;
    }
    let file = args.file.display();
    for name in &mismatched {
        print_error(&format!(
            "{file}: tensor {name:?} does not match its checksum"
        ));
    }
    for name in &missing {
        print_error(&format!(
            "{file}: tensor {name:?} has a checksum but is missing"
        ));
    }
    for name in &unlisted {
        print_error(&format!("{file}: tensor {name:?} has no checksum"));
    }
    Ok(Status::negative_if(!ok))
}

/// Hashes only the named tensors, and keeps only their expected digests
/// (a named tensor without one is then reported as having no checksum).
fn only_named(
    checkpoint: &Checkpoint,
    names: &[String],
    mut expected: digest::Digests,
) -> CliResult<(digest::Digests, digest::Digests)> {
    let entries = names
        .iter()
        .map(|name| checkpoint.find(name))
        .collect::<CliResult<Vec<_>>>()?;
    let actual = digest::compute_entries(checkpoint, &entries, digest::Algorithm::Sha256)?;
    expected.retain(|name, _| actual.contains_key(name));
    Ok((actual, expected))
}

/// The digests stored in every shard's metadata, merged; `None` when no
/// shard has any.
fn stored_digests(checkpoint: &Checkpoint) -> CliResult<Option<digest::Digests>> {
    let mut merged: Option<digest::Digests> = None;
    for shard in checkpoint.shards() {
        if let Some(text) = shard.header().metadata().and_then(|m| m.get(METADATA_KEY)) {
            merged
                .get_or_insert_with(Default::default)
                .extend(digest::parse_stored(text)?);
        }
    }
    Ok(merged)
}
