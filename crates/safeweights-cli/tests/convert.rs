//! `convert` on checkpoints written by torch and numpy in the test: the
//! output holds exactly what `torch.load(weights_only=True)` returns and is
//! read by the reference `safetensors`; unsafe input is refused with
//! nothing written and nothing executed.

mod common;

use std::path::Path;

use common::*;

const MAKE_FILES: &str = r#"
import os, sys, numpy as np, torch
d = sys.argv[1]
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8))
model[2].weight = model[0].weight.__class__(model[0].weight.detach().t().contiguous())
opt = torch.optim.Adam(model.parameters())
model(torch.randn(4, 8)).sum().backward()
opt.step()
torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 3},
           os.path.join(d, "train.pt"))
emb = torch.randn(10, 4)
torch.save({"embed.weight": emb, "lm_head.weight": emb, "t": torch.randn(6, 5).t()},
           os.path.join(d, "tied.bin"), _use_new_zipfile_serialization=False)
np.savez(os.path.join(d, "arrays.npz"), a=np.arange(12, dtype=np.int32).reshape(3, 4),
         b=np.linspace(0, 1, 7))

class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + os.path.join(d, "MARKER"),))
torch.save({"w": torch.zeros(2), "x": Payload()}, os.path.join(d, "evil.pt"))
"#;

/// Prints `name dtype shape hex` for every tensor torch loads (flattened
/// with dots), after an optional cast: the oracle.
const ORACLE: &str = r#"
import sys, torch
obj = torch.load(sys.argv[1], weights_only=True)
cast = {"bf16": torch.bfloat16}.get(sys.argv[2]) if len(sys.argv) > 2 else None
def walk(prefix, value):
    if isinstance(value, torch.Tensor):
        t = value.contiguous()
        if cast is not None and t.is_floating_point():
            t = t.to(cast)
        print(prefix, str(t.dtype), list(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes().hex())
    elif isinstance(value, dict):
        for k, v in value.items():
            walk(f"{prefix}.{k}" if prefix else str(k), v)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            walk(f"{prefix}.{i}" if prefix else str(i), v)
walk("", obj)
"#;

/// The same listing for a safetensors file, read by the reference package.
/// Tied aliases recorded in the metadata resolve to their kept tensor.
const READ_BACK: &str = r#"
import sys, torch
from safetensors import safe_open
with safe_open(sys.argv[1], "pt") as f:
    meta = f.metadata() or {}
    names = set(f.keys())
    for name in sorted(set(sys.argv[2:])):
        kept = name if name in names else meta[name]
        t = f.get_tensor(kept)
        print(name, str(t.dtype), list(t.shape), t.reshape(-1).view(torch.uint8).numpy().tobytes().hex())
"#;

fn make_files() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    python_run(MAKE_FILES, &[&dir.path().display().to_string()]);
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// Converts `input` and checks every tensor against torch's own load.
fn assert_converts_exactly(dir: &Path, input: &str, extra: &[&str], cast: Option<&str>) {
    let source = path(dir, input);
    let output = path(dir, &format!("{input}.safetensors"));
    let mut args = vec!["convert", source.as_str(), output.as_str()];
    args.extend_from_slice(extra);
    let run_output = run(&args);
    assert_eq!(code(&run_output), 0, "stderr: {}", stderr(&run_output));
    let mut oracle_args = vec![source.as_str()];
    oracle_args.extend(cast);
    let expected = python_run(ORACLE, &oracle_args);
    let names: Vec<&str> = expected
        .lines()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    let mut read_args = vec![output.as_str()];
    read_args.extend(names.iter().copied());
    let actual = python_run(READ_BACK, &read_args);
    let mut expected: Vec<&str> = expected.lines().collect();
    expected.sort_unstable();
    assert_eq!(actual.lines().collect::<Vec<_>>(), expected, "{input}");
}

#[test]
fn training_checkpoint_converts_to_exactly_what_torch_loads() {
    let Some(_) = python() else { return };
    let dir = make_files();
    assert_converts_exactly(dir.path(), "train.pt", &[], None);
}

#[test]
fn legacy_checkpoint_with_tied_weights_converts_exactly() {
    let Some(_) = python() else { return };
    let dir = make_files();
    assert_converts_exactly(dir.path(), "tied.bin", &[], None);
    let doc = json(&["inspect", &path(dir.path(), "tied.bin.safetensors")], 0);
    assert_eq!(
        doc["tensors"].as_array().unwrap().len(),
        2,
        "tied weight stored once: {doc}"
    );
}

#[test]
fn dtype_cast_matches_torch_rounding() {
    let Some(_) = python() else { return };
    let dir = make_files();
    assert_converts_exactly(dir.path(), "train.pt", &["--dtype", "bf16"], Some("bf16"));
}

#[test]
fn json_report_lists_files_aliases_and_verification() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = path(dir.path(), "out.safetensors");
    let doc = json(&["convert", &path(dir.path(), "tied.bin"), &out], 0);
    assert_eq!(doc["format"], "legacy torch checkpoint");
    assert_eq!(doc["tensors"], 2);
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["files"][0], out);
    assert_eq!(doc["aliases"].as_array().unwrap().len(), 1, "{doc}");
}

