//! The `safeweights` binary: everything lives in the library (`lib.rs`), which
//! the Python package's `safeweights` command runs too.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(safeweights_cli::run(std::env::args_os()))
}
