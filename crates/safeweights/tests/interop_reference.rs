//! Interoperability with the reference Rust crate `safetensors` 0.8: the
//! same bytes for the same tensors, and each reads what the other writes.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{file_bytes, pattern};
use proptest::prelude::*;
use safeweights::read::SafeTensors;
use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Metadata};

fn reference_dtype(dtype: Dtype) -> safetensors::Dtype {
    serde_json::from_value(serde_json::Value::String(dtype.name().to_owned()))
        .unwrap_or_else(|_| panic!("the reference has no dtype {dtype}"))
}

#[derive(Debug, Clone)]
struct Owned {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// One tensor of every dtype, plus empty and scalar ones.
fn every_dtype() -> Vec<Owned> {
    let mut tensors = Vec::new();
    for (i, dtype) in Dtype::ALL.into_iter().enumerate() {
        let shape = if dtype.byte_size().is_some() {
            vec![2, 3]
        } else {
            vec![2, 4]
        };
        let numel: usize = shape.iter().product();
        let len = dtype.bytes_for(numel).unwrap();
        tensors.push(Owned {
            name: format!("t.{}", dtype.name().to_lowercase()),
            dtype,
            shape,
            data: pattern(len, i as u64),
        });
    }
    tensors.push(Owned {
        name: "empty".into(),
        dtype: Dtype::F32,
        shape: vec![0, 3],
        data: vec![],
    });
    tensors.push(Owned {
        name: "scalar".into(),
        dtype: Dtype::F64,
        shape: vec![],
        data: pattern(8, 99),
    });
    tensors.push(Owned {
        name: "naïve ünïcode \"q\"\n".into(),
        dtype: Dtype::BF16,
        shape: vec![1],
        data: vec![1, 2],
    });
    tensors
}

fn refs(tensors: &[Owned]) -> Vec<(&str, TensorRef<'_>)> {
    tensors
        .iter()
        .map(|t| {
            (
                t.name.as_str(),
                TensorRef::new(t.dtype, t.shape.clone(), &t.data),
            )
        })
        .collect()
}

fn ours(tensors: &[Owned], metadata: Option<&Metadata>) -> Vec<u8> {
    serialize(&refs(tensors), metadata, &WriteOptions::default()).unwrap()
}

fn theirs(tensors: &[Owned], metadata: Option<&Metadata>) -> Vec<u8> {
    let views: Vec<_> = tensors
        .iter()
        .map(|t| {
            let view = safetensors::tensor::TensorView::new(
                reference_dtype(t.dtype),
                t.shape.clone(),
                &t.data,
            )
            .unwrap();
            (t.name.clone(), view)
        })
        .collect();
    let metadata: Option<HashMap<String, String>> =
        metadata.map(|m| m.clone().into_iter().collect());
    safetensors::serialize(views, metadata).unwrap()
}

fn assert_reference_reads(bytes: &[u8], tensors: &[Owned], metadata: Option<&Metadata>) {
    let parsed = safetensors::SafeTensors::deserialize(bytes).unwrap();
    assert_eq!(parsed.len(), tensors.len());
    for t in tensors {
        let view = parsed.tensor(&t.name).unwrap();
        assert_eq!(view.dtype(), reference_dtype(t.dtype), "{}", t.name);
        assert_eq!(view.shape(), &t.shape[..], "{}", t.name);
        assert_eq!(view.data(), &t.data[..], "{}", t.name);
    }
    let (_, header) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    let their_metadata: Option<Metadata> =
        header.metadata().clone().map(|m| m.into_iter().collect());
    assert_eq!(their_metadata.as_ref(), metadata);
}

fn assert_we_read(bytes: &[u8], tensors: &[Owned], metadata: Option<&Metadata>) {
    let parsed = SafeTensors::parse(bytes).unwrap();
    assert_eq!(parsed.len(), tensors.len());
    for t in tensors {
        let view = parsed.tensor(&t.name).unwrap();
        assert_eq!(
            (view.dtype(), view.shape(), view.data()),
            (t.dtype, &t.shape[..], &t.data[..]),
            "{}",
            t.name
        );
    }
    assert_eq!(parsed.metadata(), metadata);
}

fn metadata(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn same_bytes_as_the_reference_for_every_dtype_without_metadata() {
    let tensors = every_dtype();
    let bytes = ours(&tensors, None);
    assert_eq!(bytes, theirs(&tensors, None));
    assert_reference_reads(&bytes, &tensors, None);
    assert_we_read(&bytes, &tensors, None);
}

#[test]
fn same_bytes_as_the_reference_with_one_metadata_key() {
    let tensors = every_dtype();
    let meta = metadata(&[("format", "pt")]);
    let bytes = ours(&tensors, Some(&meta));
    assert_eq!(bytes, theirs(&tensors, Some(&meta)));
    let empty = Metadata::new();
    assert_eq!(ours(&tensors, Some(&empty)), theirs(&tensors, Some(&empty)));
    let tricky = metadata(&[("k\u{1}\"\\/é", "v\u{1f}\t\n😀")]);
    assert_eq!(
        ours(&tensors, Some(&tricky)),
        theirs(&tensors, Some(&tricky))
    );
}

#[test]
fn reference_reads_our_metadata_with_several_keys() {
    // The reference orders metadata by HashMap iteration, so bytes differ;
    // the maps must not.
    let tensors = every_dtype();
    let meta = metadata(&[
        ("format", "pt"),
        ("b", "2"),
        ("a", "1"),
        ("", ""),
        ("ü", "\u{0}"),
    ]);
    let bytes = ours(&tensors, Some(&meta));
    assert_reference_reads(&bytes, &tensors, Some(&meta));
}

#[test]
fn we_read_reference_files_with_several_metadata_keys() {
    let tensors = every_dtype();
    let meta = metadata(&[
        ("format", "pt"),
        ("b", "2"),
        ("a", "1"),
        ("json", "{\"x\": [1]}"),
    ]);
    let bytes = theirs(&tensors, Some(&meta));
    assert_we_read(&bytes, &tensors, Some(&meta));
}

#[test]
fn same_bytes_as_the_reference_for_a_model_large_enough_for_parallel_copies() {
    // Over 64 MiB, our in-memory writer copies with several threads.
    let sizes = [(40 << 20) + 4, 0, 24 << 20, 12 << 20, 8];
    let tensors: Vec<Owned> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| Owned {
            name: format!("layer.{i}"),
            dtype: if i % 2 == 0 { Dtype::F32 } else { Dtype::U8 },
            shape: vec![if i % 2 == 0 { n / 4 } else { n }],
            data: (0..n).map(|k| (k / 4096 + i) as u8).collect(),
        })
        .collect();
    let bytes = ours(&tensors, None);
    assert!(bytes == theirs(&tensors, None));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.safetensors");
    safeweights::write::serialize_to_file(&refs(&tensors), None, &path, &WriteOptions::default())
        .unwrap();
    assert!(std::fs::read(&path).unwrap() == bytes);
}

#[test]
fn same_bytes_as_the_reference_for_no_tensors() {
    assert_eq!(ours(&[], None), theirs(&[], None));
    let meta = metadata(&[("k", "v")]);
    assert_eq!(ours(&[], Some(&meta)), theirs(&[], Some(&meta)));
}

/// The reference declares a map of `tensors + metadata keys` entries to
/// serde_json, which writes `{}` at once for a length of zero and then the
/// `__metadata__` entry after it: `{},"__metadata__":{}}`, which nobody can
/// read. We write `{"__metadata__":{}}`.
#[test]
fn reference_writes_broken_json_for_empty_metadata_and_no_tensors() {
    let empty = Metadata::new();
    let broken = theirs(&[], Some(&empty));
    assert!(
        broken[8..].starts_with(b"{},"),
        "the reference was fixed: {:?}",
        String::from_utf8_lossy(&broken)
    );
    assert!(safetensors::SafeTensors::deserialize(&broken).is_err());
    let bytes = ours(&[], Some(&empty));
    assert!(bytes[8..].starts_with(br#"{"__metadata__":{}}"#));
    assert_eq!(SafeTensors::parse(&bytes).unwrap().metadata(), Some(&empty));
    assert!(safetensors::SafeTensors::deserialize(&bytes).is_ok());
}

#[test]
fn reference_reads_our_aligned_files() {
    let tensors = every_dtype();
    for alignment in [64, 4096] {
        let options = WriteOptions {
            alignment,
            ..WriteOptions::default()
        };
        let bytes = serialize(&refs(&tensors), None, &options).unwrap();
        let parsed = SafeTensors::parse(&bytes).unwrap();
        assert_eq!(parsed.header().data_start() % alignment as u64, 0);
        assert_reference_reads(&bytes, &tensors, None);
    }
}

/// Files both implementations must refuse. (Where we are deliberately
/// stricter, see `malformed_headers.rs`: unknown fields, exact duplicates.)
#[test]
fn reference_also_rejects_what_we_reject() {
    let cases = [
        file_bytes(
            r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 9],
        ),
        file_bytes(
            r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 7],
        ),
        file_bytes(
            r#"{"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
        file_bytes(
            r#"{"t":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 8],
        ),
        file_bytes(
            r#"{"t":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}}"#,
            &[],
        ),
        file_bytes(
            r#"{"t":{"dtype":"U8","shape":[2.0],"data_offsets":[0,2]}}"#,
            &[0; 2],
        ),
        file_bytes(
            r#"{"t":{"dtype":"U8","shape":[9223372036854775808,2],"data_offsets":[0,0]}}"#,
            &[],
        ),
        file_bytes(
            r#"{"t":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}"#,
            &[0; 2],
        ),
        file_bytes(
            r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}"#,
            &[0; 3],
        ),
        file_bytes(
            r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2,4]}}"#,
            &[0; 2],
        ),
        file_bytes(r#"{"__metadata__":{"a":1}}"#, &[]),
        file_bytes(r#"{"__metadata__":{"a":{"b":"c"}}}"#, &[]),
        file_bytes("{}x", &[]),
        file_bytes("[]", &[]),
        file_bytes(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            &[0; 6],
        ),
        vec![1, 2, 3],
    ];
    for bytes in cases {
        assert!(SafeTensors::parse(&bytes).is_err());
        assert!(
            safetensors::SafeTensors::deserialize(&bytes).is_err(),
            "the reference accepts {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn reference_accepts_what_we_accept() {
    let cases = [
        file_bytes(
            " {\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}  ",
            &[1],
        ),
        file_bytes(
            r#"{"__metadata__":null,"t":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}"#,
            &[1],
        ),
        file_bytes(
            r#"{"a":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]}}"#,
            &[],
        ),
        file_bytes("{}", &[]),
    ];
    for bytes in cases {
        let ours = SafeTensors::parse(&bytes).unwrap();
        let theirs = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(ours.len(), theirs.len());
    }
}

fn any_owned() -> impl Strategy<Value = Vec<Owned>> {
    let tensor = (
        prop::sample::select(Dtype::ALL.to_vec()),
        prop::collection::vec(0usize..4, 0..=3),
    )
        .prop_filter_map("whole bytes", |(dtype, shape)| {
            let len = dtype.bytes_for(shape.iter().product())?;
            Some((dtype, shape, len))
        })
        .prop_flat_map(|(dtype, shape, len)| {
            (
                Just(dtype),
                Just(shape),
                prop::collection::vec(any::<u8>(), len),
            )
        });
    prop::collection::btree_map("[a-zA-Z0-9._\u{e9}\u{1F600}\"\\\\ -]{0,8}", tensor, 0..6).prop_map(
        |map: BTreeMap<_, _>| {
            map.into_iter()
                .filter(|(name, _)| name != "__metadata__")
                .map(|(name, (dtype, shape, data))| Owned {
                    name,
                    dtype,
                    shape,
                    data,
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn byte_identical_to_the_reference_for_random_tensors(
        tensors in any_owned(),
        meta in prop::option::of(prop::collection::btree_map(".{0,6}", ".{0,6}", 0..=1)),
    ) {
        let bytes = ours(&tensors, meta.as_ref());
        // See `reference_writes_broken_json_for_empty_metadata_and_no_tensors`.
        let reference_bug = tensors.is_empty() && meta.as_ref().is_some_and(|m| m.is_empty());
        if !reference_bug {
            prop_assert_eq!(&bytes, &theirs(&tensors, meta.as_ref()));
        }
        assert_reference_reads(&bytes, &tensors, meta.as_ref());
    }
}
