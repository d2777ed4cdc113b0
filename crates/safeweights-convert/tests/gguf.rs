//! GGUF conversions both ways, against the real `gguf` package and
//! `transformers`: dequantized values equal `gguf.quants.dequantize` bit
//! for bit, raw blocks come back byte for byte, our GGUF files read back in
//! `gguf.GGUFReader` with `gguf.quants.quantize`'s bytes, and a tiny Llama
//! survives safetensors -> GGUF -> safetensors with the same logits.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use safeweights::read::SafetensorsFile;
use safeweights::Dtype;
use safeweights_convert::gguf::{
    gguf_to_safetensors, safetensors_to_gguf, Arch, GgufError, GgufToSafetensors,
    SafetensorsToGguf, LAYOUT_KEY, METADATA_KEY,
};
use safeweights_gguf::{GgmlType, GgufFile};

fn python(modules: &[&str]) -> Option<PathBuf> {
    common::require(
        &format!("a Python with {}", modules.join(", ")),
        common::python_with(modules),
    )
}

fn run(python: &Path, script: &str, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const QUANT_ORACLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../safeweights-gguf/tests/quant_oracle.py"
);
const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf_check.py");

/// Every type gguf.quants knows, written by GGUFWriter, with its values.
fn types_file() -> Option<tempfile::TempDir> {
    let py = python(&["gguf", "numpy"])?;
    let dir = tempfile::tempdir().unwrap();
    run(&py, QUANT_ORACLE, &[dir.path().as_os_str()]);
    Some(dir)
}

#[test]
fn dequantized_tensors_equal_gguf_quants_and_metadata_is_kept() {
    let Some(dir) = types_file() else { return };
    let input = dir.path().join("types.gguf");
    let output = dir.path().join("out.safetensors");
    let report = gguf_to_safetensors(&input, &output, &GgufToSafetensors::default()).unwrap();
    let file = SafetensorsFile::open(&output).unwrap();
    let gguf_file = GgufFile::open(&input).unwrap();
    let gguf = gguf_file.parse().unwrap();
    assert_eq!(report.tensors, gguf.tensors().len());
    for t in gguf.tensors() {
        let info = file.info(t.name).unwrap();
        let bytes = file.bytes_of(info).unwrap();
        let expected = std::fs::read(dir.path().join(format!("{}.f32", t.name))).unwrap();
        match t.ggml_type {
            // Plain halves keep their dtype and bytes.
            GgmlType::F16 | GgmlType::Bf16 => assert_eq!(&*bytes, gguf.bytes_of(t), "{}", t.name),
            _ => {
                assert_eq!(info.dtype, Dtype::F32, "{}", t.name);
                assert!(
                    *bytes == expected[..],
                    "{} differs from gguf.quants",
                    t.name
                );
            }
        }
        let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
        assert_eq!(info.shape, shape, "{}", t.name);
    }
    let metadata = file.header().metadata().unwrap();
    let doc: serde_json::Value = serde_json::from_str(&metadata[METADATA_KEY]).unwrap();
    assert_eq!(doc[0]["key"], "general.architecture");
    assert_eq!(doc[0]["value"], "llama");
}

#[test]
fn keep_quantized_round_trips_byte_for_byte_with_mxfp4_as_f4() {
    let Some(dir) = types_file() else { return };
    let input = dir.path().join("types.gguf");
    let raw = dir.path().join("raw.safetensors");
    let options = GgufToSafetensors {
        keep_quantized: true,
        ..Default::default()
    };
    gguf_to_safetensors(&input, &raw, &options).unwrap();
    let file = SafetensorsFile::open(&raw).unwrap();
    assert_eq!(file.info("r.MXFP4").unwrap().dtype, Dtype::F4);
    assert_eq!(file.info("r.MXFP4.scales").unwrap().dtype, Dtype::F8_E8M0);
    assert_eq!(file.info("r.Q4_K").unwrap().dtype, Dtype::U8);
    assert!(file.header().metadata().unwrap().contains_key(LAYOUT_KEY));
    let back = dir.path().join("back.gguf");
    let report = safetensors_to_gguf(&raw, &back, &SafetensorsToGguf::default()).unwrap();
    assert!(report.rebuilt);
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&input).unwrap());
    // Options that would change the file are refused, and nothing is written.
    let refused = dir.path().join("refused.gguf");
    let with_outtype = SafetensorsToGguf {
        outtype: Some(GgmlType::Q8_0),
        ..Default::default()
    };
    let e = safetensors_to_gguf(&raw, &refused, &with_outtype).unwrap_err();
    assert!(matches!(e, GgufError::Usage { .. }), "{e}");
    assert!(!refused.exists());
}

