//! Fixtures written by a Python generator (torch, numpy) once per test
//! binary, and the hex the generators write expected bytes in.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::{python_with, require};

/// Runs the calling crate's `tests/fixtures/<script>` once per test binary,
/// into a fresh folder named after the script under the crate's
/// `CARGO_TARGET_TMPDIR`; see [`generate_into`](crate::generate_into). A
/// macro because both folders are known only when the caller's tests
/// compile.
///
/// ```ignore
/// static FIXTURES: OnceLock<Option<PathBuf>> = OnceLock::new();
/// let Some(dir) = safeweights_testkit::generate!("gen_torch.py", &FIXTURES) else { return };
/// ```
#[macro_export]
macro_rules! generate {
    ($script:expr, $cell:expr) => {{
        let script: &str = $script;
        $crate::generate_into(
            &::std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(script),
            &::std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(script.trim_end_matches(".py")),
            $cell,
        )
    }};
}

/// Runs the Python `generator` with the folder `out` (emptied first) as
/// its argument, once per `cell`, and returns `out`. `None` when no Python
/// with torch and numpy is available and the test may skip ([`require`]
/// decides); a generator that fails fails the test with its output.
pub fn generate_into(
    generator: &Path,
    out: &Path,
    cell: &'static OnceLock<Option<PathBuf>>,
) -> Option<&'static Path> {
    cell.get_or_init(|| {
        let python = require(
            "a Python with torch and numpy",
            python_with(&["torch", "numpy"]),
        )?;
        if out.exists() {
            std::fs::remove_dir_all(out).expect("clear the fixture dir");
        }
        std::fs::create_dir_all(out).expect("create the fixture dir");
        let run = Command::new(&python)
            .arg(generator)
            .arg(out)
            .output()
            .expect("run the fixture generator");
        assert!(
            run.status.success(),
            "{} failed:\n{}\n{}",
            generator.display(),
            String::from_utf8_lossy(&run.stdout),
            String::from_utf8_lossy(&run.stderr),
        );
        Some(out.to_path_buf())
    })
    .as_deref()
}

/// Decodes lowercase hex (as the generators write expected bytes).
pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhex_decodes_every_byte_value() {
        let all: Vec<u8> = (0..=255).collect();
        let hex: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(unhex(&hex), all);
    }
}
