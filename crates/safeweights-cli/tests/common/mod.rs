//! Shared helpers: fixtures generated once per test binary by
//! `tests/fixtures.py` (reference `safetensors` + torch), and running the
//! built binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// A Python with torch, numpy and the reference `safetensors`; `None`
/// when it is missing and the calling test may skip ([`require`] decides).
/// Every test that needs it starts with `let Some(_) = python() else { return };`.
pub fn python() -> Option<PathBuf> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = FOUND.get_or_init(|| python_with(&["torch", "numpy", "safetensors"]));
    require("a Python with torch, numpy and safetensors", found.clone())
}

fn python_or_fail() -> PathBuf {
    python().expect("a test that needs Python starts with `let Some(_) = python() else { return }`")
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fixture directory, generated on first use.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures.py");
        let status = Command::new(python_or_fail())
            .arg(&script)
            .arg(dir.path())
            .status()
            .expect("run python (set SAFEWEIGHTS_PYTHON)");
        assert!(status.success(), "fixtures.py failed");
        dir
    })
    .path()
}

pub fn fixture(name: &str) -> String {
    fixtures().join(name).display().to_string()
}

pub fn expected() -> &'static Value {
    static VALUE: OnceLock<Value> = OnceLock::new();
    VALUE.get_or_init(|| {
        serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).unwrap()).unwrap()
    })
}

/// Runs the binary with `args`, without colour-forcing variables.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args(args)
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .output()
        .expect("run safeweights")
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("exited by a signal")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs with `--json`, checks the exit code and parses the one document.
pub fn json(args: &[&str], expected_code: i32) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = run(&all);
    assert_eq!(
        code(&output),
        expected_code,
        "{args:?}: stderr {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: not one JSON document: {e}: {}", stdout(&output)))
}

/// Runs a Python snippet with `argv[1:] = args`; returns stdout.
pub fn python_run(code: &str, args: &[&str]) -> String {
    let output = Command::new(python_or_fail())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Relative closeness for floats from JSON.
pub fn close(actual: &Value, expected: &Value, what: &str) {
    match (actual.as_f64(), expected.as_f64()) {
        (Some(a), Some(e)) => {
            let tolerance = 1e-9 * e.abs().max(1e-300) + 1e-12;
            assert!((a - e).abs() <= tolerance, "{what}: {a} != {e}");
        }
        _ => assert_eq!(actual, expected, "{what}"),
    }
}

// Not every test binary that includes this module uses both.
#[allow(unused_imports)]
pub use safeweights_testkit::{python_with, require};