#[test]
fn plain_values_are_kept_as_json_metadata() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = path(dir.path(), "values.safetensors");
    json(&["convert", &path(dir.path(), "train.pt"), &out], 0);
    let doc = json(&["inspect", &out], 0);
    let values: serde_json::Value =
        serde_json::from_str(doc["metadata"]["safeweights.values"].as_str().unwrap()).unwrap();
    assert_eq!(values["epoch"], 3, "{values}");
    let dropped = path(dir.path(), "dropped.safetensors");
    json(
        &[
            "convert",
            &path(dir.path(), "train.pt"),
            &dropped,
            "--drop-values",
        ],
        0,
    );
    let doc = json(&["inspect", &dropped], 0);
    assert!(doc["metadata"].get("safeweights.values").is_none(), "{doc}");
}

#[test]
fn npz_arrays_become_tensors() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = path(dir.path(), "arrays.safetensors");
    json(&["convert", &path(dir.path(), "arrays.npz"), &out], 0);
    let values = python_run(
        "import sys; from safetensors.numpy import load_file; d = load_file(sys.argv[1]); print(d['a'].tolist(), d['b'].dtype, d['b'][-1])",
        &[&out],
    );
    assert_eq!(
        values.trim(),
        "[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]] float64 1.0"
    );
}

#[test]
fn max_shard_size_writes_shards_and_an_index() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = dir.path().join("sharded");
    let doc = json(
        &[
            "convert",
            &path(dir.path(), "train.pt"),
            &format!("{}/", out.display()),
            "--max-shard-size",
            "600B",
        ],
        0,
    );
    let files = doc["files"].as_array().unwrap();
    assert!(files.len() > 2, "{doc}");
    assert!(files
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .ends_with("model.safetensors.index.json"));
    let index = out
        .join("model.safetensors.index.json")
        .display()
        .to_string();
    let inspected = json(&["inspect", &index], 0);
    assert_eq!(
        inspected["tensors"].as_array().unwrap().len(),
        doc["tensors"].as_u64().unwrap() as usize
    );
}

#[test]
fn unsafe_input_is_refused_writes_nothing_and_runs_nothing() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = path(dir.path(), "evil.safetensors");
    let output = run(&["convert", &path(dir.path(), "evil.pt"), &out]);
    assert_eq!(code(&output), 1, "{}", stderr(&output));
    let message = stderr(&output);
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(message.contains("system"), "names the global: {message}");
    assert!(!Path::new(&out).exists());
    assert!(!dir.path().join("MARKER").exists(), "the payload ran");
}

#[test]
fn existing_output_needs_force() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let out = path(dir.path(), "train.safetensors");
    std::fs::write(&out, b"keep me").unwrap();
    let output = run(&["convert", &path(dir.path(), "train.pt"), &out]);
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    let output = run(&["convert", &path(dir.path(), "train.pt"), &out, "--force"]);
    assert_eq!(code(&output), 0, "{}", stderr(&output));
}

#[test]
fn bad_options_are_usage_errors() {
    let Some(_) = python() else { return };
    let dir = make_files();
    let input = path(dir.path(), "train.pt");
    for extra in [["--dtype", "int8"], ["--max-shard-size", "lots"]] {
        let mut args = vec!["convert", input.as_str()];
        args.extend(extra);
        let output = run(&args);
        assert_eq!(code(&output), 2, "{extra:?}: {}", stderr(&output));
    }
}
