//! Output scripts can trust: one JSON document per command, placeholders
//! named as such, limits that say how to raise them. Files made by hand.

mod common;

use common::{code, json, python, run, stdout};

const LFS_POINTER: &[u8] = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";

#[test]
fn scan_names_lfs_pointers_and_html_pages_not_a_model_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("model.safetensors"), LFS_POINTER).unwrap();
    std::fs::write(
        dir.path().join("pytorch_model.bin"),
        b"<!DOCTYPE html>\n<html><body>Access denied</body></html>",
    )
    .unwrap();
    let target = dir.path().to_str().unwrap();
    let doc = json(&["scan", target], 0);
    let formats: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats.len(), 2);
    assert!(
        formats[0].starts_with("not a model file: a git-lfs pointer"),
        "{formats:?}"
    );
    assert!(
        formats[1].starts_with("not a model file: an HTML page"),
        "{formats:?}"
    );
    let output = run(&["scan", target]);
    assert_eq!(code(&output), 0);
    assert_eq!(stdout(&output).matches("not a model file").count(), 2);
}

#[test]
fn a_header_over_the_limit_names_the_flag_that_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.safetensors");
    // A valid file whose header (metadata padding included) is 2048 bytes.
    let mut header = String::from(r#"{"__metadata__":{"pad":""#);
    let body = r#""},"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    header.push_str(&"x".repeat(2048 - header.len() - body.len()));
    header.push_str(body);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.push(7);
    std::fs::write(&path, &bytes).unwrap();
    let file = path.to_str().unwrap();
    let doc = json(&["inspect", file, "--max-header-size", "1000"], 1);
    let message = doc["error"]["message"].as_str().unwrap();
    assert!(message.contains("--max-header-size 2048"), "{message}");
    let doc = json(&["inspect", file, "--max-header-size", "4KB"], 0);
    assert_eq!(doc["tensors"][0]["name"], "t");
    let doc = json(&["inspect", file, "--max-header-size", "lots"], 2);
    assert_eq!(doc["error"]["kind"], "usage");
}

#[test]
fn diff_compares_a_bf16_copy_with_its_f32_source_reporting_the_casts_error() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let worst = common::python_run(
        "import sys, torch; from safetensors.torch import save_file\n\
         torch.manual_seed(0)\n\
         w = torch.randn(64, 33)\n\
         save_file({'w': w, 'n': torch.arange(5)}, sys.argv[1] + '/f32.safetensors')\n\
         save_file({'w': w.to(torch.bfloat16), 'n': torch.arange(5)}, sys.argv[1] + '/bf16.safetensors')\n\
         print(repr((w.to(torch.bfloat16).double() - w.double()).abs().max().item()))",
        &[d],
    );
    let worst: f64 = worst.trim().parse().unwrap();
    let a = format!("{d}/bf16.safetensors");
    let b = format!("{d}/f32.safetensors");
    let doc = json(&["diff", &a, &b], 1);
    assert_eq!(doc["equal"], false);
    assert_eq!(doc["dtype_changed"][0]["name"], "w");
    let w = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "w")
        .unwrap();
    assert_eq!(
        (w["dtype"].as_str(), w["dtype_b"].as_str()),
        (Some("BF16"), Some("F32"))
    );
    assert_eq!(w["values"], 64 * 33);
    assert_eq!(w["max_abs_diff"].as_f64().unwrap(), worst);
    // Within bf16's precision the values agree, though the dtype differs.
    let doc = json(&["diff", &a, &b, "--rtol", "0.01"], 1);
    let w = doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "w")
        .unwrap();
    assert_eq!(w["equal"], true);
    let output = run(&["diff", &a, &b]);
    let text = stdout(&output);
    assert!(text.contains("~ w: dtype BF16 -> F32; "), "{text}");
    assert!(text.contains("values differ (max abs diff"), "{text}");
}

#[test]
fn inspect_summarises_a_training_checkpoint_and_json_keeps_everything() {
    use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
    use safeweights::{Dtype, Metadata};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    // What save_checkpoint writes for {"model": {"w": tensor}, "epoch": 7,
    // "rng": random.getstate()}: 625 Mersenne Twister integers.
    let rng: Vec<String> = (0..625u64)
        .map(|i| (i * 2_654_435_761 % 4_294_967_296).to_string())
        .collect();
    let structure = format!(
        r#"{{"version":1,"root":{{"$dict":[["model",{{"$odict":[["w",{{"$tensor":"model.w"}}]]}}],["epoch",7],["rng",{{"$tuple":[3,{{"$tuple":[{}]}},null]}}]]}}}}"#,
        rng.join(",")
    );
    let metadata = Metadata::from([("safeweights.checkpoint".to_owned(), structure.clone())]);
    let data = [0u8; 8];
    serialize_to_file(
        &[("model.w", TensorRef::new(Dtype::F32, vec![2], &data))],
        Some(&metadata),
        &path,
        &WriteOptions::default(),
    )
    .unwrap();
    let file = path.to_str().unwrap();
    let output = run(&["inspect", file]);
    assert_eq!(code(&output), 0);
    let text = stdout(&output);
    assert!(text.contains("training checkpoint"), "{text}");
    assert!(text.contains("model  dict of 1 item: 1 tensor"), "{text}");
    assert!(text.contains("epoch  int 7"), "{text}");
    assert!(
        text.contains("rng    tuple of 3 items: 627 values (1 None, 626 int)"),
        "{text}"
    );
    assert!(
        !text.contains(&rng[624]),
        "every RNG integer printed:\n{text}"
    );
    let doc = json(&["inspect", file], 0);
    assert_eq!(
        doc["metadata"]["safeweights.checkpoint"],
        structure.as_str()
    );
}
