//! `checksum`, `verify`, `metadata`, `shard`, `merge` and `filter`: the files
//! they write stay readable by the reference package and byte-identical to
//! the library writers.

mod common;

use std::path::Path;

use common::*;
use safeweights::read::SafetensorsFile;
use safeweights::shards::write_sharded;
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};

/// A private copy of a fixture in a fresh directory.
fn copy(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(name);
    std::fs::copy(fixtures().join(name), &target).unwrap();
    (dir, target.display().to_string())
}

/// Loads with the reference package; returns `name dtype shape sha` lines
/// and the metadata.
fn reference_view(path: &str) -> String {
    python_run(
        "import sys,hashlib,json\nfrom safetensors import safe_open\nwith safe_open(sys.argv[1],'np') as f:\n print(json.dumps(f.metadata(), sort_keys=True))\n for k in sorted(f.keys()):\n  s=f.get_slice(k); print(k, s.get_dtype(), s.get_shape())",
        &[path],
    )
}

#[test]
fn checksum_write_then_verify_and_detect_corruption() {
    let (_dir, path) = copy("numpy.safetensors");
    let before = reference_view(&path);
    let manifest = json(&["checksum", &path], 0);
    assert_eq!(manifest["algorithm"], "sha256");
    let doc = json(&["checksum", &path, "--write"], 0);
    assert_eq!(doc["written"], 2);
    let after = reference_view(&path);
    assert!(after.contains("safeweights.sha256"), "{after}");
    assert_eq!(
        before.lines().skip(1).collect::<Vec<_>>(),
        after.lines().skip(1).collect::<Vec<_>>()
    );
    assert_eq!(code(&run(&["verify", &path])), 0);
    // Flip the last data byte: "x" (I32, written after the F64) no longer matches.
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let output = run(&["verify", &path]);
    assert_eq!(code(&output), 1);
    assert!(
        stderr(&output).contains("\"x\" does not match"),
        "{}",
        stderr(&output)
    );
    let doc = json(&["verify", &path], 1);
    assert_eq!(doc["mismatched"], serde_json::json!(["x"]));
}

#[test]
fn checksum_write_on_a_sharded_checkpoint_stores_digests_per_shard() {
    let Some(_) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixtures().join("sharded")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let index = dir.path().join("model.safetensors.index.json");
    let index = index.display().to_string();
    let manifest = json(&["checksum", &index], 0);
    let doc = json(&["checksum", &index, "--write"], 0);
    assert_eq!(
        doc["written"],
        manifest["tensors"].as_object().unwrap().len()
    );
    assert_eq!(code(&run(&["verify", &index])), 0);
    // Every shard holds exactly its own tensors' digests, readable by the reference.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let shard = entry.unwrap().path();
        if shard.extension().is_some_and(|e| e == "safetensors") {
            let view = reference_view(&shard.display().to_string());
            assert!(view.contains("safeweights.sha256"), "{view}");
            assert_eq!(code(&run(&["verify", &shard.display().to_string()])), 0);
        }
    }
    assert_eq!(
        code(&run(&["verify", &index, "--manifest", "/dev/null"])),
        2
    );
}

#[test]
fn verify_against_a_manifest_and_without_checksums() {
    let Some(_) = python() else { return };
    let (dir, path) = copy("numpy.safetensors");
    let output = run(&["checksum", &path]);
    let manifest = dir.path().join("m.json");
    std::fs::write(&manifest, &output.stdout).unwrap();
    let manifest = manifest.display().to_string();
    assert_eq!(code(&run(&["verify", &path, "--manifest", &manifest])), 0);
    let output = run(&["verify", &path]);
    assert_eq!(code(&output), 1);
    assert!(stderr(&output).contains("no checksums stored"));
    let output = run(&[
        "verify",
        &fixture("all.safetensors"),
        "--manifest",
        &manifest,
    ]);
    assert_eq!(code(&output), 1);
}

