//! Exit codes decided by the kind of error, and the one JSON document a
//! failed command prints with `--json`. No Python fixtures: these files are
//! made by hand so that each error kind is certain.

mod common;

use common::{code, json, run, stderr, stdout};
use serde_json::Value;

fn error_doc(args: &[&str], expected_code: i32) -> Value {
    let doc = json(args, expected_code);
    assert_eq!(doc.as_object().unwrap().len(), 1, "{doc}");
    doc["error"].clone()
}

/// A legacy torch checkpoint (magic number, protocol, system info, then
/// the object) whose loading would call `os.system("ls")`.
const MALICIOUS_PICKLE: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00.\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";

#[test]
fn each_error_kind_has_its_exit_code_and_json_document() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let missing = missing.to_str().unwrap();
    let error = error_doc(&["inspect", missing], 2);
    assert_eq!(error["kind"], "input");
    assert_eq!(error["path"], missing);
    assert!(!error["message"].as_str().unwrap().contains(missing));

    let corrupt = dir.path().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"\x05\x00\x00\x00\x00\x00\x00\x00{\"a\":").unwrap();
    let error = error_doc(&["inspect", corrupt.to_str().unwrap()], 1);
    assert_eq!(error["kind"], "invalid");
    assert_eq!(error["path"], corrupt.to_str().unwrap());

    let evil = dir.path().join("evil.bin");
    std::fs::write(&evil, MALICIOUS_PICKLE).unwrap();
    let out = dir.path().join("evil.safetensors");
    let error = error_doc(
        &["convert", evil.to_str().unwrap(), out.to_str().unwrap()],
        1,
    );
    assert_eq!(error["kind"], "unsafe");
    assert_eq!(error["path"], evil.to_str().unwrap());
    assert!(error["message"].as_str().unwrap().contains("os.system"));
    assert!(!out.exists());

    let error = error_doc(
        &["dump", corrupt.to_str().unwrap(), "a", "--slice", "::0"],
        1,
    );
    assert_eq!(error["kind"], "invalid");
}

#[test]
fn convert_names_the_input_once() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.bin");
    std::fs::write(&evil, MALICIOUS_PICKLE).unwrap();
    let shown = evil.to_str().unwrap();
    let output = run(&[
        "convert",
        shown,
        dir.path().join("o.safetensors").to_str().unwrap(),
    ]);
    assert_eq!(code(&output), 1);
    let text = stderr(&output);
    assert_eq!(text.matches(shown).count(), 1, "{text}");
    assert!(stdout(&output).is_empty(), "no --json, no document");
}

#[test]
fn usage_errors_are_exit_2_with_kind_usage() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.safetensors");
    std::fs::write(
        &file,
        b"\x38\x00\x00\x00\x00\x00\x00\x00{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}   \x01\x02",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let error = error_doc(&["dump", file, "nope"], 2);
    assert_eq!(error["kind"], "usage");
    let error = error_doc(&["dump", file, "a", "--slice", "::0"], 2);
    assert_eq!(error["kind"], "usage");
    let error = error_doc(&["--timeout", "-1", "inspect", file], 2);
    assert_eq!(error["kind"], "usage");
}
