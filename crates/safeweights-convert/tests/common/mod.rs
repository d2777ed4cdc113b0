//! Shared helpers: the policy for missing test dependencies, and running
//! a fixture generator once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Runs `tests/fixtures/<script>` with the output directory as argument,
/// once per test binary. Returns `None` when no Python with torch and numpy
/// is available and the test may skip ([`require`] decides).
pub fn generate(script: &str, cell: &'static OnceLock<Option<PathBuf>>) -> Option<&'static Path> {
    cell.get_or_init(|| {
        let py = require(
            "a Python with torch and numpy",
            python_with(&["torch", "numpy"]),
        )?;
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(script.trim_end_matches(".py"));
        if out.exists() {
            std::fs::remove_dir_all(&out).expect("clear the fixture dir");
        }
        std::fs::create_dir_all(&out).expect("create fixture dir");
        let gen = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(script);
        let run = Command::new(&py)
            .arg(&gen)
            .arg(&out)
            .output()
            .expect("run the fixture generator");
        assert!(
            run.status.success(),
            "{script} failed:\n{}\n{}",
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
        );
        Some(out)
    })
    .as_deref()
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

/// Decodes lowercase hex.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}
