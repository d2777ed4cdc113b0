//! `filter`: write a subset of tensors, optionally renamed by prefix.

use std::collections::HashSet;
use std::io::Write;

use serde_json::json;

use crate::cli::FilterArgs;
use crate::commands::copy::write_one_file;
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;
use crate::pattern::Selection;
use crate::source::Checkpoint;

/// Runs `filter`.
pub fn run(ctx: Context, args: &FilterArgs, out: &mut Out) -> CliResult {
    let renames = args
        .rename
        .iter()
        .map(|r| {
            r.split_once('=')
                .ok_or_else(|| CliError::usage(format!("--rename {r:?}: expected FROM=TO")))
        })
        .collect::<CliResult<Vec<_>>>()?;
    let checkpoint = Checkpoint::open_path(&args.input, &ctx)?;
    let selection = Selection::new(&args.tensors, &args.exclude);
    let mut seen = HashSet::new();
    let mut chosen = Vec::new();
    for entry in checkpoint.entries() {
        let name = &entry.info.name;
        if !selection.contains(name) {
            continue;
        }
        let renamed = renames
            .iter()
            .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or_else(|| (*name).to_owned());
        if renamed.is_empty() || renamed == safeweights::format::METADATA_KEY {
            return Err(CliError::usage(format!(
                "--rename turns {name:?} into the invalid name {renamed:?}"
            )));
        }
        if !seen.insert(renamed.clone()) {
            return Err(CliError::usage(format!(
                "--rename gives two tensors the name {renamed:?}"
            )));
        }
        chosen.push((entry, renamed));
    }
    if chosen.is_empty() {
        return Err(CliError::usage(
            "no tensor is selected; check -t and --exclude",
        ));
    }
    write_one_file(&checkpoint, &chosen, &args.output, "filter", ctx.sync)?;
    if ctx.json {
        let tensors: Vec<_> = chosen
            .iter()
            .map(|(e, n)| json!({"from": e.info.name, "to": n}))
            .collect();
        write_json(
            out,
            &json!({"written": args.output.display().to_string(), "tensors": tensors}),
        )?;
    } else {
        writeln!(
            out,
            "wrote {} tensors to {}",
            chosen.len(),
            args.output.display()
        )?;
    }
    Ok(Status::Success)
}
