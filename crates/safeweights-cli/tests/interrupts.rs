//! Ctrl-C and SIGTERM stop a writing command promptly, remove its
//! temporary files and leave the destination as it was; `scan` reports
//! leftovers of killed writes as such and `clean` removes them (issue 15).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{code, json, run};
use safeweights_testkit::files::{safetensors_head, write_sparse};

/// A file of `tensors` U8 tensors of `each` bytes, all zero (sparse).
fn big_file(path: &Path, tensors: usize, each: u64) {
    let entries: Vec<String> = (0..tensors as u64)
        .map(|i| {
            format!(
                r#""t{i}":{{"dtype":"U8","shape":[{each}],"data_offsets":[{},{}]}}"#,
                i * each,
                (i + 1) * each
            )
        })
        .collect();
    let header = format!(r#"{{"__metadata__":{{"step":"1"}},{}}}"#, entries.join(","));
    write_sparse(path, &safetensors_head(&header), tensors as u64 * each);
}

fn temporaries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".tmp"))
        .collect()
}

/// Waits until `ready` holds, then sends `signal` and returns the exit
/// code and how long the command took to exit after the signal.
fn interrupt(mut child: Child, signal: &str, ready: impl Fn() -> bool) -> (Option<i32>, Duration) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before the signal"
        );
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(1));
    }
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    (status.code(), sent.elapsed())
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_safeweights"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigint_during_shard_removes_the_temporary_file_and_the_unpublished_shards() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("big.safetensors");
    big_file(&source, 4, 256 << 20);
    let out = work.path().join("out");
    let first = out.join("model-00001-of-00004.safetensors");
    let child = spawn(&[
        "shard",
        source.to_str().unwrap(),
        "--max-shard-size",
        "256MiB",
        out.to_str().unwrap(),
    ]);
    let (exit, took) = interrupt(child, "-INT", || first.exists());
    assert_eq!(exit, Some(130));
    assert!(took < Duration::from_secs(2), "{took:?}");
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn sigterm_during_metadata_copy_leaves_the_file_and_no_temporary() {
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("big.safetensors");
    big_file(&path, 1, 1 << 30);
    let before = std::fs::metadata(&path).unwrap().len();
    let child = spawn(&[
        "metadata",
        path.to_str().unwrap(),
        "--set",
        "step=2",
        "--copy",
    ]);
    let (exit, _) = interrupt(child, "-TERM", || !temporaries(work.path()).is_empty());
    assert_eq!(exit, Some(143));
    assert!(temporaries(work.path()).is_empty());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    let doc = json(&["inspect", path.to_str().unwrap()], 0);
    assert_eq!(doc["metadata"]["step"], "1");
}

#[test]
fn scan_reports_a_leftover_temporary_file_and_clean_removes_it() {
    let work = tempfile::tempdir().unwrap();
    let leftover = work.path().join(".model.safetensors.a1B2c3.tmp");
    std::fs::write(&leftover, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let dir = work.path().to_str().unwrap();
    let scanned = json(&["scan", dir], 0);
    assert_eq!(
        scanned["files"][0]["format"],
        "an incomplete safeweights write"
    );
    assert_eq!(scanned["files"][0]["verdict"], "safe");
    let text = common::stdout(&run(&["scan", dir]));
    assert!(text.contains("an incomplete safeweights write"), "{text}");

    let dry = json(&["clean", dir, "--dry-run"], 0);
    assert_eq!(dry["removed"][0]["bytes"], 13);
    assert!(leftover.exists());
    let done = json(&["clean", dir], 0);
    assert_eq!(done["removed"].as_array().unwrap().len(), 1);
    assert!(!leftover.exists());
    assert_eq!(code(&run(&["clean", dir])), 0);
}
