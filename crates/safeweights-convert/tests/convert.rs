//! Conversion to safetensors: every converted file must hold exactly what
//! torch (or numpy) loads from the input, casts must match torch bit for
//! bit, and refused inputs must leave nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use safeweights::read::SafetensorsFile;
use safeweights::shards::ShardedCheckpoint;
use safeweights_convert::{
    convert, convert_with_progress, verify_conversion, ConvertOptions, InputFormat, Stage,
};
use safeweights_convert::{Dtype, Error};
use safeweights_testkit::files::listing;
use serde_json::Value as Json;

static FIXTURES: OnceLock<Option<PathBuf>> = OnceLock::new();

fn fixtures() -> Option<&'static Path> {
    common::generate!("gen_convert.py", &FIXTURES)
}

fn json(dir: &Path, file: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

/// A fresh, empty output directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("convert_out")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks that `out` holds every tensor of `want` (`{name: {dtype, shape,
/// hex}}`), following tied-weight aliases recorded in the metadata.
fn check_tensors(out: &ShardedCheckpoint, want: &serde_json::Map<String, Json>, what: &str) {
    for (name, spec) in want {
        let kept = out
            .metadata()
            .and_then(|m| m.get(name))
            .map_or(name.as_str(), String::as_str);
        let (file, info) = out
            .get(kept)
            .unwrap_or_else(|e| panic!("{what}: `{name}`: {e}"));
        assert_eq!(format!("{:?}", info.dtype), spec["dtype"], "{what}: {name}");
        let shape: Vec<usize> = serde_json::from_value(spec["shape"].clone()).unwrap();
        assert_eq!(info.shape, shape, "{what}: {name}");
        let bytes = file.bytes_of(info).unwrap();
        let hex = common::unhex(spec["hex"].as_str().unwrap());
        assert_eq!(&*bytes, &hex[..], "{what}: {name} bytes");
    }
}

fn open_single(path: &Path) -> ShardedCheckpoint {
    ShardedCheckpoint::single(SafetensorsFile::open(path).unwrap()).unwrap()
}

#[test]
fn torch_checkpoints_convert_to_what_torch_loads() {
    let Some(dir) = fixtures() else { return };
    let expected = json(dir, "expected.json");
    let out = scratch("torch");
    for file in [
        "model.pt",
        "model_p4.pt",
        "model_p5.pt",
        "views.pt",
        "dtypes.pt",
        "tied.pt",
        "train.ckpt",
        "nested.pt",
        "legacy.pt",
        "legacy_p4.pt",
        "bigendian.pt",
    ] {
        let target = out.join(format!("{file}.safetensors"));
        let report = convert(&dir.join(file), &target, &ConvertOptions::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(report.verified);
        assert_eq!(report.files, vec![target.clone()]);
        let want = expected[file]["tensors"].as_object().unwrap();
        assert_eq!(report.tensors + report.aliases.len(), want.len(), "{file}");
        check_tensors(&open_single(&target), want, file);
    }
    let legacy = convert(
        &dir.join("legacy.pt"),
        &out.join("again.safetensors"),
        &ConvertOptions::default(),
    );
    assert_eq!(legacy.unwrap().input_format, InputFormat::TorchLegacy);
}

#[test]
fn format_is_detected_from_content_not_name() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("content");
    // A numpy archive named like a torch file, a torch file without an
    // extension.
    std::fs::copy(dir.join("arrays.npz"), out.join("pytorch_model.bin")).unwrap();
    std::fs::copy(dir.join("model.pt"), out.join("weights")).unwrap();
    let npz = convert(
        &out.join("pytorch_model.bin"),
        &out.join("a.safetensors"),
        &ConvertOptions::default(),
    )
    .unwrap();
    assert_eq!(npz.input_format, InputFormat::Npz);
    let pt = convert(
        &out.join("weights"),
        &out.join("b.safetensors"),
        &ConvertOptions::default(),
    );
    assert_eq!(pt.unwrap().input_format, InputFormat::TorchZip);
}

#[test]
fn checkpoint_values_are_kept_on_request() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("values").join("train.safetensors");
    let options = ConvertOptions {
        keep_checkpoint_metadata: true,
        ..ConvertOptions::default()
    };
    convert(&dir.join("train.ckpt"), &out, &options).unwrap();
    let file = SafetensorsFile::open(&out).unwrap();
    let meta = file.header().metadata().unwrap();
    assert_eq!(meta["format"], "pt");
    let values: Json =
        serde_json::from_str(&meta[safeweights_convert::CHECKPOINT_METADATA_KEY]).unwrap();
    assert_eq!(values["epoch"], 3);
    assert_eq!(values["hyper_parameters.name"], "tiny");
}

