//! Sharded checkpoints: planning, writing, opening, and refusing indexes
//! that disagree with their shards.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{pattern, python, run_python};
use safeweights::read::OpenOptions;
use safeweights::shards::{
    plan_shards, write_sharded, ShardIndex, ShardedCheckpoint, INDEX_FILE_NAME,
};
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
use safeweights::{Dtype, Error, Metadata};

#[test]
fn plan_shards_fills_each_shard_up_to_the_maximum() {
    assert_eq!(plan_shards(&[3, 3, 3], 6), vec![0..2, 2..3]);
    assert_eq!(plan_shards(&[3, 3, 3], 9), vec![0..3]);
    assert_eq!(plan_shards(&[3, 3, 3], 5), vec![0..1, 1..2, 2..3]);
    assert_eq!(
        plan_shards(&[1, 10, 1, 1], 4),
        vec![0..1, 1..2, 2..4],
        "an oversized tensor gets its own shard"
    );
    assert_eq!(plan_shards(&[10], 4), vec![0..1]);
    assert_eq!(
        plan_shards(&[0, 0, 5, 0], 5),
        vec![0..4],
        "empty tensors cost nothing"
    );
    assert_eq!(plan_shards(&[], 4), Vec::<std::ops::Range<usize>>::new());
    assert_eq!(
        plan_shards(&[u64::MAX, 1], u64::MAX),
        vec![0..1, 1..2],
        "no overflow"
    );
}

struct Model {
    names: Vec<String>,
    data: Vec<Vec<u8>>,
}

impl Model {
    fn new(count: usize, bytes: usize) -> Model {
        Model {
            names: (0..count).map(|i| format!("layers.{i}.weight")).collect(),
            data: (0..count).map(|i| pattern(bytes, i as u64)).collect(),
        }
    }

    fn refs(&self) -> Vec<(&str, TensorRef<'_>)> {
        self.names
            .iter()
            .zip(&self.data)
            .map(|(n, d)| (n.as_str(), TensorRef::new(Dtype::F32, vec![d.len() / 4], d)))
            .collect()
    }
}

fn check_checkpoint(checkpoint: &ShardedCheckpoint, model: &Model) {
    let mut expected: Vec<&str> = model.names.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert_eq!(checkpoint.names(), expected);
    for (name, data) in model.names.iter().zip(&model.data) {
        let (shard, info) = checkpoint.get(name).unwrap();
        assert_eq!(info.shape, [data.len() / 4]);
        assert_eq!(&shard.bytes_of(info).unwrap()[..], &data[..], "{name}");
    }
    let error = checkpoint.get("missing").unwrap_err();
    assert!(
        matches!(error.kind(), Error::TensorNotFound { .. }),
        "{error:?}"
    );
}

#[test]
fn write_sharded_then_open_round_trips() {
    let model = Model::new(6, 1000);
    let dir = tempfile::tempdir().unwrap();
    let metadata: Metadata = [("format".to_owned(), "pt".to_owned())]
        .into_iter()
        .collect();
    let written = write_sharded(
        dir.path(),
        &model.refs(),
        Some(&metadata),
        2500,
        &WriteOptions::default(),
    )
    .unwrap();
    let names: Vec<_> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "model-00001-of-00003.safetensors",
            "model-00002-of-00003.safetensors",
            "model-00003-of-00003.safetensors",
            INDEX_FILE_NAME
        ]
    );
    let checkpoint =
        ShardedCheckpoint::open(dir.path().join(INDEX_FILE_NAME), &OpenOptions::default()).unwrap();
    check_checkpoint(&checkpoint, &model);
    assert_eq!(checkpoint.shards().len(), 3);
    assert_eq!(checkpoint.index().total_size(), Some(6000));
    assert_eq!(checkpoint.metadata(), Some(&metadata));
    assert_eq!(
        checkpoint.index().weight_map["layers.2.weight"],
        "model-00002-of-00003.safetensors"
    );

    let from_dir = ShardedCheckpoint::open_dir(dir.path(), &OpenOptions::default()).unwrap();
    check_checkpoint(&from_dir, &model);
}

