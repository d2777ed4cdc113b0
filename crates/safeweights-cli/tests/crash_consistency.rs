//! `shard` replaces a checkpoint atomically as a set, only with `--force`,
//! and `validate` refuses a mix of two saves (issue 15).

mod common;

use std::path::Path;
use std::process::Command;

use common::{code, run, stderr};
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
use safeweights::{Dtype, Metadata};

/// Four 4 KiB tensors filled with `fill + i`, and `step` in the metadata.
fn write_source(path: &Path, fill: u8, step: &str) {
    let data: Vec<Vec<u8>> = (0..4).map(|i| vec![fill + i; 4096]).collect();
    let tensors: Vec<(String, TensorRef<'_>)> = data
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("w{i}"), TensorRef::new(Dtype::U8, vec![4096], d)))
        .collect();
    let metadata: Metadata = [("step".to_owned(), step.to_owned())].into_iter().collect();
    serialize_to_file(&tensors, Some(&metadata), path, &WriteOptions::default()).unwrap();
}

fn shard(input: &Path, outdir: &Path, extra: &[&str], crash_at: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args(["shard", input.to_str().unwrap(), "--max-shard-size", "4096"])
        .arg(outdir)
        .args(extra)
        .env("SAFEWEIGHTS_CRASH_AT", crash_at)
        .output()
        .unwrap()
}

/// The step recorded in the checkpoint `validate` accepts in `dir`.
fn step_of(dir: &Path) -> String {
    let output = run(&["inspect", dir.to_str().unwrap(), "--json"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    doc["metadata"]["step"].as_str().unwrap().to_owned()
}

#[test]
fn shard_refuses_to_overwrite_a_checkpoint_without_force() {
    let work = tempfile::tempdir().unwrap();
    let (old, new, out) = (
        work.path().join("old.st"),
        work.path().join("new.st"),
        work.path().join("out"),
    );
    write_source(&old, 0, "1");
    write_source(&new, 100, "2");
    assert_eq!(code(&shard(&old, &out, &[], "never")), 0);
    let refused = shard(&new, &out, &[], "never");
    assert_eq!(code(&refused), 2);
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(step_of(&out), "1");
    assert_eq!(code(&shard(&new, &out, &["--force"], "never")), 0);
    assert_eq!(step_of(&out), "2");
}

// Crash points exist only in builds with the test-only `fault-injection`
// feature, which scripts/test.sh enables.
#[cfg(feature = "fault-injection")]
#[test]
fn shard_killed_at_every_step_leaves_a_checkpoint_validate_accepts_whole() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = (work.path().join("old.st"), work.path().join("new.st"));
    write_source(&old, 0, "1");
    write_source(&new, 100, "2");
    for step in ["shard-1", "shard-2", "shard-3", "shard-4", "index"] {
        let out = work.path().join(step);
        assert_eq!(code(&shard(&old, &out, &[], "never")), 0);
        let killed = shard(&new, &out, &["--force"], step);
        assert!(killed.status.code().is_none(), "{step}: not killed");
        let valid = run(&["validate", out.to_str().unwrap()]);
        assert_eq!(code(&valid), 0, "{step}: {}", stderr(&valid));
        let expected = if step == "index" { "2" } else { "1" };
        assert_eq!(step_of(&out), expected, "{step}");
    }
}

#[test]
fn validate_refuses_a_mix_of_two_saves() {
    let work = tempfile::tempdir().unwrap();
    let (old, new) = (work.path().join("old.st"), work.path().join("new.st"));
    write_source(&old, 0, "1");
    write_source(&new, 100, "2");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    assert_eq!(code(&shard(&old, &a, &[], "never")), 0);
    assert_eq!(code(&shard(&new, &b, &[], "never")), 0);
    let name = "model-00002-of-00004.safetensors";
    std::fs::copy(b.join(name), a.join(name)).unwrap();
    let output = run(&["validate", a.to_str().unwrap()]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("mix of two saves"),
        "{}",
        stderr(&output)
    );
    assert!(stderr(&output).contains(name), "{}", stderr(&output));
}

#[cfg(feature = "fault-injection")]
#[test]
fn convert_force_killed_after_a_shard_leaves_the_old_checkpoint_loadable() {
    let Some(python) = common::python() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let script = "import sys, numpy as np\n\
        for name, fill in (('a', 0), ('b', 10)):\n\
        \x20   np.savez(f'{sys.argv[1]}/{name}.npz', **{f'w{i}': np.full(1024, fill + i, dtype=np.float32) for i in range(4)})\n";
    let made = Command::new(python)
        .args(["-c", script])
        .arg(work.path())
        .status()
        .unwrap();
    assert!(made.success());
    let out = work.path().join("out");
    let convert = |input: &str, crash_at: &str| {
        Command::new(env!("CARGO_BIN_EXE_safeweights"))
            .arg("convert")
            .arg(work.path().join(input))
            .arg(format!("{}/", out.display()))
            .args(["--max-shard-size", "4096", "--force"])
            .env("SAFEWEIGHTS_CRASH_AT", crash_at)
            .output()
            .unwrap()
    };
    assert_eq!(code(&convert("a.npz", "never")), 0);
    for step in ["shard-1", "shard-3", "index"] {
        assert!(convert("b.npz", step).status.code().is_none(), "{step}");
        let valid = run(&["validate", out.to_str().unwrap()]);
        assert_eq!(code(&valid), 0, "{step}: {}", stderr(&valid));
        let dump = run(&[
            "dump",
            out.to_str().unwrap(),
            "w1",
            "--slice",
            "0:1",
            "--json",
        ]);
        let doc: serde_json::Value = serde_json::from_slice(&dump.stdout).unwrap();
        let expected = if step == "index" { 11.0 } else { 1.0 };
        assert_eq!(doc["values"][0].as_f64(), Some(expected), "{step}");
        assert_eq!(code(&convert("a.npz", "never")), 0);
    }
}
