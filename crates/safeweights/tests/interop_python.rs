//! Interoperability with the reference Python package (`safetensors`, with
//! numpy and torch): we read its files, write the same bytes for the same
//! tensors, and it reads ours.
//!
//! The interpreter is `$SAFEWEIGHTS_PYTHON`, else `<workspace>/.venv/bin/python`;
//! without either the test prints a notice and passes (CI always has it).

mod common;

use std::path::Path;

use common::{python, run_python};
use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
use safeweights::{Dtype, Metadata};
use serde_json::Value;

/// Writes files with the reference's numpy and torch front ends, and a
/// manifest giving, independently of the files, each tensor's dtype, shape
/// and raw little-endian bytes.
const GENERATE: &str = r#"
import json, sys, os
import numpy as np, torch
from safetensors.numpy import save_file as save_np
from safetensors.torch import save_file as save_pt

out = sys.argv[1]
rng = np.random.default_rng(7)
np_names = {np.float16: "F16", np.float32: "F32", np.float64: "F64", np.int8: "I8", np.int16: "I16",
            np.int32: "I32", np.int64: "I64", np.uint8: "U8", np.uint16: "U16", np.uint32: "U32",
            np.uint64: "U64", np.bool_: "BOOL", np.complex64: "C64"}
np_tensors = {}
for t, name in np_names.items():
    np_tensors["np." + name.lower()] = (rng.standard_normal((3, 5)) * 100).astype(t)
np_tensors["empty"] = np.zeros((0, 3), np.float32)
np_tensors["scalar"] = np.array(3.5, np.float64)
np_tensors["special"] = np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)
np_tensors["unicode.é😀"] = np.arange(4, dtype=np.int32)

pt_names = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
            torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
            torch.float8_e4m3fnuz: "F8_E4M3FNUZ", torch.float8_e5m2fnuz: "F8_E5M2FNUZ",
            torch.bool: "BOOL", torch.complex64: "C64", torch.int8: "I8", torch.int16: "I16",
            torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.uint16: "U16",
            torch.uint32: "U32", torch.uint64: "U64"}
g = torch.Generator().manual_seed(7)
pt_tensors = {}
for t, name in pt_names.items():
    base = torch.randn(4, 3, generator=g, dtype=torch.float32) * 50
    if t == torch.complex64:
        value = torch.complex(base, -base)
    elif t in (torch.uint16, torch.uint32, torch.uint64):
        value = base.abs().to(torch.int64).to(t)
    else:
        value = base.to(t)
    pt_tensors["pt." + name.lower()] = value
pt_tensors["empty"] = torch.zeros(2, 0, dtype=torch.bfloat16)
pt_tensors["scalar"] = torch.tensor(1.25, dtype=torch.float16)

def raw_np(a):
    return np.ascontiguousarray(a).tobytes()

def raw_pt(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

manifest = {}
def record(file, tensors, names, raw, metadata):
    manifest[file] = {
        "metadata": metadata,
        "tensors": [{"name": k, "dtype": names[v.dtype.type if isinstance(v, np.ndarray) else v.dtype],
                     "shape": list(v.shape), "hex": raw(v).hex()} for k, v in tensors.items()],
    }

for file, metadata in [("np.safetensors", None), ("np_meta.safetensors", {"source": "numpy"})]:
    save_np(np_tensors, os.path.join(out, file), metadata=metadata)
    record(file, np_tensors, np_names, raw_np, metadata)
for file, metadata in [("pt.safetensors", None), ("pt_meta.safetensors", {"format": "pt"})]:
    save_pt(pt_tensors, os.path.join(out, file), metadata=metadata)
    record(file, pt_tensors, pt_names, raw_pt, metadata)
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f)
"#;

/// Reads every file we wrote with the reference and compares it with the
/// reference's own file, tensor by tensor and metadata.
const CHECK: &str = r#"
import json, sys, os
import torch
from safetensors import safe_open
from safetensors.torch import load_file

