//! Property: whatever tensors and metadata go in, the three writers produce
//! the same bytes, and reading them back gives the same tensors.

use std::collections::BTreeMap;

use proptest::prelude::*;
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::write::{
    serialize, serialize_to_file, StreamingWriter, TensorRef, TensorSpec, WriteOptions,
};
use safeweights::{Dtype, Metadata};

#[derive(Debug, Clone)]
struct Tensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Any string: control characters, quotes, backslashes, any Unicode.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn any_tensor() -> impl Strategy<Value = Tensor> {
    (
        prop::sample::select(Dtype::ALL.to_vec()),
        prop::collection::vec(0usize..5, 0..=4),
    )
        .prop_filter_map(
            "sub-byte tensors must fill whole bytes",
            |(dtype, shape)| {
                let numel: usize = shape.iter().product();
                dtype.bytes_for(numel).map(|len| (dtype, shape, len))
            },
        )
        .prop_flat_map(|(dtype, shape, len)| {
            prop::collection::vec(any::<u8>(), len).prop_map(move |data| Tensor {
                dtype,
                shape: shape.clone(),
                data,
            })
        })
}

fn any_tensors() -> impl Strategy<Value = BTreeMap<String, Tensor>> {
    prop::collection::btree_map(
        any_text(10).prop_filter("reserved", |n| n != "__metadata__"),
        any_tensor(),
        0..6,
    )
}

fn any_metadata() -> impl Strategy<Value = Option<Metadata>> {
    prop::option::of(prop::collection::btree_map(
        any_text(12),
        any_text(24),
        0..4,
    ))
}

/// A tiny deterministic generator driven by a proptest-chosen seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Pushes every tensor through a streaming writer, with chunks of random
/// sizes, interleaving the tensors in a random order.
fn write_streaming(
    path: &std::path::Path,
    tensors: &BTreeMap<String, Tensor>,
    metadata: Option<&Metadata>,
    options: &WriteOptions,
    seed: u64,
) {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, t)| TensorSpec::new(name.clone(), t.dtype, t.shape.clone()))
        .collect();
    let mut writer = StreamingWriter::create(path, &specs, metadata, options).unwrap();
    let mut rng = Rng(seed | 1);
    let mut pending: Vec<(&str, &[u8])> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), &t.data[..]))
        .collect();
    while !pending.is_empty() {
        let slot = rng.below(pending.len());
        let (name, rest) = pending[slot];
        let take = if rest.is_empty() {
            0
        } else {
            1 + rng.below(rest.len())
        };
        writer.write(name, &rest[..take]).unwrap();
        if take == rest.len() {
            pending.remove(slot);
        } else {
            pending[slot].1 = &rest[take..];
        }
    }
    writer.finish().unwrap();
}

fn refs(tensors: &BTreeMap<String, Tensor>) -> Vec<(&str, TensorRef<'_>)> {
    tensors
        .iter()
        .map(|(name, t)| {
            (
                name.as_str(),
                TensorRef::new(t.dtype, t.shape.clone(), &t.data),
            )
        })
        .collect()
}

