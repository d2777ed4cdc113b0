//! `safeweights`: inspect, validate, convert, scan, compare and edit model checkpoints.
//!
//! A thin layer over the `safeweights` library: parsing arguments, reading
//! through `source::Checkpoint`, printing, and mapping errors to exit codes
//! (see `exit`). The binary (`main.rs`) and the Python package's
//! `safeweights` command both call [`run`] (the latter through
//! [`run_embedded`]), so the two are the same program.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

mod cli;
mod commands;
mod dcp;
mod destination;
mod digest;
mod exit;
mod gguf;
mod output;
mod parallel;
mod pattern;
mod source;
mod structure;
mod values;
mod version;

/// Runs the command line `args` (the program name first, as in
/// `std::env::args_os()`) and returns the process exit code: 0 success,
/// 1 "no" (invalid, differs, dangerous), 2 usage or I/O error, 3 internal
/// error (see `exit`).
pub fn run<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run_embedded(args, &[])
}

/// [`run`] for a program that embeds the CLI, such as the Python package:
/// `host_lines` (e.g. `"python: 3.12.1"`) are appended to `--version`.
pub fn run_embedded<I, T>(args: I, host_lines: &[String]) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let parsed = version::with_version(cli::Cli::command(), host_lines)
        .try_get_matches_from(&args)
        .and_then(|matches| cli::Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => {
            exit::remove_temporary_files_on_signals();
            // The pickle reader maps its inputs: a truncation names the file.
            safeweights::read::bus_error::install_bus_error_handler();
            exit::finish(commands::run(&cli), cli.json)
        }
        Err(error) => {
            // Help and version go to stdout with code 0, errors to stderr
            // with code 2; a closed pipe while printing help is not an error.
            let _ = error.print();
            if !error.use_stderr() {
                return 0;
            }
            // With --json anywhere on the line, scripts still get their one
            // document, although the line could not be parsed.
            if args.iter().skip(1).any(|a| a == "--json") {
                let text = error.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                output::print_json_error(&exit::CliError::usage(message).to_json());
            }
            exit::ErrorKind::Usage.exit_code()
        }
    }
}