#[test]
fn metadata_edits_in_place_and_by_rewrite() {
    let Some(_) = python() else { return };
    let (_dir, path) = copy("all.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    let doc = json(&["metadata", &path], 0);
    assert_eq!(
        doc["metadata"],
        serde_json::json!({"format": "pt", "note": "fixture"})
    );
    // Shorter: fits in the old header, so the data does not move.
    let doc = json(&["metadata", &path, "--delete", "note"], 0);
    assert_eq!(doc["in_place"], true);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    // Much longer: rewritten through a temporary file.
    let long = format!("k={}", "v".repeat(5000));
    let doc = json(&["metadata", &path, "--set", &long, "--set", "a=b"], 0);
    assert_eq!(doc["in_place"], false);
    let view = reference_view(&path);
    assert!(
        view.starts_with("{\"a\": \"b\", \"format\": \"pt\", \"k\": \"vvv"),
        "{view}"
    );
    assert_eq!(
        code(&run(&[
            "diff",
            &path,
            &fixture("all.safetensors"),
            "-t",
            "*"
        ])),
        1
    );
    let doc = json(&["diff", &path, &fixture("all.safetensors")], 1);
    assert!(doc["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["identical"] == true));
    assert_eq!(code(&run(&["metadata", &path, "--set", "novalue"])), 2);
    let doc = json(&["metadata", &path, "--set", "a=c", "--copy"], 0);
    assert_eq!(doc["in_place"], false);
}

fn library_tensors(path: &Path) -> (SafetensorsFile, Vec<String>) {
    let file = SafetensorsFile::open(path).unwrap();
    let names = file.header().tensors().map(|t| t.name.to_owned()).collect();
    (file, names)
}

#[test]
fn shard_and_merge_are_byte_identical_to_the_library() {
    let Some(_) = python() else { return };
    let work = tempfile::tempdir().unwrap();
    let source = fixtures().join("all.safetensors");
    let out = work.path().join("cli");
    let doc = json(
        &[
            "shard",
            source.to_str().unwrap(),
            "--max-shard-size",
            "300KB",
            out.to_str().unwrap(),
        ],
        0,
    );
    assert_eq!(
        doc["written"].as_array().unwrap().len(),
        4,
        "3 shards and the index: {doc}"
    );
    // The library writer, fed the same tensors in the same order.
    let (file, names) = library_tensors(&source);
    let refs: Vec<(&str, TensorRef<'_>)> = names
        .iter()
        .map(|n| {
            let info = file.info(n).unwrap();
            (
                n.as_str(),
                TensorRef::new(
                    info.dtype,
                    info.shape.to_vec(),
                    file.view(n).unwrap().unwrap().data(),
                ),
            )
        })
        .collect();
    let lib = work.path().join("lib");
    std::fs::create_dir(&lib).unwrap();
    let written = write_sharded(
        &lib,
        &refs,
        file.header().metadata(),
        300_000,
        &WriteOptions::default(),
    )
    .unwrap();
    for path in &written {
        let name = path.file_name().unwrap();
        assert_eq!(
            without_checkpoint_id(std::fs::read(path).unwrap()),
            without_checkpoint_id(std::fs::read(out.join(name)).unwrap()),
            "{name:?}"
        );
    }
    // Merge back: identical to serialize_to_file of all tensors in order.
    let merged = work.path().join("merged.safetensors");
    assert_eq!(
        code(&run(&[
            "merge",
            out.to_str().unwrap(),
            merged.to_str().unwrap()
        ])),
        0
    );
    let expected = work.path().join("expected.safetensors");
    serialize_to_file(
        &refs,
        file.header().metadata(),
        &expected,
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&merged).unwrap(),
        std::fs::read(&expected).unwrap()
    );
    assert_eq!(
        reference_view(merged.to_str().unwrap()),
        reference_view(source.to_str().unwrap())
    );
    // Resharding a sharded checkpoint into one file.
    let one = work.path().join("one");
    let doc = json(
        &[
            "shard",
            &fixture("sharded"),
            "--max-shard-size",
            "10GB",
            one.to_str().unwrap(),
        ],
        0,
    );
    assert!(doc["written"][0]
        .as_str()
        .unwrap()
        .ends_with("model.safetensors"));
    assert_eq!(
        code(&run(&["diff", one.to_str().unwrap(), &fixture("sharded")])),
        0
    );
    assert_eq!(
        code(&run(&[
            "shard",
            &fixture("sharded"),
            "--max-shard-size",
            "lots",
            "x"
        ])),
        2
    );
}

/// The index is published like the shards beside it (0666 minus the
/// umask), not with the 0600 of the temporary file it was written to.
#[cfg(unix)]
#[test]
fn shard_index_gets_the_same_permissions_as_the_shards() {
    let Some(_) = python() else { return };
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("cli");
    let doc = json(
        &[
            "shard",
            fixtures().join("all.safetensors").to_str().unwrap(),
            "--max-shard-size",
            "300KB",
            out.to_str().unwrap(),
        ],
        0,
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let written: Vec<&str> = doc["written"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let (index, shards): (Vec<&str>, Vec<&str>) = written
        .iter()
        .partition(|p| p.ends_with("model.safetensors.index.json"));
    assert_eq!((index.len(), shards.len()), (1, 3), "{doc}");
    let index_mode = mode(Path::new(index[0]));
    for shard in shards {
        assert_eq!(
            index_mode,
            mode(Path::new(shard)),
            "index {:o} and shard {shard} differ",
            index_mode
        );
    }
}

#[test]
fn filter_selects_excludes_and_renames() {
    let Some(_) = python() else { return };
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("f.safetensors");
    let out_s = out.to_str().unwrap();
    let doc = json(
        &[
            "filter",
            &fixture("sharded"),
            out_s,
            "-t",
            "layer.*",
            "--exclude",
            "*.3.*",
            "--rename",
            "layer.=block.",
        ],
        0,
    );
    assert_eq!(doc["tensors"].as_array().unwrap().len(), 4);
    let view = reference_view(out_s);
    assert!(
        view.contains("block.0.weight F32 [16, 16]")
            && !view.contains("block.3")
            && !view.contains("embed"),
        "{view}"
    );
    let output = run(&[
        "filter",
        &fixture("sharded"),
        out_s,
        "--rename",
        "layer.=",
        "--rename",
        "embed=",
    ]);
    assert_eq!(code(&output), 2);
    assert_eq!(
        code(&run(&["filter", &fixture("sharded"), out_s, "-t", "zzz"])),
        2
    );
}

/// The file's bytes with its random checkpoint id (32 hex digits after the
/// `safeweights.checkpoint_id` key) zeroed, to compare two saves.
fn without_checkpoint_id(mut bytes: Vec<u8>) -> Vec<u8> {
    let key = safeweights::shards::CHECKPOINT_ID_KEY.as_bytes();
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("a sharded file carries a checkpoint id");
    let colon = at + key.len() + 1;
    let quote = colon + bytes[colon..].iter().position(|&b| b == b'"').unwrap() + 1;
    bytes[quote..quote + 32].fill(b'0');
    bytes
}