/// Whether a little-endian element of `dtype` is a NaN.
fn is_nan(dtype: &str, bytes: &[u8]) -> bool {
    let half = || u16::from_le_bytes(bytes.try_into().unwrap());
    match dtype {
        "BF16" => half() & 0x7f80 == 0x7f80 && half() & 0x7f != 0,
        "F16" => half() & 0x7c00 == 0x7c00 && half() & 0x3ff != 0,
        "F32" => f32::from_le_bytes(bytes.try_into().unwrap()).is_nan(),
        _ => false,
    }
}

#[test]
fn casts_match_torch_bit_for_bit() {
    let Some(dir) = fixtures() else { return };
    let expected = json(dir, "cast_expected.json");
    let out = scratch("cast");
    for (code, dtype) in [
        ("BF16", Dtype::BF16),
        ("F16", Dtype::F16),
        ("F32", Dtype::F32),
    ] {
        let target = out.join(format!("{code}.safetensors"));
        let options = ConvertOptions {
            dtype: Some(dtype),
            ..ConvertOptions::default()
        };
        let report = convert(&dir.join("cast.pt"), &target, &options).unwrap();
        assert!(report.cast >= 4, "{code}: {}", report.cast);
        let file = SafetensorsFile::open(&target).unwrap();
        for (name, spec) in expected[code].as_object().unwrap() {
            let what = format!("{code}: {name}");
            let info = file.info(name).unwrap();
            assert_eq!(format!("{:?}", info.dtype), spec["dtype"], "{what}");
            let got = file.tensor_bytes(name).unwrap();
            let want = common::unhex(spec["hex"].as_str().unwrap());
            assert_eq!(got.len(), want.len(), "{what}");
            let size = info.dtype.bits() / 8;
            let dt = spec["dtype"].as_str().unwrap();
            for (i, (g, w)) in got.chunks(size).zip(want.chunks(size)).enumerate() {
                // Torch's own NaN bits depend on which kernel ran (0x7FC0
                // or 0xFFFF for bfloat16): only NaN-ness is comparable.
                if is_nan(dt, w) {
                    assert!(is_nan(dt, g), "{what}[{i}]: {g:02x?} is not NaN");
                    // Ours is c10's scalar choice, whatever kernel torch ran.
                    if dt == "BF16" && name != "bf16" {
                        assert_eq!(g, [0xc0, 0x7f], "{what}[{i}]");
                    }
                } else {
                    assert_eq!(g, w, "{what}[{i}]");
                }
            }
        }
    }
}

#[test]
fn bad_cast_targets_are_usage_errors() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("bad_cast");
    let options = ConvertOptions {
        dtype: Some(Dtype::I8),
        ..ConvertOptions::default()
    };
    let e = convert(&dir.join("cast.pt"), &out.join("x.safetensors"), &options).unwrap_err();
    assert!(!e.is_unsafe_or_invalid(), "{e}");
    assert!(listing(&out).is_empty());
}

#[test]
fn sharded_input_index_becomes_sharded_output() {
    let Some(dir) = fixtures() else { return };
    let expected = json(dir, "sharded_expected.json");
    let out = scratch("sharded").join("model/");
    let index = dir.join("sharded/pytorch_model.bin.index.json");
    let report = convert(&index, &out, &ConvertOptions::default()).unwrap();
    assert_eq!(report.input_files, 2);
    assert_eq!(
        listing(&out),
        [
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
            "model.safetensors.index.json"
        ]
    );
    let ckpt = ShardedCheckpoint::open_dir(&out, &Default::default()).unwrap();
    check_tensors(&ckpt, expected["tensors"].as_object().unwrap(), "sharded");
    for (i, names) in expected["shards"].as_array().unwrap().iter().enumerate() {
        for name in names.as_array().unwrap() {
            let shard = &ckpt.index().weight_map[name.as_str().unwrap()];
            assert_eq!(shard, &format!("model-0000{}-of-00002.safetensors", i + 1));
        }
    }
    let total: u64 = ckpt.shards().iter().map(|s| s.header().data_len()).sum();
    assert_eq!(ckpt.index().total_size(), Some(total));
    assert_eq!(report.bytes, total);
}

