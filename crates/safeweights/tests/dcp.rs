//! `safeweights::dcp`: opening a distributed checkpoint directory checks
//! every shard against the metadata, and consolidation writes full tensors.
//! The directories are written here as `safeweights.dcp` writes them (the
//! Python tests cover the real multi-rank writer).

use std::path::Path;

use safeweights::dcp::{consolidate, DcpCheckpoint, METADATA_FILE};
use safeweights::read::{OpenOptions, SafetensorsFile};
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
use safeweights::{DcpProblem, Dtype, Error, Metadata};

const SAVE_ID: &str = "0123abcd";

fn shard_metadata(rank: u64, world: u64) -> Metadata {
    let mut metadata = Metadata::new();
    metadata.insert("safeweights.dcp.save_id".into(), SAVE_ID.into());
    metadata.insert("safeweights.dcp.rank".into(), rank.to_string());
    metadata.insert("safeweights.dcp.world_size".into(), world.to_string());
    metadata
}

/// A 4x3 f32 tensor `w` (values 0..12) saved by two ranks, two rows each;
/// `chunks` overrides the second chunk's offsets and sizes.
fn write_checkpoint(dir: &Path, second: (&[usize], &[usize])) {
    let values: Vec<u8> = (0..12u32).flat_map(|v| (v as f32).to_le_bytes()).collect();
    let options = WriteOptions {
        sync: false,
        ..WriteOptions::default()
    };
    let mut files = serde_json::Map::new();
    for rank in 0..2u64 {
        let rows = &values[rank as usize * 24..(rank as usize + 1) * 24];
        let name = format!("__{rank}_0.safetensors");
        let path = dir.join(&name);
        let tensor = TensorRef::new(Dtype::F32, vec![2, 3], rows);
        serialize_to_file(
            &[("w", tensor)],
            Some(&shard_metadata(rank, 2)),
            &path,
            &options,
        )
        .unwrap();
        let bytes = std::fs::metadata(&path).unwrap().len();
        files.insert(name, serde_json::json!({"rank": rank, "bytes": bytes}));
    }
    let document = serde_json::json!({
        "format": "safeweights.dcp", "version": 1, "save_id": SAVE_ID, "world_size": 2,
        "files": files,
        "state": {
            "w": {"tensor": {"dtype": "float32", "size": [4, 3], "chunks": [
                {"offsets": [0, 0], "sizes": [2, 3], "file": "__0_0.safetensors", "entry": "w"},
                {"offsets": second.0, "sizes": second.1, "file": "__1_0.safetensors", "entry": "w"},
            ]}},
            "step": {"object": {"file": null, "value": {"version": 2, "root": 7}}},
        },
    });
    std::fs::write(dir.join(METADATA_FILE), document.to_string()).unwrap();
}

fn problem_of(result: safeweights::Result<DcpCheckpoint>) -> (DcpProblem, String) {
    match result.unwrap_err() {
        Error::DistributedCheckpoint { problem, detail } => (problem, detail),
        other => panic!("not a DCP error: {other}"),
    }
}

#[test]
fn a_complete_checkpoint_opens_and_consolidates() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), (&[2, 0], &[2, 3]));
    let checkpoint = DcpCheckpoint::open(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(checkpoint.tensors().count(), 1);
    assert_eq!(
        checkpoint.objects().map(|(n, _)| n).collect::<Vec<_>>(),
        ["step"]
    );
    let out = dir.path().join("out");
    let written = consolidate(&checkpoint, &out, 1 << 20, &WriteOptions::default()).unwrap();
    assert_eq!(written.len(), 2);
    let file = SafetensorsFile::open(out.join("model-00001-of-00001.safetensors")).unwrap();
    let expected: Vec<u8> = (0..12u32).flat_map(|v| (v as f32).to_le_bytes()).collect();
    assert_eq!(
        file.tensor_bytes("w").unwrap().as_ref(),
        expected.as_slice()
    );
    assert_eq!(file.info("w").unwrap().shape, vec![4, 3]);
}

#[test]
fn a_missing_shard_is_named_with_its_tensors() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), (&[2, 0], &[2, 3]));
    std::fs::remove_file(dir.path().join("__1_0.safetensors")).unwrap();
    let (problem, detail) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
    assert_eq!(problem, DcpProblem::MissingShard);
    assert!(
        detail.contains("__1_0.safetensors") && detail.contains("holds w"),
        "{detail}"
    );
}

#[test]
fn a_truncated_shard_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), (&[2, 0], &[2, 3]));
    let path = dir.path().join("__0_0.safetensors");
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4)
        .unwrap();
    let (problem, detail) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
    assert_eq!(problem, DcpProblem::Truncated);
    assert!(detail.contains("__0_0.safetensors"), "{detail}");
}

#[test]
fn a_shard_of_another_rank_count_is_a_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(dir.path(), (&[2, 0], &[2, 3]));
    let path = dir.path().join(METADATA_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"world_size\":2", "\"world_size\":4");
    std::fs::write(&path, text).unwrap();
    let (problem, detail) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
    assert_eq!(problem, DcpProblem::Mismatch);
    assert!(detail.contains("rank count"), "{detail}");
}

#[test]
fn overlapping_or_missing_chunks_are_invalid() {
    for second in [
        (&[1usize, 0][..], &[2usize, 3][..]),
        (&[2, 0][..], &[1, 3][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), second);
        let (problem, _) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
        assert_eq!(problem, DcpProblem::Invalid, "{second:?}");
    }
}

#[test]
fn a_directory_without_metadata_is_incomplete_and_shard_names_cannot_escape() {
    let dir = tempfile::tempdir().unwrap();
    let (problem, _) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
    assert_eq!(problem, DcpProblem::Incomplete);
    write_checkpoint(dir.path(), (&[2, 0], &[2, 3]));
    let path = dir.path().join(METADATA_FILE);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"__1_0.safetensors\":{", "\"../__1_0.safetensors\":{");
    std::fs::write(&path, text).unwrap();
    let (problem, detail) = problem_of(DcpCheckpoint::open(dir.path(), &OpenOptions::default()));
    assert_eq!(problem, DcpProblem::Invalid);
    assert!(detail.contains("invalid shard file name"), "{detail}");
}
