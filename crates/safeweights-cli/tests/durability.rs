//! Writers flush the file before the rename and the directory after it by
//! default, and not with `--no-fsync` (issue 15). Counted with strace,
//! which `scripts/install-test-deps.sh` installs.

mod common;

use std::path::Path;
use std::process::Command;

fn fsync_count(work: &Path, args: &[&str]) -> usize {
    let trace = work.join("trace");
    let status = Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_safeweights"))
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "{args:?}");
    let text = std::fs::read_to_string(&trace).unwrap();
    text.lines().filter(|l| l.contains("fsync(")).count()
}

#[test]
fn merge_flushes_unless_no_fsync() {
    let strace = Command::new("strace").arg("-V").output().ok();
    if common::require("strace", strace).is_none() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let input = common::fixture("sharded");
    let out = work.path().join("merged.safetensors");
    let out = out.to_str().unwrap();
    assert_eq!(fsync_count(work.path(), &["merge", &input, out]), 2);
    assert_eq!(
        fsync_count(work.path(), &["merge", &input, out, "--no-fsync"]),
        0
    );
}