#[test]
fn max_shard_size_splits_and_single_shards_stay_one_file() {
    let Some(dir) = fixtures() else { return };
    let want = json(dir, "expected.json")["model.pt"]["tensors"].clone();
    let out = scratch("max_shard");
    let small = ConvertOptions {
        max_shard_size: Some(100),
        ..ConvertOptions::default()
    };
    let report = convert(
        &dir.join("model.pt"),
        &out.join("model.safetensors"),
        &small,
    )
    .unwrap();
    let names = listing(&out);
    assert!(names.len() > 3, "{names:?}");
    assert_eq!(
        report.files.last().unwrap(),
        &out.join("model.safetensors.index.json")
    );
    assert!(names.contains(&format!(
        "model-00001-of-{:05}.safetensors",
        names.len() - 1
    )));
    let ckpt = ShardedCheckpoint::open_dir(&out, &Default::default()).unwrap();
    check_tensors(&ckpt, want.as_object().unwrap(), "sharded model.pt");

    // Everything fits: one plain file; `force` also removes the stale index.
    let big = ConvertOptions {
        max_shard_size: Some(1 << 30),
        force: true,
        ..ConvertOptions::default()
    };
    let report = convert(&dir.join("model.pt"), &out.join("model.safetensors"), &big).unwrap();
    assert_eq!(report.files, [out.join("model.safetensors")]);
    assert!(!out.join("model.safetensors.index.json").exists());
    check_tensors(
        &open_single(&out.join("model.safetensors")),
        want.as_object().unwrap(),
        "model.pt",
    );

    // The sharded input re-split by size: shards may span input shards.
    let resplit = scratch("resplit");
    let index = dir.join("sharded/pytorch_model.bin.index.json");
    convert(&index, &resplit.join("x.safetensors"), &small).unwrap();
    assert!(resplit.join("x.safetensors.index.json").is_file());
    let ckpt = ShardedCheckpoint::open_dir(&resplit, &Default::default()).unwrap();
    let expected = json(dir, "sharded_expected.json");
    check_tensors(&ckpt, expected["tensors"].as_object().unwrap(), "resplit");
}

#[test]
fn inconsistent_indexes_are_refused_and_write_nothing() {
    let Some(dir) = fixtures() else { return };
    for (case, needle) in [
        (
            "missing",
            "pytorch_model-00002-of-00002.bin` listed in the index is missing",
        ),
        (
            "misplaced",
            "is listed in `pytorch_model-00002-of-00002.bin` but stored in",
        ),
        ("unlisted", "is not listed in the index"),
        ("phantom", "`extra.weight` is listed in"),
        ("traversal", "is not a plain file name"),
    ] {
        let out = scratch(&format!("broken_{case}"));
        let index = dir.join(format!("broken_{case}/pytorch_model.bin.index.json"));
        let e = convert(&index, &out, &ConvertOptions::default()).unwrap_err();
        assert!(e.to_string().contains(needle), "{case}: {e}");
        assert!(e.is_unsafe_or_invalid(), "{case}: {e}");
        assert!(listing(&out).is_empty(), "{case}");
    }
}

#[test]
fn numpy_files_convert_to_what_numpy_loads() {
    let Some(dir) = fixtures() else { return };
    let expected = json(dir, "numpy_expected.json");
    let all = expected.as_object().unwrap();
    let out = scratch("numpy");
    for name in ["c_f32", "fortran_f64", "big_i32", "big_f64_fortran"] {
        let target = out.join(format!("{name}.safetensors"));
        let report = convert(
            &dir.join(format!("{name}.npy")),
            &target,
            &Default::default(),
        );
        assert_eq!(report.unwrap().input_format, InputFormat::Npy);
        let want: serde_json::Map<_, _> = all
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let file = open_single(&target);
        assert_eq!(file.metadata().unwrap()["format"], "np");
        check_tensors(&file, &want, name);
    }
    for archive in ["arrays", "compressed"] {
        let target = out.join(format!("{archive}.safetensors"));
        let report = convert(
            &dir.join(format!("{archive}.npz")),
            &target,
            &Default::default(),
        );
        assert_eq!(report.unwrap().tensors, all.len());
        check_tensors(&open_single(&target), all, archive);
    }
    let e = convert(
        &dir.join("object.npy"),
        &out.join("object.safetensors"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(
        e.is_unsafe_or_invalid() && e.to_string().contains("object arrays"),
        "{e}"
    );
    assert!(!out.join("object.safetensors").exists());
}

#[test]
fn existing_output_is_refused_without_force() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("exists");
    let target = out.join("model.safetensors");
    std::fs::write(&target, b"precious").unwrap();
    let e = convert(&dir.join("model.pt"), &target, &Default::default()).unwrap_err();
    assert!(matches!(e, Error::OutputExists { .. }), "{e}");
    assert!(!e.is_unsafe_or_invalid());
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    assert_eq!(listing(&out), ["model.safetensors"]);
    let forced = ConvertOptions {
        force: true,
        ..ConvertOptions::default()
    };
    convert(&dir.join("model.pt"), &target, &forced).unwrap();
    SafetensorsFile::open(&target).unwrap();

    // Never over the input itself, even with force.
    let copy = out.join("copy.pt");
    std::fs::copy(dir.join("model.pt"), &copy).unwrap();
    let e = convert(&copy, &copy, &forced).unwrap_err();
    assert!(e.to_string().contains("is an input"), "{e}");
}

#[test]
fn refused_inputs_write_nothing() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("refused");
    for (file, unsafe_input, needle) in [
        ("malicious.pt", true, "posix.system"),
        ("scripted.pt", false, "TorchScript"),
        ("lfs_pointer.bin", false, "git-lfs"),
    ] {
        let e = convert(
            &dir.join(file),
            &out.join("x.safetensors"),
            &Default::default(),
        )
        .unwrap_err();
        assert!(e.is_unsafe_or_invalid(), "{file}: {e}");
        assert_eq!(e.is_unsafe(), unsafe_input, "{file}: {e}");
        assert!(e.to_string().contains(needle), "{file}: {e}");
    }
    let e = convert(
        &dir.join("already.safetensors"),
        &out.join("x.safetensors"),
        &Default::default(),
    )
    .unwrap_err();
    assert!(
        !e.is_unsafe_or_invalid() && e.to_string().contains("already"),
        "{e}"
    );
    assert!(listing(&out).is_empty(), "{:?}", listing(&out));
    assert!(!dir.join("MARKER_convert").exists());
}

