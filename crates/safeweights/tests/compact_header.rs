//! The compact header (names in one string, shapes in one array, an index
//! of `u32`s filled in bucket order): every entry comes back exactly as it
//! was written, lookups find every name, the reference reads the same
//! entries, and duplicates are still refused wherever they are.

use std::collections::BTreeMap;

use proptest::prelude::*;
use safeweights::read::SafeTensors;
use safeweights::write::{serialize, TensorRef, WriteOptions};
use safeweights::{Dtype, Error, Header, HeaderLimits, TensorEntry};

fn json_of(file: &[u8]) -> &[u8] {
    let len = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    &file[8..8 + len]
}

/// Tensors with awkward names (empty, escapes, non-ASCII) and shapes
/// (scalar, zero-sized, many dimensions), written by our writer.
fn written(tensors: &BTreeMap<String, (Dtype, Vec<usize>)>) -> Vec<u8> {
    let data: Vec<Vec<u8>> = tensors
        .values()
        .map(|(dtype, shape)| vec![7u8; dtype.bytes_for(shape.iter().product()).unwrap()])
        .collect();
    let refs: Vec<(&str, TensorRef<'_>)> = tensors
        .iter()
        .zip(&data)
        .map(|((name, (dtype, shape)), bytes)| {
            (name.as_str(), TensorRef::new(*dtype, shape.clone(), bytes))
        })
        .collect();
    let metadata = BTreeMap::from([("format".to_owned(), "pt".to_owned())]);
    serialize(&refs, Some(&metadata), &WriteOptions::default()).unwrap()
}

fn check_round_trip(tensors: &BTreeMap<String, (Dtype, Vec<usize>)>) {
    let file = written(tensors);
    let parsed = SafeTensors::parse(&file).unwrap();
    let header = parsed.header();
    assert_eq!(header.len(), tensors.len());
    let reference = safetensors::SafeTensors::deserialize(&file).unwrap();
    let mut end = 0;
    for entry in header.tensors() {
        assert_eq!(entry.begin, end, "entries come in data-offset order");
        end = entry.end;
        let (dtype, shape) = &tensors[entry.name];
        assert_eq!(
            (entry.dtype, entry.shape),
            (*dtype, &shape[..]),
            "{:?}",
            entry.name
        );
        assert_eq!(header.get(entry.name), Some(entry));
        let theirs = reference.tensor(entry.name).unwrap();
        assert_eq!(theirs.shape(), entry.shape);
        assert_eq!(
            theirs.data(),
            &parsed.data()[entry.begin as usize..entry.end as usize]
        );
        assert_eq!(entry.to_info().as_entry(), entry);
    }
    let names: Vec<&str> = tensors.keys().map(String::as_str).collect();
    assert_eq!(header.sorted_names(), names);
    assert_eq!(header.get("absent name"), None);
    // The owned path frees the JSON early and must build the same header.
    let json = json_of(&file);
    let data_len = (file.len() - 8 - json.len()) as u64;
    let owned = Header::parse_owned(json.to_vec(), data_len).unwrap();
    assert!(owned.tensors().eq(header.tensors()));
    assert_eq!(owned.metadata(), header.metadata());
    assert_eq!(owned.header_len(), header.header_len());
    // Positions and the double-ended iterator agree.
    let last: Option<TensorEntry<'_>> = header.tensors().next_back();
    assert_eq!(last, header.tensor_at(header.len().wrapping_sub(1)));
    assert_eq!(header.tensor_at(header.len()), None);
}

#[test]
fn awkward_names_and_shapes_round_trip() {
    let tensors = BTreeMap::from([
        (String::new(), (Dtype::F32, vec![2, 3])),
        ("q\"b\\s/\n\t\u{1}".to_owned(), (Dtype::I8, vec![])),
        ("é😀 layer".to_owned(), (Dtype::BF16, vec![0, 5])),
        (
            "many.dims".to_owned(),
            (Dtype::U8, vec![1, 2, 1, 2, 1, 2, 1, 2, 1]),
        ),
        ("f4".to_owned(), (Dtype::F4, vec![4])),
    ]);
    check_round_trip(&tensors);
}

#[test]
fn ten_thousand_tensors_round_trip() {
    let tensors: BTreeMap<String, (Dtype, Vec<usize>)> = (0..10_000)
        .map(|i| {
            let dtype = [Dtype::F32, Dtype::F16, Dtype::U8][i % 3];
            (format!("model.layers.{i}.w"), (dtype, vec![i % 4, 3]))
        })
        .collect();
    check_round_trip(&tensors);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_names_and_shapes_round_trip(
        tensors in prop::collection::btree_map(
            prop::collection::vec(any::<char>(), 0..12)
                .prop_map(String::from_iter)
                .prop_filter("reserved", |n| n != "__metadata__"),
            (
                prop::sample::select(vec![Dtype::F32, Dtype::U8, Dtype::F64, Dtype::BOOL]),
                prop::collection::vec(0usize..4, 0..=5),
            ),
            0..40,
        )
    ) {
        check_round_trip(&tensors);
    }
}

/// A duplicate is found whatever its place among many names (the index is
/// filled in bucket order, not file order) and is named in the error.
#[test]
fn a_duplicate_among_many_names_is_refused_wherever_it_is() {
    let count = 5_000;
    for (first, second) in [(0, 1), (0, count - 1), (1234, 4321), (count - 2, count - 1)] {
        let mut json = String::from("{");
        for i in 0..count {
            let name = if i == second { first } else { i };
            if i > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                r#""n{name}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
                i + 1
            ));
        }
        json.push('}');
        let error = Header::parse(json.as_bytes(), count as u64).unwrap_err();
        assert!(
            matches!(&error, Error::DuplicateKey { key, .. } if *key == format!("n{first}")),
            "{first} {second}: {error}"
        );
        let error = Header::parse_owned(json.into_bytes(), count as u64).unwrap_err();
        assert!(matches!(error, Error::DuplicateKey { .. }), "{error}");
    }
}

/// Entries listed out of offset order in the JSON come back sorted, each
/// with its own name and shape (the arenas are not reordered with them).
#[test]
fn entries_out_of_order_keep_their_own_names_and_shapes() {
    let json = br#"{"c":{"dtype":"U8","shape":[1,1],"data_offsets":[3,4]},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"bb":{"dtype":"U8","shape":[],"data_offsets":[4,5]}}"#;
    let header = Header::parse(json, 5).unwrap();
    let entries: Vec<_> = header
        .tensors()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect();
    assert_eq!(entries, [("a", vec![3]), ("c", vec![1, 1]), ("bb", vec![])]);
    let file = [&(json.len() as u64).to_le_bytes()[..], json, &[0; 5]].concat();
    let (parsed, _) = Header::parse_file(&file, &HeaderLimits::default()).unwrap();
    assert!(parsed.tensors().eq(header.tensors()));
}
