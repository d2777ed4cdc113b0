//! `completions` and `man`: shell completion scripts and man pages generated
//! from the clap definitions, so they always match the commands.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_json::json;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::commands::{Context, Out};
use crate::exit::{CliError, CliResult, Status};
use crate::output::write_json;

/// The program's name, as users type it.
const BIN_NAME: &str = "safeweights";

/// The command definitions, with the version the man page shows (the
/// short one: the long one's lines would run together in roff).
fn definitions() -> clap::Command {
    Cli::command()
        .version(crate::version::short())
        .bin_name(BIN_NAME)
}

/// Runs `completions`: prints the script for the chosen shell.
pub fn completions(ctx: Context, args: &CompletionsArgs, out: &mut Out) -> CliResult {
    if ctx.json {
        return Err(CliError::usage(
            "completions prints a shell script; --json does not apply",
        ));
    }
    clap_complete::generate(args.shell, &mut definitions(), BIN_NAME, out);
    Ok(Status::Success)
}

/// Runs `man`: prints `safeweights.1`, or with `--dir` writes it and one
/// page per command into that directory.
pub fn man(ctx: Context, args: &ManArgs, out: &mut Out) -> CliResult {
    let Some(dir) = &args.dir else {
        if ctx.json {
            return Err(CliError::usage(
                "man prints roff; --json applies only with --dir",
            ));
        }
        clap_mangen::Man::new(definitions()).render(out)?;
        return Ok(Status::Success);
    };
    fs::create_dir_all(dir).map_err(|e| CliError::from(e).at(dir.display()))?;
    let mut command = definitions().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_pages(command, dir, &mut written)?;
    if ctx.json {
        let pages: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
        write_json(out, &json!({ "pages": pages }))?;
    } else {
        for page in &written {
            writeln!(out, "{}", page.display())?;
        }
    }
    Ok(Status::Success)
}

/// Writes the page of `command` and of each visible subcommand, recording
/// the paths in `written`.
fn write_pages(command: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> CliResult<()> {
    let man = clap_mangen::Man::new(command.clone());
    let mut page = Vec::new();
    man.render(&mut page)?;
    let path = dir.join(man.get_filename());
    write_replacing(&path, &page).map_err(|e| CliError::from(e).at(path.display()))?;
    written.push(path);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), dir, written)?;
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into
/// place, so an interrupted run never leaves a truncated page.
fn write_replacing(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    fs::write(&temp, bytes)?;
    fs::rename(&temp, path).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}
