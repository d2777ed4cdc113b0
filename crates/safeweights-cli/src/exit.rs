//! Errors of the command line and the exit codes their kinds map to.
//!
//! Exit codes, as in `diff` and `grep`:
//!
//! - 0: success, or "yes" (valid, equal, safe, all finite);
//! - 1: the answer is "no" (invalid, corrupt, different, unsafe, non-finite);
//! - 2: the question could not be asked: bad usage, or an input that cannot
//!   be read (missing file, I/O or network error, a directory without a
//!   checkpoint);
//! - 3: an internal error (a bug: a worker panicked, an output that fails
//!   its verification).
//!
//! The code is decided by the error's [`ErrorKind`], which is decided by the
//! typed error of the library that failed, never by message text.

use std::fmt;
use std::io;

use serde_json::json;

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

/// What went wrong, as scripts see it: the exit code and the `kind` of the
/// JSON error document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The input is invalid or corrupt (exit 1).
    Invalid,
    /// The input would run code when loaded (exit 1).
    Unsafe,
    /// The command line asks for something impossible (exit 2).
    Usage,
    /// An input cannot be read: missing, unreadable, unreachable, or not
    /// a checkpoint at all (exit 2).
    Input,
    /// A bug in safeweights (exit 3).
    Internal,
}

impl ErrorKind {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Invalid | ErrorKind::Unsafe => 1,
            ErrorKind::Usage | ErrorKind::Input => 2,
            ErrorKind::Internal => 3,
        }
    }

    /// The stable name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::Unsafe => "unsafe",
            ErrorKind::Usage => "usage",
            ErrorKind::Input => "input",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A failure that stops a command.
#[derive(Debug)]
pub struct CliError {
    /// What kind of failure, which decides the exit code.
    pub kind: ErrorKind,
    /// One line for the user, without the path.
    pub message: String,
    /// The file or URL concerned, when known.
    pub path: Option<String>,
    /// Writing to stdout failed because the reader went away: exit quietly.
    pub broken_pipe: bool,
    /// The command already reported it (on stderr, and in its JSON
    /// document): only the exit code remains to give.
    pub reported: bool,
}

impl CliError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CliError {
            kind,
            message: message.into(),
            path: None,
            broken_pipe: false,
            reported: false,
        }
    }

    /// A usage error: the command line asks for something impossible (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Usage, message)
    }

    /// An input that cannot be read (exit 2).
    pub fn input(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Input, message)
    }

    /// Invalid or corrupt input data (exit 1).
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Invalid, message)
    }

    /// A bug in safeweights (exit 3).
    pub fn internal(message: impl Into<String>) -> Self {
        CliError::new(ErrorKind::Internal, message)
    }

    /// A failure the command already reported, file by file.
    pub fn reported(kind: ErrorKind) -> Self {
        CliError {
            reported: true,
            ..CliError::new(kind, "")
        }
    }

    /// Names the file or URL concerned, unless the error already names one.
    pub fn at(mut self, path: impl fmt::Display) -> Self {
        if self.path.is_none() {
            self.path = Some(path.to_string());
        }
        self
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.kind.exit_code()
    }

    /// The JSON document printed on stdout with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({"error": {
            "kind": self.kind.name(),
            "message": self.message,
            "path": self.path,
        }})
    }
}

impl From<safeweights::Error> for CliError {
    fn from(error: safeweights::Error) -> Self {
        let broken_pipe = matches!(
            error.kind(),
            safeweights::Error::Io(io) if io.kind() == io::ErrorKind::BrokenPipe
        );
        let mut message = error.kind().to_string();
        if let safeweights::Error::HeaderTooLarge { len, .. } = error.kind() {
            message.push_str(&format!(" (raise it with --max-header-size {len})"));
        }
        CliError {
            broken_pipe,
            ..CliError::new(core_kind(&error), message)
        }
        .at_opt(error.path())
    }
}

/// The kind of a core error.
fn core_kind(error: &safeweights::Error) -> ErrorKind {
    use safeweights::Error as E;
    match error.kind() {
        E::Io(_) | E::CheckpointDirectory { .. } | E::Remote { .. } => ErrorKind::Input,
        E::WorkerPanicked { .. } => ErrorKind::Internal,
        E::TensorNotFound { .. }
        | E::InvalidSlice { .. }
        | E::InvalidTensor { .. }
        | E::DuplicateTensorName { .. }
        | E::BufferSize { .. } => ErrorKind::Usage,
        _ if error.is_invalid_data() => ErrorKind::Invalid,
        _ => ErrorKind::Usage,
    }
}

impl From<safeweights_gguf::Error> for CliError {
    fn from(error: safeweights_gguf::Error) -> Self {
        match error {
            // The message names the path already.
            safeweights_gguf::Error::Io { .. } => CliError::input(error.to_string()),
            _ => CliError::invalid(error.to_string()),
        }
    }
}

