//! What every safeweights crate's tests share: the one policy for a missing
//! test dependency, finding the Python interpreter that has the oracles
//! (the reference `safetensors`, torch, numpy, gguf), running the Python
//! fixture generators ([`fixtures`]), and the hand-built files that tests
//! cut while they are read ([`files`]).
//!
//! A dev-dependency only: it is not published, and cargo drops it from the
//! published crates' manifests.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod files;
pub mod fixtures;

pub use fixtures::{generate_into, unhex};

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os("SAFEWEIGHTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    let probe = format!(
        "import importlib.util, sys; sys.exit(0 if all(importlib.util.find_spec(m) for m in {modules:?}) else 1)"
    );
    let found = Command::new(&python)
        .args(["-c", &probe])
        .output()
        .is_ok_and(|run| run.status.success());
    found.then_some(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_found_dependency_is_passed_through() {
        assert_eq!(require("anything", Some(7)), Some(7));
    }

    #[test]
    fn a_module_that_does_not_exist_is_not_found() {
        assert_eq!(python_with(&["safeweights_testkit_no_such_module"]), None);
    }
}
