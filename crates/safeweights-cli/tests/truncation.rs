//! A file truncated while a command streams it is an error naming it, not
//! a SIGBUS (issue 15): the CLI reads local files with pread.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use safeweights_testkit::files::{listing, sparse_npy, sparse_safetensors, truncate};

/// Runs the binary with `args`, cuts `input` to one page while it runs,
/// and checks that it failed with exit 2 and a message naming `input` as
/// the file that became shorter.
fn run_while_truncating(args: &[&Path], input: &Path) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    truncate(input, 4096);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains(input.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("became shorter"), "{stderr}");
    output
}

fn truncated_while_running(command: &str) {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.safetensors");
    sparse_safetensors(&path, 8 << 30);
    run_while_truncating(&[Path::new(command), &path], &path);
}

#[test]
fn stats_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    truncated_while_running("stats");
}

#[test]
fn checksum_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    truncated_while_running("checksum");
}

#[test]
fn convert_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    // convert copies out of a map of its input: the copy runs under the
    // bus-error guard, so the cut is an error, not a SIGBUS (exit 135).
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.npy");
    let output = work.path().join("out");
    sparse_npy(&path, 4 << 30);
    run_while_truncating(&[Path::new("convert"), &path, &output], &path);
    // The failed conversion left nothing behind (its temporary file is gone).
    let left = if output.exists() {
        listing(&output)
    } else {
        Vec::new()
    };
    assert!(left.is_empty(), "{left:?}");
}