#[test]
fn write_sharded_writes_one_plain_file_when_everything_fits() {
    let model = Model::new(3, 100);
    let dir = tempfile::tempdir().unwrap();
    let written = write_sharded(
        dir.path(),
        &model.refs(),
        None,
        1 << 20,
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(written, [dir.path().join("model.safetensors")]);
    let checkpoint = ShardedCheckpoint::open_dir(dir.path(), &OpenOptions::default()).unwrap();
    check_checkpoint(&checkpoint, &model);
    assert_eq!(checkpoint.index().total_size(), Some(300));
}

#[test]
fn index_json_is_byte_identical_to_what_python_writes() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut weight_map = BTreeMap::new();
    for (i, name) in [
        "b.weight",
        "a.bias",
        "z",
        "ünï.çødé",
        "emoji.😀",
        "quote\"back\\slash",
        "ctl\u{1}",
    ]
    .iter()
    .enumerate()
    {
        weight_map.insert(
            name.to_string(),
            format!("model-0000{}-of-00002.safetensors", i % 2 + 1),
        );
    }
    let mut index = ShardIndex::new(123_456_789, weight_map);
    index.metadata.insert("format".into(), "pt".into());
    let path = dir.path().join(INDEX_FILE_NAME);
    std::fs::write(&path, index.to_json()).unwrap();
    let script = r#"
import json, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
index = json.loads(text)
expected = json.dumps(index, indent=2, sort_keys=True) + "\n"
assert text == expected, (text, expected)
print("same")
"#;
    assert_eq!(run_python(&python, script, &[&path]).trim(), "same");
    assert_eq!(ShardIndex::read(&path).unwrap(), index);
}

/// Two shard files and an index; `index` maps tensor to shard number.
fn setup(dir: &Path, shards: &[&[&str]], index: &[(&str, &str)]) -> std::path::PathBuf {
    let data = [0u8; 4];
    for (i, tensors) in shards.iter().enumerate() {
        let refs: Vec<_> = tensors
            .iter()
            .map(|n| (*n, TensorRef::new(Dtype::F32, vec![1], &data)))
            .collect();
        serialize_to_file(
            &refs,
            None,
            dir.join(format!("s{}.safetensors", i + 1)),
            &WriteOptions::default(),
        )
        .unwrap();
    }
    let weight_map = index
        .iter()
        .map(|(t, s)| (t.to_string(), s.to_string()))
        .collect();
    let path = dir.join(INDEX_FILE_NAME);
    std::fs::write(&path, ShardIndex::new(0, weight_map).to_json()).unwrap();
    path
}

fn shard_error(index_path: &Path) -> String {
    let error = ShardedCheckpoint::open(index_path, &OpenOptions::default()).unwrap_err();
    assert!(matches!(error.kind(), Error::Shard { .. }), "{error:?}");
    assert_eq!(error.path(), Some(index_path));
    error.to_string()
}

#[test]
fn missing_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(
        dir.path(),
        &[&["a"]],
        &[("a", "s1.safetensors"), ("b", "s9.safetensors")],
    );
    assert!(shard_error(&path).contains("s9.safetensors"));
}

#[test]
fn tensor_listed_in_the_wrong_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(
        dir.path(),
        &[&["a"], &["b"]],
        &[("a", "s2.safetensors"), ("b", "s1.safetensors")],
    );
    let text = shard_error(&path);
    assert!(text.contains("\"a\"") || text.contains("\"b\""), "{text}");
}

#[test]
fn tensor_in_two_shards_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(
        dir.path(),
        &[&["a", "b"], &["a", "c"]],
        &[
            ("a", "s1.safetensors"),
            ("b", "s1.safetensors"),
            ("c", "s2.safetensors"),
        ],
    );
    let text = shard_error(&path);
    assert!(text.contains("both"), "{text}");
}

#[test]
fn tensor_in_a_shard_but_not_in_the_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(dir.path(), &[&["a", "hidden"]], &[("a", "s1.safetensors")]);
    let text = shard_error(&path);
    assert!(
        text.contains("\"hidden\"") && text.contains("not listed"),
        "{text}"
    );
}

#[test]
fn tensor_in_the_index_but_not_in_its_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = setup(
        dir.path(),
        &[&["a"]],
        &[("a", "s1.safetensors"), ("ghost", "s1.safetensors")],
    );
    let text = shard_error(&path);
    assert!(text.contains("\"ghost\""), "{text}");
}

#[test]
fn shard_names_that_are_not_plain_file_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "../secret.safetensors",
        "..",
        ".",
        "/etc/passwd",
        "sub/dir.safetensors",
        "..\\x.safetensors",
        "C:x",
        "",
    ] {
        let json = serde_json::json!({"metadata": {"total_size": 4}, "weight_map": {"a": bad}})
            .to_string();
        let error = ShardIndex::from_json(&json).unwrap_err();
        assert!(
            matches!(error.kind(), Error::Shard { .. }),
            "{bad:?}: {error:?}"
        );
        let path = dir.path().join(INDEX_FILE_NAME);
        std::fs::write(&path, &json).unwrap();
        let error = ShardedCheckpoint::open(&path, &OpenOptions::default()).unwrap_err();
        assert!(
            matches!(error.kind(), Error::Shard { .. }),
            "{bad:?}: {error:?}"
        );
    }
}

#[test]
fn index_that_is_not_index_json_is_refused() {
    for bad in [
        "",
        "{}",
        "[]",
        r#"{"metadata":{},"weight_map":{"a":1}}"#,
        r#"{"weight_map":{}}"#,
    ] {
        let error = ShardIndex::from_json(bad).unwrap_err();
        assert!(
            matches!(error.kind(), Error::Shard { .. }),
            "{bad:?}: {error:?}"
        );
    }
}