fn check_read_back(bytes: &[u8], tensors: &BTreeMap<String, Tensor>, metadata: Option<&Metadata>) {
    let parsed = SafeTensors::parse(bytes).unwrap();
    assert_eq!(parsed.len(), tensors.len());
    assert_eq!(parsed.metadata(), metadata);
    for (name, tensor) in tensors {
        let view = parsed.tensor(name).unwrap();
        assert_eq!(view.dtype(), tensor.dtype);
        assert_eq!(view.shape(), &tensor.shape[..]);
        assert_eq!(view.data(), &tensor.data[..]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn all_writers_agree_and_round_trip(
        tensors in any_tensors(),
        metadata in any_metadata(),
        alignment in prop::sample::select(vec![8usize, 16, 64, 4096]),
        seed in any::<u64>(),
    ) {
        let options = WriteOptions { alignment, ..WriteOptions::default() };
        let metadata = metadata.as_ref();
        let mut input = refs(&tensors);
        let in_memory = serialize(&input, metadata, &options).unwrap();

        // The input order does not matter.
        input.reverse();
        prop_assert_eq!(&serialize(&input, metadata, &options).unwrap(), &in_memory);

        let dir = tempfile::tempdir().unwrap();
        let to_file = dir.path().join("serialize_to_file.safetensors");
        serialize_to_file(&input, metadata, &to_file, &options).unwrap();
        prop_assert_eq!(&std::fs::read(&to_file).unwrap(), &in_memory);

        let streamed = dir.path().join("streaming.safetensors");
        write_streaming(&streamed, &tensors, metadata, &options, seed);
        prop_assert_eq!(&std::fs::read(&streamed).unwrap(), &in_memory);

        check_read_back(&in_memory, &tensors, metadata);
        let parsed = SafeTensors::parse(&in_memory).unwrap();
        prop_assert_eq!(parsed.header().data_start() % alignment as u64, 0);

        for backend in [Backend::Mmap, Backend::Pread] {
            let file = SafetensorsFile::open_with(&streamed, &OpenOptions { backend, ..OpenOptions::default() }).unwrap();
            for (name, tensor) in &tensors {
                prop_assert_eq!(&file.tensor_bytes(name).unwrap()[..], &tensor.data[..]);
            }
        }
    }

    #[test]
    fn default_alignment_matches_the_reference_padding(tensors in any_tensors(), metadata in any_metadata()) {
        let bytes = serialize(&refs(&tensors), metadata.as_ref(), &WriteOptions::default()).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        prop_assert_eq!(header_len % 8, 0);
        let json = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
        // At most 7 spaces of padding, and the JSON itself is what
        // serde_json's compact form would produce for the same header.
        let trimmed = json.trim_end_matches(' ');
        prop_assert!(json.len() - trimmed.len() < 8);
        let value: serde_json::Value = serde_json::from_str(trimmed).unwrap();
        let mut names: Vec<&String> = value.as_object().unwrap().keys().filter(|k| *k != "__metadata__").collect();
        names.sort();
        let mut expected: Vec<&String> = tensors.keys().collect();
        expected.sort();
        prop_assert_eq!(names, expected);
    }
}

#[test]
fn tensor_data_of_the_wrong_length_is_refused_by_every_writer() {
    let data = [0u8; 7];
    let tensors = [("w", TensorRef::new(Dtype::F32, vec![2], &data))];
    let error = serialize(&tensors, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), safeweights::Error::InvalidTensor { tensor, .. } if tensor == "w"),
        "{error:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let error = serialize_to_file(&tensors, None, &path, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), safeweights::Error::InvalidTensor { .. }),
        "{error:?}"
    );
    assert!(!path.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no temporary file left"
    );
}

#[test]
fn duplicate_or_reserved_names_are_refused_by_writers() {
    let data = [0u8; 4];
    let duplicate = [
        ("w", TensorRef::new(Dtype::F32, vec![1], &data)),
        ("w", TensorRef::new(Dtype::I32, vec![1], &data)),
    ];
    let error = serialize(&duplicate, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), safeweights::Error::DuplicateTensorName { name } if name == "w"),
        "{error:?}"
    );
    let reserved = [("__metadata__", TensorRef::new(Dtype::F32, vec![1], &data))];
    let error = serialize(&reserved, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), safeweights::Error::InvalidTensor { .. }),
        "{error:?}"
    );
}

#[test]
fn sub_byte_tensor_without_whole_bytes_is_refused_by_writers() {
    let data = [0u8; 2];
    let tensors = [("q", TensorRef::new(Dtype::F4, vec![3], &data))];
    let error = serialize(&tensors, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), safeweights::Error::InvalidTensor { tensor, .. } if tensor == "q"),
        "{error:?}"
    );
}

#[test]
fn bad_alignment_is_refused() {
    for alignment in [0, 1, 4, 12, 100] {
        let options = WriteOptions {
            alignment,
            ..WriteOptions::default()
        };
        let error = serialize::<&str>(&[], None, &options).unwrap_err();
        assert!(
            error.to_string().contains("alignment"),
            "{alignment}: {error}"
        );
    }
}

#[cfg(unix)]
#[test]
fn written_files_get_ordinary_permissions_not_private_temp_file_ones() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.safetensors");
    serialize_to_file::<&str>(&[], None, &ours, &WriteOptions::default()).unwrap();
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&ours),
        mode(&plain),
        "should follow the umask like any new file"
    );
}
