//! The `safeweights` command of the Python package: the Rust CLI, run in
//! this process (`safeweights/__main__.py` calls it), so `pip install`
//! brings the same program as `cargo install`.

use std::ffi::OsString;

use pyo3::prelude::*;

/// Runs the command line `argv` (program name first) and returns its exit
/// code. `version_lines` are appended to `--version`. The CLI writes to the
/// process's stdout and stderr file descriptors directly, not through
/// `sys.stdout`; the GIL is released while it runs.
#[pyfunction]
pub fn run_cli(py: Python<'_>, argv: Vec<OsString>, version_lines: Vec<String>) -> u8 {
    py.detach(|| safeweights_cli::run_embedded(argv, &version_lines))
}
