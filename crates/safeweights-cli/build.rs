//! Records the git commit the binary is built from, for `--version`.
//!
//! Only when this crate's own files are tracked by the enclosing git
//! repository: a build from an sdist, a `cargo package` directory (which sits
//! under the repository's ignored `target/`) or a crates.io download reports
//! no commit rather than a wrong one. Without git, nothing is recorded and
//! the build goes on.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    if let Some(target) = std::env::var_os("TARGET") {
        println!(
            "cargo:rustc-env=SAFEWEIGHTS_BUILD_TARGET={}",
            target.to_string_lossy()
        );
    }
    // Run again when HEAD moves (a commit, a checkout, a pull), also while
    // this crate is not yet tracked, so its first commit is picked up.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        // A missing file would make cargo rerun this script on every build.
        if let Some(path) = git(&dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    if git(&dir, &["ls-files", "--error-unmatch", "build.rs"]).is_none() {
        return;
    }
    let Some(commit) = git(&dir, &["rev-parse", "--short=9", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=SAFEWEIGHTS_GIT_COMMIT={commit}");
    if let Some(date) = git(&dir, &["log", "-1", "--format=%cs", "HEAD"]) {
        println!("cargo:rustc-env=SAFEWEIGHTS_GIT_DATE={date}");
    }
}

/// The trimmed stdout of `git ARGS` run in `dir`, or `None` when git is
/// missing, fails, or prints nothing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}
