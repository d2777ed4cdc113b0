//! `safeweights`: inspect, validate, convert, scan, compare and edit model checkpoints.
//!
//! A thin layer over the `safeweights` library: parsing arguments, reading
//! through [`source::Checkpoint`], printing, and mapping errors to exit codes
//! (see [`exit`]).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod digest;
mod exit;
mod output;
mod parallel;
mod pattern;
mod remote;
mod source;
mod structure;
mod values;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with code 0, errors to stderr
            // with code 2; a closed pipe while printing help is not an error.
            let _ = error.print();
            if !error.use_stderr() {
                return ExitCode::SUCCESS;
            }
            // With --json anywhere on the line, scripts still get their one
            // document, although the line could not be parsed.
            if std::env::args_os().skip(1).any(|a| a == "--json") {
                let text = error.render().to_string();
                let first = text.lines().next().unwrap_or_default();
                let message = first.strip_prefix("error: ").unwrap_or(first);
                output::print_json_error(&exit::CliError::usage(message).to_json());
            }
            return ExitCode::from(exit::ErrorKind::Usage.exit_code());
        }
    };
    exit::finish(commands::run(&cli), cli.json)
}
