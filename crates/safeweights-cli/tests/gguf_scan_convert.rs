//! `scan` and `convert` on GGUF files: a GGUF file is reported as what it
//! is, its chat template as data (suspicious only when it reaches for
//! Python internals), a malformed one as suspicious; `convert` goes both
//! ways with exit codes scripts can rely on.
mod common;

use std::path::Path;

use common::{code, json, run, stdout};
use safeweights_gguf::{GgmlType, GgufWriter, Layout, OwnedValue, TensorDecl};

/// A small GGUF file with one Q8_0 tensor and the given chat template.
fn write_gguf(path: &Path, template: &str) {
    let layout = Layout {
        version: 3,
        metadata: vec![
            (
                "general.architecture".into(),
                OwnedValue::String("llama".into()),
            ),
            (
                "tokenizer.chat_template".into(),
                OwnedValue::String(template.into()),
            ),
        ],
        tensors: vec![TensorDecl {
            name: "w".into(),
            dims: vec![32, 2],
            ggml_type: GgmlType::Q8_0,
            offset: None,
        }],
    };
    let values: Vec<f32> = (0..64).map(|i| i as f32 / 8.0 - 4.0).collect();
    let mut blocks = Vec::new();
    safeweights_gguf::quant::quantize(GgmlType::Q8_0, &values, &mut blocks).unwrap();
    let mut writer = GgufWriter::new(std::fs::File::create(path).unwrap(), &layout).unwrap();
    writer.write_tensor("w", &blocks).unwrap();
    writer.finish(None).unwrap();
}

#[test]
fn scan_reports_gguf_and_its_chat_template_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("model.bin");
    write_gguf(
        &good,
        "{% for m in messages %}{{ m['content'] }}{% endfor %}",
    );
    let doc = json(&["scan", "--all", good.to_str().unwrap()], 0);
    let text = doc.to_string();
    assert_eq!(doc["verdict"], "safe", "{text}");
    assert!(text.contains("tokenizer.chat_template"), "{text}");
    assert!(text.contains("never code"), "{text}");

    let evil = dir.path().join("evil.gguf");
    write_gguf(
        &evil,
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    );
    let output = run(&["scan", evil.to_str().unwrap()]);
    assert_eq!(code(&output), 1);
    assert!(
        stdout(&output).contains("__globals__"),
        "{}",
        stdout(&output)
    );

    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let doc = json(&["scan", cut.to_str().unwrap()], 1);
    assert_eq!(doc["verdict"], "suspicious", "{doc}");
}

#[test]
fn convert_goes_both_ways_with_reliable_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.gguf");
    write_gguf(&input, "{{ messages }}");
    let out = dir.path().join("out.safetensors");
    let doc = json(
        &["convert", input.to_str().unwrap(), out.to_str().unwrap()],
        0,
    );
    assert_eq!(
        (doc["input_format"].as_str(), doc["tensors"].as_u64()),
        (Some("gguf"), Some(1))
    );
    // Existing output without --force: a usage error, exit 2.
    let again = run(&["convert", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code(&again), 2);
    // Back to GGUF at q8_0 gives the same blocks.
    let back = dir.path().join("back.gguf");
    let args = [
        "convert",
        out.to_str().unwrap(),
        back.to_str().unwrap(),
        "--outtype",
        "q8_0",
    ];
    json(&args, 0);
    let original = safeweights_gguf::GgufFile::open(&input).unwrap();
    let rebuilt = safeweights_gguf::GgufFile::open(&back).unwrap();
    let (a, b) = (original.parse().unwrap(), rebuilt.parse().unwrap());
    assert_eq!(a.tensor_bytes("w").unwrap(), b.tensor_bytes("w").unwrap());
    // Options of the other direction are usage errors.
    let wrong = run(&["convert", input.to_str().unwrap(), "--outtype", "q8_0"]);
    assert_eq!(code(&wrong), 2);
    let wrong = run(&[
        "convert",
        out.to_str().unwrap(),
        "x.gguf",
        "--outtype",
        "q3_k",
    ]);
    assert_eq!(code(&wrong), 2);
    // A truncated GGUF is invalid input: exit 1, nothing written.
    let bytes = std::fs::read(&input).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 40]).unwrap();
    let target = dir.path().join("cut.safetensors");
    let failed = run(&["convert", cut.to_str().unwrap(), target.to_str().unwrap()]);
    assert_eq!(code(&failed), 1, "{}", common::stderr(&failed));
    assert!(!target.exists());
}

#[test]
fn stats_and_diff_see_dequantized_values() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("model.gguf");
    write_gguf(&input, "{{ messages }}");
    let doc = json(&["stats", input.to_str().unwrap()], 0);
    let w = &doc["tensors"][0];
    assert_eq!(
        (w["name"].as_str(), w["dtype"].as_str()),
        (Some("w"), Some("F32")),
        "{doc}"
    );
    // The Q8_0 blocks of -4..3.875 in steps of 1/8 decode close to them.
    let (min, max) = (w["min"].as_f64().unwrap(), w["max"].as_f64().unwrap());
    assert!(
        (min + 4.0).abs() < 0.02 && (max - 3.875).abs() < 0.02,
        "{w}"
    );
    let out = dir.path().join("out.safetensors");
    json(
        &["convert", input.to_str().unwrap(), out.to_str().unwrap()],
        0,
    );
    let same = run(&["diff", input.to_str().unwrap(), out.to_str().unwrap()]);
    assert_eq!(code(&same), 0, "{}", stdout(&same));
    let other = dir.path().join("other.gguf");
    write_gguf(&other, "x");
    let bytes = std::fs::read(&other).unwrap();
    let mut changed = bytes.clone();
    let at = bytes.len() - 60; // inside the blocks, past the header
    changed[at] ^= 0x40;
    std::fs::write(&other, &changed).unwrap();
    let differs = run(&["diff", input.to_str().unwrap(), other.to_str().unwrap()]);
    assert_eq!(code(&differs), 1, "{}", stdout(&differs));
}