out = sys.argv[1]
manifest = json.load(open(os.path.join(out, "manifest.json")))
checked = 0
for file in manifest:
    theirs = load_file(os.path.join(out, file))
    for ours_name in ["ours_" + file, "ours_a64_" + file, "ours_a4096_" + file]:
        path = os.path.join(out, ours_name)
        with safe_open(path, framework="pt") as f:
            assert sorted(f.keys()) == sorted(theirs.keys()), (path, f.keys())
            assert f.metadata() == manifest[file]["metadata"], (path, f.metadata())
            for key in f.keys():
                mine = f.get_tensor(key)
                ref = theirs[key]
                assert mine.dtype == ref.dtype and mine.shape == ref.shape, (path, key)
                a = mine.reshape(-1).view(torch.uint8)
                b = ref.reshape(-1).view(torch.uint8)
                assert torch.equal(a, b), (path, key)
                checked += 1
    if file.startswith("np"):
        from safetensors.numpy import load_file as load_np
        import numpy as np
        mine = load_np(os.path.join(out, "ours_" + file))
        for key, value in load_np(os.path.join(out, file)).items():
            assert mine[key].tobytes() == value.tobytes() and mine[key].dtype == value.dtype, key
print("checked", checked)
"#;

fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

struct Expected {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

fn expected_tensors(entry: &Value) -> Vec<Expected> {
    entry["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Expected {
            name: t["name"].as_str().unwrap().to_owned(),
            dtype: t["dtype"].as_str().unwrap().parse().unwrap(),
            shape: t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect(),
            data: decode_hex(t["hex"].as_str().unwrap()),
        })
        .collect()
}

fn expected_metadata(entry: &Value) -> Option<Metadata> {
    entry["metadata"].as_object().map(|m| {
        m.iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    })
}

fn check_we_read(path: &Path, tensors: &[Expected], metadata: Option<&Metadata>) {
    for backend in [Backend::Mmap, Backend::Pread] {
        let file = SafetensorsFile::open_with(
            path,
            &OpenOptions {
                backend,
                ..OpenOptions::default()
            },
        )
        .unwrap();
        assert_eq!(file.header().len(), tensors.len(), "{}", path.display());
        assert_eq!(file.header().metadata(), metadata, "{}", path.display());
        for t in tensors {
            let info = file.info(&t.name).unwrap();
            assert_eq!(
                (info.dtype, info.shape),
                (t.dtype, &t.shape[..]),
                "{} {}",
                path.display(),
                t.name
            );
            assert_eq!(
                &file.tensor_bytes(&t.name).unwrap()[..],
                &t.data[..],
                "{} {}",
                path.display(),
                t.name
            );
        }
    }
}

#[test]
fn python_reference_and_we_read_and_write_the_same_files() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    run_python(&python, GENERATE, &[dir.path()]);
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("manifest.json")).unwrap())
            .unwrap();
    let files = manifest.as_object().unwrap();
    assert_eq!(files.len(), 4);
    for (file, entry) in files {
        let tensors = expected_tensors(entry);
        let metadata = expected_metadata(entry);
        let theirs = dir.path().join(file);
        check_we_read(&theirs, &tensors, metadata.as_ref());

        let refs: Vec<_> = tensors
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    TensorRef::new(t.dtype, t.shape.clone(), &t.data),
                )
            })
            .collect();
        let ours = dir.path().join(format!("ours_{file}"));
        serialize_to_file(&refs, metadata.as_ref(), &ours, &WriteOptions::default()).unwrap();
        assert!(
            std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap(),
            "{file}: bytes differ from the reference's"
        );
        for alignment in [64, 4096] {
            let aligned = dir.path().join(format!("ours_a{alignment}_{file}"));
            serialize_to_file(
                &refs,
                metadata.as_ref(),
                &aligned,
                &WriteOptions {
                    alignment,
                    ..WriteOptions::default()
                },
            )
            .unwrap();
            let file = SafetensorsFile::open(&aligned).unwrap();
            assert_eq!(file.header().data_start() % alignment as u64, 0);
        }
    }
    let report = run_python(&python, CHECK, &[dir.path()]);
    assert!(report.starts_with("checked "), "{report}");
    let checked: usize = report["checked ".len()..].trim().parse().unwrap();
    let total: usize = files
        .values()
        .map(|e| e["tensors"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        checked,
        total * 3,
        "every tensor of every written file was compared"
    );
}
