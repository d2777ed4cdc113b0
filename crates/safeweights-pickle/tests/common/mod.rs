//! Shared helpers: find a Python with torch and run a fixture generator
//! once per test binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The Python interpreter: `SAFEWEIGHTS_PYTHON`, else the workspace venv.
pub fn python() -> PathBuf {
    std::env::var_os("SAFEWEIGHTS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

/// Runs `tests/fixtures/<script>` with the output directory as argument,
/// once per test binary. Returns `None` (after printing why) when no
/// Python with torch is available, so the calling test can skip.
pub fn generate(script: &str, cell: &'static OnceLock<Option<PathBuf>>) -> Option<&'static Path> {
    cell.get_or_init(|| {
        let py = python();
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(script.trim_end_matches(".py"));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("create fixture dir");
        let gen = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(script);
        // No separate probe for torch: importing it takes seconds, so a
        // missing interpreter or module is recognised from the run itself.
        let Ok(run) = Command::new(&py).arg(&gen).arg(&out).output() else {
            eprintln!(
                "SKIPPED: no python at {} (set SAFEWEIGHTS_PYTHON)",
                py.display()
            );
            return None;
        };
        let stderr = String::from_utf8_lossy(&run.stderr);
        if !run.status.success()
            && ["torch", "numpy"]
                .iter()
                .any(|m| stderr.contains(&format!("No module named '{m}'")))
        {
            eprintln!(
                "SKIPPED: the python at {} lacks torch or numpy (set SAFEWEIGHTS_PYTHON)",
                py.display()
            );
            return None;
        }
        assert!(
            run.status.success(),
            "{script} failed:\n{}\n{stderr}",
            String::from_utf8_lossy(&run.stdout),
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
