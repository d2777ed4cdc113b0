//! `convert DIR` on Hugging Face model directories written by torch: a
//! sharded `pytorch_model.bin` with its index, and a folder of `.pt` files.

mod common;

use common::*;

const MAKE_DIRS: &str = r#"
import json, os, sys, torch
d = sys.argv[1]
torch.manual_seed(0)
hf = os.path.join(d, "hf"); os.makedirs(hf)
shards = {"pytorch_model-00001-of-00002.bin": {"a.weight": torch.randn(4, 3)},
          "pytorch_model-00002-of-00002.bin": {"b.weight": torch.randn(5), "b.bias": torch.arange(3)}}
weight_map = {}
for name, tensors in shards.items():
    torch.save(tensors, os.path.join(hf, name))
    weight_map.update({k: name for k in tensors})
with open(os.path.join(hf, "pytorch_model.bin.index.json"), "w") as f:
    json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f)
with open(os.path.join(hf, "config.json"), "w") as f:
    f.write("{}")
pts = os.path.join(d, "pts"); os.makedirs(pts)
torch.save({"w": torch.ones(2, 2)}, os.path.join(pts, "first.pt"))
torch.save({"v": torch.zeros(3, dtype=torch.float16)}, os.path.join(pts, "second.pth"))
os.makedirs(os.path.join(d, "empty"))
"#;

/// Every tensor of the safetensors files named, as torch would load them
/// from the originals: `name dtype shape values`.
const SAME_AS_TORCH: &str = r#"
import sys, torch
from safetensors.torch import load_file
for pair in sys.argv[1:]:
    original, converted = pair.split("=")
    a, b = torch.load(original, weights_only=True), load_file(converted)
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
print("ok")
"#;

#[test]
fn convert_directory_writes_the_matching_safetensors_layout() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_owned();
    python_run(MAKE_DIRS, &[&d]);

    let hf = format!("{d}/hf");
    let doc = json(&["convert", &hf], 0);
    assert_eq!(doc["input"], hf.as_str());
    assert_eq!(doc["conversions"].as_array().unwrap().len(), 1);
    let index = format!("{hf}/model.safetensors.index.json");
    assert!(std::path::Path::new(&index).is_file(), "{doc}");
    let pairs = [
        format!("{hf}/pytorch_model-00001-of-00002.bin={hf}/model-00001-of-00002.safetensors"),
        format!("{hf}/pytorch_model-00002-of-00002.bin={hf}/model-00002-of-00002.safetensors"),
    ];
    let refs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    assert_eq!(python_run(SAME_AS_TORCH, &refs).trim(), "ok");
    // The converted directory reads as one checkpoint.
    let inspected = json(&["inspect", &hf], 0);
    assert_eq!(inspected["tensors"].as_array().unwrap().len(), 3);

    let pts = format!("{d}/pts");
    let out = format!("{d}/out");
    let doc = json(&["convert", &pts, &out], 0);
    assert_eq!(doc["conversions"].as_array().unwrap().len(), 2);
    let pairs = [
        format!("{pts}/first.pt={out}/first.safetensors"),
        format!("{pts}/second.pth={out}/second.safetensors"),
    ];
    let refs: Vec<&str> = pairs.iter().map(String::as_str).collect();
    assert_eq!(python_run(SAME_AS_TORCH, &refs).trim(), "ok");

    let empty = format!("{d}/empty");
    let output = run(&["convert", &empty]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains("no pytorch_model.bin.index.json"),
        "{}",
        stderr(&output)
    );
}
