//! A file truncated while a command streams it is an error naming it, not
//! a SIGBUS (issue 15): the CLI reads local files with pread.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One U8 tensor of `len` zero bytes, stored sparse.
fn sparse_file(path: &Path, len: u64) {
    let mut header =
        format!(r#"{{"w":{{"dtype":"U8","shape":[{len}],"data_offsets":[0,{len}]}}}}"#);
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&(header.len() as u64).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(8 + header.len() as u64 + len).unwrap();
}

fn truncated_while_running(command: &str) {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.safetensors");
    sparse_file(&path, 8 << 30);
    let child = Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args([command, path.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("became shorter"), "{stderr}");
}

#[test]
fn stats_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    truncated_while_running("stats");
}

#[test]
fn checksum_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    truncated_while_running("checksum");
}

/// A `.npy` file of `len` uint8 zeros, stored sparse.
fn sparse_npy(path: &Path, len: u64) {
    let mut header = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': ({len},), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(10 + header.len() as u64 + len).unwrap();
}

#[test]
fn convert_of_a_file_truncated_while_it_runs_is_an_error_naming_it() {
    // convert copies out of a map of its input: the copy runs under the
    // bus-error guard, so the cut is an error, not a SIGBUS (exit 135).
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.npy");
    let output = work.path().join("out");
    sparse_npy(&path, 4 << 30);
    let child = Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args(["convert", path.to_str().unwrap()])
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let result = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(path.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("became shorter"), "{stderr}");
    // The failed conversion left nothing behind (its temporary file is gone).
    let left: Vec<_> = std::fs::read_dir(&output)
        .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}
