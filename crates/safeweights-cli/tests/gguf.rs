//! GGUF files through the CLI, recognised by content whatever their name:
//! `inspect` (text and `--json`) and `validate`, on a file written by the
//! real `gguf` package (the safeweights-gguf oracle script) and on a
//! truncated copy of it.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{code, json, run, stdout};

/// Writes the oracle file as `dir/name`; `None` when the test may skip.
fn gguf_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let python = common::require(
        "a Python with the gguf package",
        common::python_with(&["gguf", "numpy"]),
    )?;
    let script = common::workspace().join("crates/safeweights-gguf/tests/gguf_oracle.py");
    let path = dir.join(name);
    let run = Command::new(python)
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    Some(path)
}

#[test]
fn inspect_json_gives_every_key_and_tensor_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = gguf_file(dir.path(), "model.bin") else {
        return;
    };
    let doc = json(&["inspect", path.to_str().unwrap()], 0);
    assert_eq!(
        (doc["format"].as_str(), doc["version"].as_u64()),
        (Some("gguf"), Some(3))
    );
    let metadata = &doc["metadata"];
    assert_eq!(metadata["t.u64"]["value"], serde_json::json!(u64::MAX));
    assert_eq!(
        metadata["t.nested"]["value"],
        serde_json::json!([[1, 2], [3]])
    );
    assert_eq!(metadata["t.nested"]["element_type"], "ARRAY");
    let tokens = metadata["tokenizer.ggml.tokens"]["value"]
        .as_array()
        .unwrap();
    assert_eq!(
        (tokens.len(), tokens[302].as_str()),
        (303, Some("<|im_end|>"))
    );
    let tensors = doc["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 13);
    let q6 = tensors.iter().find(|t| t["name"] == "q6_k").unwrap();
    assert_eq!(q6["ggml_type"], "Q6_K");
    assert_eq!(q6["shape"], serde_json::json!([2, 512]));
    assert_eq!(q6["ggml_dims"], serde_json::json!([512, 2]));
    assert_eq!(q6["bytes"], 2 * 210 * 2);
    assert_eq!(doc["summary"]["tensors"], 13);
}

#[test]
fn inspect_text_summarises_long_arrays() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = gguf_file(dir.path(), "weights.safetensors") else {
        return;
    };
    let output = run(&["inspect", path.to_str().unwrap()]);
    assert_eq!(code(&output), 0);
    let text = stdout(&output);
    let tokens = text
        .lines()
        .find(|l| l.contains("tokenizer.ggml.tokens"))
        .unwrap();
    assert!(
        tokens.contains("[STRING × 303]") && tokens.contains('…'),
        "{tokens}"
    );
    assert!(!tokens.contains("tok300"), "{tokens}");
    assert!(
        text.contains("IQ2_XXS") && text.contains("GGUF v3"),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.trim_start().starts_with("t.f32") && l.ends_with(" 0.1")));
}

#[test]
fn validate_accepts_the_file_and_rejects_a_truncated_copy() {
    let dir = tempfile::tempdir().unwrap();
    let Some(path) = gguf_file(dir.path(), "model.gguf") else {
        return;
    };
    let doc = json(&["validate", path.to_str().unwrap()], 0);
    assert_eq!(doc["files"][0]["tensors"], 13);
    // Cut the last tensor's last byte (the writer pads after it, and
    // trailing padding is not required).
    let inspected = json(&["inspect", path.to_str().unwrap()], 0);
    let last = &inspected["tensors"][12];
    let end = last["offset"].as_u64().unwrap() + last["bytes"].as_u64().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..end as usize - 1]).unwrap();
    let doc = json(
        &[
            "validate",
            path.to_str().unwrap(),
            truncated.to_str().unwrap(),
        ],
        1,
    );
    assert_eq!(doc["files"][0]["valid"], true);
    let report = &doc["files"][1];
    assert_eq!(
        (report["valid"].as_bool(), report["kind"].as_str()),
        (Some(false), Some("invalid"))
    );
    let message = report["error"].as_str().unwrap();
    assert!(
        message.contains("\"tq1_0\"") && message.contains("past the end"),
        "{message}"
    );
}
