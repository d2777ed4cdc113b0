//! Errors of the command line and the exit codes they map to.
//!
//! Exit codes, as in `diff` and `grep`: 0 means success (or "yes": valid,
//! equal, all finite), 1 means the answer is "no" (different, invalid,
//! corrupt, non-finite), 2 means the question could not be answered (bad
//! usage, a file that cannot be opened, a network error).

use std::fmt;
use std::io;
use std::process::ExitCode;

/// The answer a command gives when it runs to completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit code 0.
    Success,
    /// Exit code 1: the command worked and the answer is "no".
    Negative,
}

impl Status {
    /// `Negative` if `negative` holds, else `Success`.
    pub fn negative_if(negative: bool) -> Status {
        if negative {
            Status::Negative
        } else {
            Status::Success
        }
    }
}

/// A failure that stops a command, with the exit code it deserves.
#[derive(Debug)]
pub struct CliError {
    /// 1 for invalid or corrupt data, 2 for usage and I/O errors.
    pub code: u8,
    /// One line for the user.
    pub message: String,
    /// Writing to stdout failed because the reader went away: exit quietly.
    pub broken_pipe: bool,
}

impl CliError {
    /// A usage error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: 2,
            message: message.into(),
            broken_pipe: false,
        }
    }

    /// Invalid or corrupt input data (exit code 1).
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError {
            code: 1,
            message: message.into(),
            broken_pipe: false,
        }
    }

    /// An exit code whose reason was already reported (prints nothing).
    pub fn silent(code: u8) -> Self {
        CliError {
            code,
            message: String::new(),
            broken_pipe: false,
        }
    }

    /// Prefixes the message with some context, e.g. a file name.
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl From<safeweights::Error> for CliError {
    fn from(error: safeweights::Error) -> Self {
        if let safeweights::Error::Io(io) = error.kind() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return CliError::from(io::Error::from(io::ErrorKind::BrokenPipe));
            }
        }
        CliError {
            code: if error.is_invalid_data() { 1 } else { 2 },
            message: error.to_string(),
            broken_pipe: false,
        }
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        CliError {
            code: 2,
            broken_pipe: error.kind() == io::ErrorKind::BrokenPipe,
            message: error.to_string(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Result alias for commands.
pub type CliResult<T = Status> = Result<T, CliError>;

/// Turns a command's result into the process exit code, printing the
/// error (one line on stderr) unless stdout was closed under us.
pub fn finish(result: CliResult) -> ExitCode {
    match result {
        Ok(Status::Success) => ExitCode::SUCCESS,
        Ok(Status::Negative) => ExitCode::from(1),
        Err(error) if error.broken_pipe => ExitCode::SUCCESS,
        Err(error) if error.message.is_empty() => ExitCode::from(error.code),
        Err(error) => {
            crate::output::print_error(&error.message);
            ExitCode::from(error.code)
        }
    }
}

/// On SIGINT or SIGTERM, removes the temporary files of the writes in
/// progress and exits with 128 + the signal (130, 143), as shells report
/// a process killed by it. The signal is handled on a thread of its own,
/// so the cleanup runs as ordinary code, not inside a signal handler.
#[cfg(unix)]
pub fn remove_temporary_files_on_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return; // Without the handler the default action still stops us.
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            safeweights::write::remove_temporary_files_for_exit();
            std::process::exit(128 + signal);
        }
    });
}

/// Elsewhere the default action of Ctrl-C applies.
#[cfg(not(unix))]
pub fn remove_temporary_files_on_signals() {}
