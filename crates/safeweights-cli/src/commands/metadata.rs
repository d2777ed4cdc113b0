//! `metadata`: show or edit `__metadata__` (see `safeweights::edit` for
//! how edits stay safe).

use std::io::Write;

use safeweights::edit::{rewrite_metadata, EditMode, EditOutcome};
use safeweights::read::SafetensorsFile;
use serde_json::json;

use crate::cli::MetadataArgs;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::{print_warning, write_json, Painter, DIM};

/// Runs `metadata`.
pub fn run(ctx: Context, args: &MetadataArgs, out: &mut Out) -> CliResult {
    let current = SafetensorsFile::open(&args.file)?
        .header()
        .metadata()
        .cloned();
    let editing = !args.set.is_empty() || !args.delete.is_empty();
    let mut outcome = None;
    let shown = if editing {
        let mut metadata = current.clone().unwrap_or_default();
        for pair in &args.set {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| CliError::usage(format!("--set {pair:?}: expected KEY=VALUE")))?;
            metadata.insert(key.to_owned(), value.to_owned());
        }
        for key in &args.delete {
            if metadata.remove(key).is_none() {
                print_warning(&format!("--delete {key:?}: no such key"));
            }
        }
        let new = (!metadata.is_empty()).then_some(metadata);
        let mode = if args.copy {
            EditMode::Rewrite
        } else {
            EditMode::InPlaceIfFits
        };
        outcome = Some(rewrite_metadata(&args.file, new.as_ref(), mode)?);
        new
    } else {
        current
    };
    if ctx.json {
        let mut doc = json!({"metadata": shown});
        if let Some(outcome) = outcome {
            doc["in_place"] = json!(outcome == EditOutcome::InPlace);
        }
        write_json(out, &doc)?;
        return Ok(Status::Success);
    }
    match &shown {
        Some(metadata) if !metadata.is_empty() => {
            for (key, value) in metadata {
                writeln!(out, "{key}: {value}")?;
            }
        }
        _ => writeln!(out, "{}", Painter::stdout().paint(DIM, "no metadata"))?,
    }
    if let Some(outcome) = outcome {
        let how = match outcome {
            EditOutcome::InPlace => "header rewritten in place",
            EditOutcome::Rewritten => "file rewritten",
        };
        writeln!(out, "{}", Painter::stdout().paint(DIM, format!("({how})")))?;
    }
    Ok(Status::Success)
}