#[test]
fn open_dir_refuses_ambiguous_directories() {
    let dir = tempfile::tempdir().unwrap();
    let error = ShardedCheckpoint::open_dir(dir.path(), &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            Error::CheckpointDirectory {
                index_files: 0,
                safetensors_files: 0
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.path(), Some(dir.path()));
    assert!(!error.is_invalid_data());
    let data = [0u8; 4];
    for file in ["one.safetensors", "two.safetensors"] {
        serialize_to_file(
            &[("a", TensorRef::new(Dtype::F32, vec![1], &data))],
            None,
            dir.path().join(file),
            &WriteOptions::default(),
        )
        .unwrap();
    }
    let error = ShardedCheckpoint::open_dir(dir.path(), &OpenOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), Error::CheckpointDirectory { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("2 safetensors files"), "{error}");
}

#[test]
fn open_dir_prefers_the_index_over_its_shards() {
    let dir = tempfile::tempdir().unwrap();
    setup(
        dir.path(),
        &[&["a"], &["b"]],
        &[("a", "s1.safetensors"), ("b", "s2.safetensors")],
    );
    let checkpoint = ShardedCheckpoint::open_dir(dir.path(), &OpenOptions::default()).unwrap();
    assert_eq!(checkpoint.names(), ["a", "b"]);
    assert_eq!(checkpoint.shards().len(), 2);
}

// ---- the one resolver --------------------------------------------------------

#[test]
fn resolver_tells_files_indexes_and_directories_apart_by_content() {
    use safeweights::resolve::{resolve, resolve_path, Target};
    let dir = tempfile::tempdir().unwrap();
    let index = setup(
        dir.path(),
        &[&["a"], &["b"]],
        &[("a", "s1.safetensors"), ("b", "s2.safetensors")],
    );
    assert_eq!(resolve_path(&index).unwrap(), Target::Index(index.clone()));
    assert_eq!(
        resolve_path(dir.path()).unwrap(),
        Target::Index(index.clone())
    );
    let shard = dir.path().join("s1.safetensors");
    assert_eq!(resolve_path(&shard).unwrap(), Target::File(shard.clone()));
    // Names do not decide: an index under another name is an index, a
    // safetensors file named `.json` is a file.
    let renamed_index = dir.path().join("weights.idx");
    std::fs::copy(&index, &renamed_index).unwrap();
    assert_eq!(
        resolve_path(&renamed_index).unwrap(),
        Target::Index(renamed_index.clone())
    );
    let json_named = dir.path().join("model.json");
    std::fs::copy(&shard, &json_named).unwrap();
    assert_eq!(
        resolve_path(&json_named).unwrap(),
        Target::File(json_named.clone())
    );
    let opened = ShardedCheckpoint::open_path(&renamed_index, &OpenOptions::default()).unwrap();
    assert_eq!(opened.names(), ["a", "b"]);
    let opened = ShardedCheckpoint::open_path(&json_named, &OpenOptions::default()).unwrap();
    assert_eq!(opened.names(), ["a"]);
    assert_eq!(
        resolve("https://example.com/m.safetensors").unwrap(),
        Target::Url("https://example.com/m.safetensors".into())
    );
    let missing = resolve_path(&dir.path().join("missing")).unwrap_err();
    assert!(matches!(missing.kind(), Error::Io(_)), "{missing:?}");
    assert!(missing.path().is_some());
}

#[test]
fn open_shards_opens_each_shard_once_with_the_callers_opener() {
    use safeweights::read::SafetensorsFile;
    use safeweights::shards::open_shards;
    let dir = tempfile::tempdir().unwrap();
    let index = setup(
        dir.path(),
        &[&["a", "c"], &["b"]],
        &[
            ("a", "s1.safetensors"),
            ("b", "s2.safetensors"),
            ("c", "s1.safetensors"),
        ],
    );
    let mut opened_paths = Vec::new();
    let shards = open_shards(
        &index,
        |path| {
            opened_paths.push(path.to_owned());
            SafetensorsFile::open(path)
        },
        SafetensorsFile::header,
    )
    .unwrap();
    assert_eq!(
        opened_paths,
        [
            dir.path().join("s1.safetensors"),
            dir.path().join("s2.safetensors")
        ]
    );
    assert_eq!(shards.files.len(), 2);
    assert_eq!(shards.location["c"], 0);
    assert_eq!(shards.location["b"], 1);
    // Disagreement is still refused, naming the index.
    let bad = setup(dir.path(), &[&["a"], &["b"]], &[("a", "s2.safetensors")]);
    let error =
        open_shards(&bad, |p| SafetensorsFile::open(p), SafetensorsFile::header).unwrap_err();
    assert!(matches!(error.kind(), Error::Shard { .. }), "{error:?}");
    assert_eq!(error.path(), Some(bad.as_path()));
}