impl From<safeweights_convert::gguf::GgufError> for CliError {
    fn from(error: safeweights_convert::gguf::GgufError) -> Self {
        use safeweights_convert::gguf::GgufError as E;
        match error {
            E::Safetensors { source } => CliError::from(source),
            E::Io { path, source } => CliError::from(source).at(path.display()),
            ref e if e.is_invalid_input() => CliError::invalid(e.to_string()),
            E::Gguf { .. } => CliError::input(error.to_string()),
            other => CliError::usage(other.to_string()),
        }
    }
}

impl From<safeweights_pickle::Error> for CliError {
    fn from(error: safeweights_pickle::Error) -> Self {
        use safeweights_pickle::Error as E;
        let kind = pickle_kind(&error);
        match error {
            // The outermost location is the file (`path` or `path: member`);
            // inner ones stay in the message.
            E::In { location, source } => match *source {
                inner @ (E::Io { .. } | E::Safetensors { .. }) => {
                    CliError::from(inner).at(location)
                }
                inner => CliError::new(kind, inner.to_string()).at(location),
            },
            E::Io { path, source } => CliError::from(source).at(path.display()),
            E::Safetensors { source } => CliError::from(source),
            other => CliError::new(kind, other.to_string()),
        }
    }
}

/// The kind of a pickle-crate error, from its innermost error.
fn pickle_kind(error: &safeweights_pickle::Error) -> ErrorKind {
    use safeweights_pickle::Error as E;
    match error.root() {
        _ if error.is_unsafe() => ErrorKind::Unsafe,
        _ if error.is_unsafe_or_invalid() => ErrorKind::Invalid,
        E::Io { .. } => ErrorKind::Input,
        E::Safetensors { source } => core_kind(source),
        // The output does not match its input: our bug.
        E::Verify { .. } => ErrorKind::Internal,
        _ => ErrorKind::Usage,
    }
}

impl From<io::Error> for CliError {
    fn from(error: io::Error) -> Self {
        CliError {
            broken_pipe: error.kind() == io::ErrorKind::BrokenPipe,
            ..CliError::input(error.to_string())
        }
    }
}

impl CliError {
    fn at_opt(self, path: Option<&std::path::Path>) -> Self {
        match path {
            Some(path) => self.at(path.display()),
            None => self,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Result alias for commands.
pub type CliResult<T = Status> = Result<T, CliError>;

/// Turns a command's result into the process exit code. An error is one
/// line on stderr and, with `--json`, one JSON document on stdout; nothing
/// is printed when stdout was closed under us or the command already
/// reported the failure.
pub fn finish(result: CliResult, json: bool) -> u8 {
    match result {
        Ok(Status::Success) => 0,
        Ok(Status::Negative) => 1,
        Err(error) if error.broken_pipe => 0,
        Err(error) if error.reported => error.exit_code(),
        Err(error) => {
            crate::output::print_error(&error.to_string());
            if json {
                crate::output::print_json_error(&error.to_json());
            }
            error.exit_code()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_kind() {
        let codes = [
            (ErrorKind::Invalid, 1),
            (ErrorKind::Unsafe, 1),
            (ErrorKind::Usage, 2),
            (ErrorKind::Input, 2),
            (ErrorKind::Internal, 3),
        ];
        for (kind, code) in codes {
            assert_eq!(CliError::new(kind, "x").exit_code(), code, "{kind:?}");
        }
    }

    #[test]
    fn core_errors_keep_their_path_apart_from_the_message() {
        let error = safeweights::Error::FileTooSmall { len: 3 }.in_file("/tmp/m.safetensors");
        let cli = CliError::from(error);
        assert_eq!(cli.kind, ErrorKind::Invalid);
        assert_eq!(cli.path.as_deref(), Some("/tmp/m.safetensors"));
        assert!(
            !cli.message.contains("/tmp/m.safetensors"),
            "{}",
            cli.message
        );
        assert!(cli.to_string().starts_with("/tmp/m.safetensors: "));
        let missing =
            safeweights::Error::Io(io::Error::from(io::ErrorKind::NotFound)).in_file("/nope");
        let cli = CliError::from(missing);
        assert_eq!(
            (cli.kind, cli.path.as_deref()),
            (ErrorKind::Input, Some("/nope"))
        );
        let directory = safeweights::Error::CheckpointDirectory {
            index_files: 0,
            safetensors_files: 0,
        };
        assert_eq!(CliError::from(directory).exit_code(), 2);
    }

    #[test]
    fn at_does_not_replace_a_known_path() {
        let error = CliError::invalid("bad").at("a").at("b");
        assert_eq!(error.path.as_deref(), Some("a"));
    }
}