#[test]
fn casts_and_refusals() {
    let Some(dir) = types_file() else { return };
    let input = dir.path().join("types.gguf");
    let output = dir.path().join("bf16.safetensors");
    let options = GgufToSafetensors {
        dtype: Some(Dtype::BF16),
        ..Default::default()
    };
    gguf_to_safetensors(&input, &output, &options).unwrap();
    let file = SafetensorsFile::open(&output).unwrap();
    assert!(file.header().tensors().all(|t| t.dtype == Dtype::BF16));
    // An existing output needs force.
    let e = gguf_to_safetensors(&input, &output, &options).unwrap_err();
    assert!(matches!(e, GgufError::OutputExists { .. }), "{e}");
    let bad = GgufToSafetensors {
        dtype: Some(Dtype::I8),
        ..Default::default()
    };
    let e = gguf_to_safetensors(&input, &dir.path().join("x.safetensors"), &bad).unwrap_err();
    assert!(matches!(e, GgufError::Usage { .. }), "{e}");
    // A truncated GGUF is invalid input, named as such, and writes nothing.
    let bytes = std::fs::read(&input).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = dir.path().join("cut.safetensors");
    let e = gguf_to_safetensors(&cut, &out, &GgufToSafetensors::default()).unwrap_err();
    assert!(e.is_invalid_input(), "{e}");
    assert!(e.to_string().contains("cut.gguf"), "{e}");
    assert!(!out.exists());
}

#[test]
fn our_gguf_files_read_back_in_gguf_py_with_its_quantized_bytes() {
    let Some(py) = python(&["gguf", "numpy", "safetensors"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    run(&py, CHECK, &["make-st".as_ref(), dir.path().as_os_str()]);
    let input = dir.path().join("src.safetensors");
    for (name, ty) in [
        ("f32", GgmlType::F32),
        ("f16", GgmlType::F16),
        ("bf16", GgmlType::Bf16),
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
        ("q4_1", GgmlType::Q4_1),
        ("q5_0", GgmlType::Q5_0),
        ("q5_1", GgmlType::Q5_1),
    ] {
        let out = dir.path().join(format!("{name}.gguf"));
        let options = SafetensorsToGguf {
            outtype: Some(ty),
            ..Default::default()
        };
        safetensors_to_gguf(&input, &out, &options).unwrap();
        let doc = run(
            &py,
            CHECK,
            &[
                "check-gguf".as_ref(),
                dir.path().as_os_str(),
                out.as_os_str(),
                name.as_ref(),
            ],
        );
        assert!(doc.contains("\"tensors\": 6"), "{name}: {doc}");
    }
}

#[test]
fn tiny_llama_round_trips_through_gguf_with_the_same_logits() {
    let Some(py) = python(&["gguf", "numpy", "torch", "transformers", "safetensors"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(&py, CHECK, &["make-llama".as_ref(), d.as_os_str()]);
    for (outtype, name, tolerance) in [
        (GgmlType::F32, "f32", "0"),
        (GgmlType::Q8_0, "q8_0", "0.05"),
    ] {
        let gguf = d.join(format!("m_{name}.gguf"));
        let options = SafetensorsToGguf {
            outtype: Some(outtype),
            arch: Arch::Llama,
            ..Default::default()
        };
        safetensors_to_gguf(d, &gguf, &options).unwrap();
        let hf = d.join(format!("hf_{name}")).join("model.safetensors");
        let back = GgufToSafetensors {
            hf: true,
            ..Default::default()
        };
        let report = gguf_to_safetensors(&gguf, &hf, &back).unwrap();
        assert_eq!(report.files.len(), 2, "{name}: config.json too");
        run(
            &py,
            CHECK,
            &[
                "check-llama".as_ref(),
                d.as_os_str(),
                gguf.as_os_str(),
                tolerance.as_ref(),
                hf.as_os_str(),
            ],
        );
    }
}
