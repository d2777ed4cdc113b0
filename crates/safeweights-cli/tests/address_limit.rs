//! `inspect` and `validate` read only the header (and the file size) with
//! pread, so a file far larger than the address-space limit is fine (issue 15).

use std::process::Command;

use safeweights_testkit::files::sparse_safetensors;

/// Runs the binary with its address space limited to 1 GiB.
fn run_limited(args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_safeweights"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn inspect_and_validate_work_under_an_address_space_limit_smaller_than_the_file() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.safetensors");
    sparse_safetensors(&path, 16 << 30);
    let file = path.to_str().unwrap();
    for command in ["inspect", "validate"] {
        let output = run_limited(&[command, file, "--json"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{command}: {stderr}");
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&run_limited(&["inspect", file, "--json"]).stdout).unwrap();
    assert_eq!(doc["tensors"][0]["shape"][0], 16u64 << 30);
}
