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

/// Decodes lowercase hex.
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

// Not every test binary that includes this module uses both.
#[allow(unused_imports)]
pub use safeweights_testkit::{python_with, require};
