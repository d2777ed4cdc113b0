//! Real checkpoints written by torch: every tensor we read must equal,
//! byte for byte, what `torch.load(weights_only=True)` returns.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safeweights_pickle::torch::{Checkpoint, Format};
use serde_json::Value as Json;

static FIXTURES: OnceLock<Option<PathBuf>> = OnceLock::new();

fn fixtures() -> Option<&'static Path> {
    common::generate!("gen_torch.py", &FIXTURES)
}

fn expected(dir: &Path, file: &str) -> Json {
    let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
    let all: Json = serde_json::from_str(&text).unwrap();
    all[file].clone()
}

/// Opens `file` and checks every tensor against torch; returns the checkpoint.
fn check(file: &str) -> Option<Checkpoint> {
    let dir = fixtures()?;
    let want = expected(dir, file);
    let ckpt = Checkpoint::open(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let tensors = want["tensors"].as_object().unwrap();
    for (name, spec) in tensors {
        let kept = ckpt
            .aliases()
            .iter()
            .find(|(alias, _)| alias == name)
            .map_or(name.as_str(), |(_, kept)| kept.as_str());
        let entry = ckpt
            .tensors()
            .iter()
            .find(|e| e.name == kept)
            .unwrap_or_else(|| panic!("{file}: tensor `{name}` missing"));
        assert_eq!(
            format!("{:?}", entry.dtype),
            spec["dtype"],
            "{file}: {name} dtype"
        );
        let shape: Vec<u64> = serde_json::from_value(spec["shape"].clone()).unwrap();
        assert_eq!(entry.shape, shape, "{file}: {name} shape");
        let bytes = ckpt.read_tensor(entry).unwrap();
        assert_eq!(
            &*bytes,
            &common::unhex(spec["hex"].as_str().unwrap())[..],
            "{file}: {name} bytes"
        );
    }
    let listed = ckpt.tensors().len() + ckpt.aliases().len();
    assert_eq!(listed, tensors.len(), "{file}: tensor count");
    for skipped in want["skipped"].as_array().unwrap() {
        assert!(
            ckpt.skipped()
                .iter()
                .any(|s| skipped.as_str() == Some(s.path.as_str())),
            "{file}: {skipped} should be reported as skipped"
        );
    }
    Some(ckpt)
}

#[test]
fn small_model_state_dict_matches_torch() {
    let Some(ckpt) = check("model.pt") else {
        return;
    };
    assert_eq!(ckpt.format(), Format::Zip);
    assert_eq!(ckpt.tensors().len(), 7);
    assert!(ckpt.aliases().is_empty());
}

#[test]
fn stored_tensors_are_borrowed_from_the_file_at_their_file_range() {
    let Some(dir) = fixtures() else { return };
    let path = dir.join("model.pt");
    let ckpt = Checkpoint::open(&path).unwrap();
    let file = std::fs::read(&path).unwrap();
    for entry in ckpt.tensors() {
        let bytes = ckpt.read_tensor(entry).unwrap();
        let range = ckpt
            .file_range(&bytes)
            .unwrap_or_else(|| panic!("{}: contiguous records are borrowed", entry.name));
        assert_eq!(&file[range], &*bytes, "{}", entry.name);
    }
    assert_eq!(
        ckpt.file_range(&[1, 2, 3]),
        None,
        "a copy is not in the file"
    );
}

#[test]
fn pickle_protocols_4_and_5_match_torch() {
    check("model_p4.pt");
    check("model_p5.pt");
}

#[test]
fn tied_weights_are_aliases_and_partial_views_are_copied() {
    let Some(ckpt) = check("tied.pt") else { return };
    assert_eq!(
        ckpt.aliases(),
        &[("lm_head.weight".to_owned(), "embed.weight".to_owned())]
    );
    let names: Vec<_> = ckpt.tensors().iter().map(|e| e.name.as_str()).collect();
    assert!(names.contains(&"first") && names.contains(&"rest") && names.contains(&"whole"));
    let head = ckpt.tensors().iter().find(|e| e.name == "head").unwrap();
    assert!(head.tensor.requires_grad, "a Parameter keeps requires_grad");
}

#[test]
fn non_contiguous_offset_and_broadcast_views_are_gathered() {
    let Some(ckpt) = check("views.pt") else {
        return;
    };
    let t = ckpt
        .tensors()
        .iter()
        .find(|e| e.name == "transposed")
        .unwrap();
    assert!(!t.tensor.is_contiguous());
    let sliced = ckpt.tensors().iter().find(|e| e.name == "sliced").unwrap();
    assert!(matches!(
        ckpt.read_tensor(sliced).unwrap(),
        std::borrow::Cow::Borrowed(_)
    ));
}

#[test]
fn every_dtype_torch_can_save() {
    let Some(ckpt) = check("dtypes.pt") else {
        return;
    };
    let skipped = ckpt
        .skipped()
        .iter()
        .find(|s| s.path == "torch.complex128")
        .unwrap();
    assert!(
        skipped.reason.contains("no safetensors dtype"),
        "{}",
        skipped.reason
    );
}

#[test]
fn big_endian_storages_are_byte_swapped() {
    check("little.pt");
    check("bigendian.pt");
}

#[test]
fn lightning_training_checkpoint_with_adam_state() {
    let Some(ckpt) = check("train.ckpt") else {
        return;
    };
    let meta = ckpt.metadata();
    assert_eq!(meta["epoch"], 3);
    assert_eq!(meta["hyper_parameters.lr"], 1e-3);
    assert_eq!(
        meta["hyper_parameters.layers"],
        serde_json::json!([4, 6, 3])
    );
    assert_eq!(meta["hyper_parameters.dropout"], Json::Null);
    assert_eq!(
        meta["optimizer_states.0.param_groups.0.betas"],
        serde_json::json!([0.9, 0.999])
    );
    assert!(ckpt
        .tensors()
        .iter()
        .any(|e| e.name == "optimizer_states.0.state.0.exp_avg_sq"));
}

#[test]
fn nested_model_and_optimizer_dicts() {
    let Some(ckpt) = check("nested.pt") else {
        return;
    };
    assert!(ckpt
        .tensors()
        .iter()
        .any(|e| e.name == "optimizer.state.3.exp_avg"));
    assert_eq!(
        ckpt.metadata()["optimizer.param_groups.0.params"],
        serde_json::json!([0, 1, 2, 3, 4, 5, 6])
    );
}

#[test]
fn legacy_format_matches_torch() {
    let Some(ckpt) = check("legacy.pt") else {
        return;
    };
    assert_eq!(ckpt.format(), Format::Legacy);
    assert_eq!(
        ckpt.aliases(),
        &[("tied_b".to_owned(), "tied_a".to_owned())]
    );
    check("legacy_p4.pt");
}

#[test]
fn from_bytes_detects_format_by_content() {
    let Some(dir) = fixtures() else { return };
    for file in ["model.pt", "legacy.pt"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let from_mem = Checkpoint::from_bytes(bytes).unwrap();
        let from_file = Checkpoint::open(&dir.join(file)).unwrap();
        assert_eq!(from_mem.tensors(), from_file.tensors());
        for e in from_mem.tensors() {
            assert_eq!(
                from_mem.read_tensor(e).unwrap(),
                from_file.read_tensor(e).unwrap()
            );
        }
    }
}

#[test]
fn truncated_or_corrupted_checkpoints_fail_cleanly() {
    let Some(dir) = fixtures() else { return };
    // A refusal must be a typed "invalid input" error, never an I/O or
    // usage error (and never a panic, which would fail the test).
    let refused_cleanly = |what: &str, error: safeweights_pickle::Error| {
        assert!(error.is_unsafe_or_invalid(), "{what}: {error:?}");
        assert!(!error.to_string().is_empty(), "{what}");
    };
    for file in ["model.pt", "legacy.pt"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        // Every truncation loses the zip's central directory or a legacy
        // storage's bytes: each must be refused.
        for cut in (0..bytes.len()).step_by(97) {
            match Checkpoint::from_bytes(bytes[..cut].to_vec()) {
                Ok(_) => panic!("{file} cut to {cut} of {} bytes was accepted", bytes.len()),
                Err(error) => refused_cleanly(&format!("{file} cut to {cut}"), error),
            }
        }
        let (mut refused, mut read) = (0, 0);
        for at in (0..bytes.len()).step_by(31) {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x5a;
            let what = format!("{file} with byte {at} flipped");
            // A flip in tensor data (or a zip member's CRC-unchecked
            // padding) may go unnoticed; whatever is read back must then
            // have its declared size.
            match Checkpoint::from_bytes(flipped) {
                Err(error) => {
                    refused += 1;
                    refused_cleanly(&what, error);
                }
                Ok(c) => {
                    for e in c.tensors() {
                        match c.read_tensor(e) {
                            Ok(data) => {
                                read += 1;
                                assert_eq!(data.len() as u64, e.nbytes(), "{what}: {}", e.name);
                            }
                            Err(error) => refused_cleanly(&format!("{what}: {}", e.name), error),
                        }
                    }
                }
            }
        }
        assert!(
            refused > 0 && read > 0,
            "{file}: {refused} refused, {read} read"
        );
    }
}
