//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use safeweights::read::SafeTensors;
use safeweights::Error;

/// A file made of the 8-byte length, `json` verbatim, then `data`.
pub fn file_bytes(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Parses `bytes` expecting failure, and returns the error.
pub fn parse_error(bytes: &[u8]) -> Error {
    match SafeTensors::parse(bytes) {
        Ok(parsed) => panic!("expected an error, parsed {:?}", parsed.header()),
        Err(error) => error,
    }
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A Python with the reference `safetensors`, numpy and torch (see
/// [`require`] for what happens without one).
pub fn python() -> Option<PathBuf> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| python_with(&["safetensors", "numpy", "torch"]))
        .clone()
        .map_or_else(
            || require("a Python with safetensors, numpy and torch", None),
            Some,
        )
}

/// The one policy for a missing test dependency (a Python interpreter, a
/// Python package, nginx), the same in every crate's tests: with
/// `SAFEWEIGHTS_REQUIRE_ALL=1` (set by `scripts/test.sh`, so in CI) the test
/// fails; otherwise it says loudly on stderr that it skips, and the caller
/// returns early.
pub fn require<T>(what: &str, found: Option<T>) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let hint = "install it with scripts/install-test-deps.sh, or point SAFEWEIGHTS_PYTHON at an interpreter that has it";
    if std::env::var_os("SAFEWEIGHTS_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("missing test dependency: {what} ({hint}); SAFEWEIGHTS_REQUIRE_ALL=1 makes this a failure, not a skip");
    }
    // Straight to stderr, past the test harness's capture, so that a skip
    // is seen even when the test passes.
    use std::io::Write;
    let notice = format!("SKIPPED: missing test dependency: {what} ({hint}); set SAFEWEIGHTS_REQUIRE_ALL=1 to fail instead\n");
    // A closed stderr cannot be reported anywhere else.
    std::io::stderr().write_all(notice.as_bytes()).ok();
    None
}

/// The interpreter (`$SAFEWEIGHTS_PYTHON`, else the workspace's `.venv`)
/// when it runs and has every one of `modules`, found without importing
/// them (importing torch takes seconds).
pub fn python_with(modules: &[&str]) -> Option<std::path::PathBuf> {
    let python = std::env::var_os("SAFEWEIGHTS_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    let probe = format!(
        "import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in {modules:?}) else 1)"
    );
    let found = std::process::Command::new(&python)
        .args(["-c", &probe])
        .output()
        .is_ok_and(|run| run.status.success());
    found.then_some(python)
}

/// Runs `script` with `python`, passing `args`; panics with its output on failure.
pub fn run_python(python: &Path, script: &str, args: &[&Path]) -> String {
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("failed to start python");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// `{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}` and its data.
pub const ONE_F32: &str = r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

/// A file whose only tensor `t` has the entry `entry`, and `data_len` zero bytes.
pub fn one_tensor(entry: &str, data_len: usize) -> Vec<u8> {
    file_bytes(&format!(r#"{{"t":{entry}}}"#), &vec![0u8; data_len])
}

/// Asserts that the error message names the tensor, quoted.
pub fn assert_names_tensor(error: &Error, name: &str) {
    let text = error.to_string();
    assert!(
        text.contains(&format!("{name:?}")),
        "message does not name {name:?}: {text}"
    );
}
