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

// Not every test binary that includes this module uses both.
#[allow(unused_imports)]
pub use safeweights_testkit::{python_with, require};