/// Flips one byte at `offset` from the end of `path`.
fn tamper(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_catches_a_tampered_output() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("tamper");
    let target = out.join("model.safetensors");
    let options = ConvertOptions {
        dtype: Some(Dtype::BF16),
        ..ConvertOptions::default()
    };
    convert(&dir.join("model.pt"), &target, &options).unwrap();
    verify_conversion(&dir.join("model.pt"), &target, &options, &mut |_| {}).unwrap();
    // Verifying against the wrong options is a mismatch too.
    let e = verify_conversion(
        &dir.join("model.pt"),
        &target,
        &Default::default(),
        &mut |_| {},
    );
    assert!(matches!(e, Err(Error::Verify { .. })), "{e:?}");
    tamper(&target, 3);
    let e = verify_conversion(&dir.join("model.pt"), &target, &options, &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::Verify { .. }), "{e}");
    assert!(e.to_string().contains("bytes differ"), "{e}");
    assert!(!e.is_unsafe_or_invalid());

    // A sharded output: found from the directory, a shard tampered with.
    let sharded = scratch("tamper_sharded");
    let index = dir.join("sharded/pytorch_model.bin.index.json");
    convert(&index, &sharded, &Default::default()).unwrap();
    verify_conversion(&index, &sharded, &Default::default(), &mut |_| {}).unwrap();
    tamper(&sharded.join("model-00002-of-00002.safetensors"), 1);
    let e = verify_conversion(&index, &sharded, &Default::default(), &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("model-00002-of-00002"), "{e}");
}

#[test]
fn progress_covers_every_byte_in_both_stages() {
    let Some(dir) = fixtures() else { return };
    let out = scratch("progress");
    let mut last = Vec::new();
    let report = convert_with_progress(
        &dir.join("nested.pt"),
        &out.join("n.safetensors"),
        &Default::default(),
        &mut |p| {
            assert!(p.bytes_done <= p.bytes_total);
            last.retain(|(stage, _, _)| *stage != p.stage);
            last.push((p.stage, p.bytes_done, p.bytes_total));
        },
    )
    .unwrap();
    let total = report.bytes;
    assert_eq!(
        last,
        [(Stage::Write, total, total), (Stage::Verify, total, total)]
    );
}

#[test]
fn convert_streams_tensors_into_safetensors() {
    let Some(dir) = fixtures() else { return };
    let out = dir.join("tied.safetensors");
    let options = ConvertOptions {
        keep_checkpoint_metadata: true,
        ..ConvertOptions::default()
    };
    let report = convert(&dir.join("tied.pt"), &out, &options).unwrap();
    assert_eq!(report.tensors, 5);
    let bytes = std::fs::read(&out).unwrap();
    let file = safeweights::read::SafeTensors::parse(&bytes).unwrap();
    let metadata = file.metadata().unwrap();
    assert!(
        metadata
            .iter()
            .any(|(k, v)| k == "lm_head.weight" || v == "lm_head.weight"),
        "tied alias recorded as the reference does: {metadata:?}"
    );
    let ckpt = safeweights_pickle::torch::Checkpoint::open(&dir.join("tied.pt")).unwrap();
    for e in ckpt.tensors() {
        let t = file.tensor(&e.name).unwrap();
        assert_eq!(t.data(), &*ckpt.read_tensor(e).unwrap(), "{}", e.name);
    }
}
