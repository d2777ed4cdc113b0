//! The real `gguf` package (llama.cpp's gguf-py) as the oracle: a file
//! written by its GGUFWriter, with metadata of every value type (nested
//! arrays, a tokenizer-like string array) and tensors of plain, quantized
//! and random-block types, must look to us exactly as it does to its
//! GGUFReader: same keys, types, values, tensor names, ggml types, shapes,
//! absolute data offsets and bytes.
mod common;

use std::process::Command;

use safeweights_gguf::{GgufFile, Value};
use serde_json::{json, Value as Json};

/// The value as the oracle prints it: nested arrays flattened (GGUFReader's
/// `contents()` flattens them), floats wrapped in `{"float": x}`.
fn flatten(value: &Value<'_>, out: &mut Vec<Json>) {
    match value {
        Value::Array(array) => array.iter().for_each(|item| flatten(&item, out)),
        other => out.push(scalar(other)),
    }
}

fn scalar(value: &Value<'_>) -> Json {
    value.to_json(&|f| json!({ "float": f }))
}

/// GGUFReader's type chain: the value's type, then (for arrays) the
/// element type of the first element at each level.
fn types(value: &Value<'_>) -> Vec<&'static str> {
    let mut chain = vec![value.value_type().name()];
    let mut current = value.clone();
    while let Value::Array(array) = current {
        chain.push(array.element_type().name());
        match array.get(0) {
            Some(first @ Value::Array(_)) => current = first,
            _ => break,
        }
    }
    chain
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn we_see_what_gguf_py_sees() {
    let Some(python) = common::require(
        "a Python with the gguf package",
        common::python_with(&["gguf", "numpy"]),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oracle.gguf");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gguf_oracle.py");
    let run = Command::new(&python)
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let oracle: Json = serde_json::from_slice(&run.stdout).unwrap();

    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.bytes(), std::fs::read(&path).unwrap());
    let gguf = file.parse().unwrap();

    let theirs = oracle["metadata"].as_object().unwrap();
    assert_eq!(gguf.metadata().len(), theirs.len());
    for (key, value) in gguf.metadata() {
        let expected = &theirs[*key];
        assert_eq!(json!(types(value)), expected["types"], "types of {key}");
        let ours = match value {
            Value::Array(_) => {
                let mut flat = Vec::new();
                flatten(value, &mut flat);
                Json::Array(flat)
            }
            other => scalar(other),
        };
        assert_eq!(ours, expected["value"], "value of {key}");
    }
    let Some(Value::Array(tokens)) = gguf.get("tokenizer.ggml.tokens") else {
        panic!("no token list");
    };
    assert_eq!(
        (tokens.len(), tokens.get(302)),
        (303, Some(Value::String("<|im_end|>")))
    );

    let theirs = oracle["tensors"].as_array().unwrap();
    assert_eq!(gguf.tensors().len(), theirs.len());
    assert_eq!(theirs.len(), 13);
    for (ours, expected) in gguf.tensors().iter().zip(theirs) {
        assert_eq!(json!(ours.name), expected["name"]);
        assert_eq!(
            json!(ours.ggml_type.id()),
            expected["type"],
            "{}",
            ours.name
        );
        assert_eq!(json!(ours.dims), expected["dims"], "{}", ours.name);
        let offset = gguf.data_offset() + ours.offset;
        assert_eq!(json!(offset), expected["offset"], "{}", ours.name);
        let data = gguf.tensor_bytes(ours.name).unwrap();
        assert_eq!(json!(hex(data)), expected["bytes"], "{}", ours.name);
        assert_eq!(expected["bytes"], expected["reader_bytes"], "{}", ours.name);
    }
}
