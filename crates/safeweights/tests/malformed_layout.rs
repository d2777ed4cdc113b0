//! One test per rule of the format, part 2: how tensors tile the data
//! section, metadata, duplicates and unknown fields, hostile nesting, and
//! the files the format allows. Part 1 is `malformed_headers.rs`.

mod common;

use common::{assert_names_tensor, file_bytes, one_tensor, parse_error, ONE_F32};
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::{Error, FileKind, Header};

// ---- layout -------------------------------------------------------------

#[test]
fn overlapping_tensors_are_rejected_naming_both() {
    let json = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 6]));
    assert!(
        matches!(error.kind(), Error::Overlap { tensor, other } if tensor == "b" && other == "a"),
        "{error:?}"
    );
    assert_names_tensor(&error, "a");
    assert_names_tensor(&error, "b");
}

#[test]
fn empty_tensor_inside_another_is_an_overlap() {
    let json = r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"z":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 4]));
    assert!(
        matches!(error.kind(), Error::Overlap { tensor, .. } if tensor == "z"),
        "{error:?}"
    );
}

#[test]
fn hole_before_the_first_tensor_is_rejected() {
    let error = parse_error(&one_tensor(
        r#"{"dtype":"U8","shape":[2],"data_offsets":[2,4]}"#,
        4,
    ));
    assert!(
        matches!(error.kind(), Error::Hole { tensor, expected_begin: 0, begin: 2 } if tensor == "t"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
}

#[test]
fn hole_between_tensors_is_rejected() {
    let json = r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[3,5]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 5]));
    assert!(
        matches!(error.kind(), Error::Hole { tensor, expected_begin: 2, begin: 3 } if tensor == "b"),
        "{error:?}"
    );
}

#[test]
fn truncated_data_section_is_rejected() {
    let error = parse_error(&file_bytes(ONE_F32, &[0; 5]));
    assert!(
        matches!(
            error.kind(),
            Error::DataLengthMismatch {
                expected: 8,
                actual: 5
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("truncated"), "{error}");
}

#[test]
fn trailing_bytes_after_the_last_tensor_are_rejected() {
    let error = parse_error(&file_bytes(ONE_F32, &[0; 9]));
    assert!(
        matches!(
            error.kind(),
            Error::DataLengthMismatch {
                expected: 8,
                actual: 9
            }
        ),
        "{error:?}"
    );
    let error = parse_error(&file_bytes("{}", &[0]));
    assert!(
        matches!(
            error.kind(),
            Error::DataLengthMismatch {
                expected: 0,
                actual: 1
            }
        ),
        "{error:?}"
    );
}

#[test]
fn tensors_listed_out_of_offset_order_are_accepted() {
    let json = r#"{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#;
    let bytes = file_bytes(json, &[1, 2, 3, 4]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("b").unwrap().data(), &[3, 4]);
    let names: Vec<_> = parsed.tensors().map(|t| t.name().to_owned()).collect();
    assert_eq!(names, ["a", "b"], "tensors() is in offset order");
}

// ---- metadata -------------------------------------------------------------

#[test]
fn metadata_with_a_number_value_is_rejected() {
    let error = parse_error(&file_bytes(r#"{"__metadata__":{"epoch":3}}"#, &[]));
    assert!(
        matches!(error.kind(), Error::InvalidMetadata { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("epoch"), "{error}");
}

#[test]
fn metadata_with_a_nested_object_is_rejected() {
    let error = parse_error(&file_bytes(r#"{"__metadata__":{"cfg":{"a":"b"}}}"#, &[]));
    assert!(
        matches!(error.kind(), Error::InvalidMetadata { .. }),
        "{error:?}"
    );
}

#[test]
fn metadata_with_an_array_value_or_not_an_object_is_rejected() {
    for json in [
        r#"{"__metadata__":{"tags":["a"]}}"#,
        r#"{"__metadata__":{"flag":true}}"#,
        r#"{"__metadata__":{"none":null}}"#,
        r#"{"__metadata__":["a","b"]}"#,
        r#"{"__metadata__":"text"}"#,
        r#"{"__metadata__":1}"#,
    ] {
        let error = parse_error(&file_bytes(json, &[]));
        assert!(
            matches!(error.kind(), Error::InvalidMetadata { .. }),
            "{json}: {error:?}"
        );
    }
}

#[test]
fn metadata_null_is_accepted_as_no_metadata() {
    let json = format!(r#"{{"__metadata__":null,{}"#, &ONE_F32[1..]);
    let bytes = file_bytes(&json, &[0; 8]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert!(parsed.metadata().is_none());
    assert_eq!(parsed.len(), 1);
}

#[test]
fn metadata_strings_with_escapes_are_decoded() {
    let json = r#"{"__metadata__":{"k\u00e9y":"line\nbreak \"q\" \ud83d\ude00","":""}}"#;
    let bytes = file_bytes(json, &[]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    let metadata = parsed.metadata().unwrap();
    assert_eq!(metadata["kéy"], "line\nbreak \"q\" 😀");
    assert_eq!(metadata[""], "");
}

// ---- duplicates and unknown fields ---------------------------------------

#[test]
fn exact_duplicate_tensor_entries_are_rejected() {
    // The reference collapses these silently (its map keeps one); Python's
    // json keeps the last. We refuse: the format forbids duplicate keys.
    let entry = r#""t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#;
    let json = format!("{{{entry},{entry}}}");
    let error = parse_error(&file_bytes(&json, &[0; 2]));
    assert!(
        matches!(error.kind(), Error::DuplicateKey { key, .. } if key == "t"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
}

#[test]
fn duplicate_tensor_keys_with_different_entries_are_rejected() {
    let json = r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"t":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 4]));
    assert!(
        matches!(error.kind(), Error::DuplicateKey { key, .. } if key == "t"),
        "{error:?}"
    );
}

#[test]
fn duplicate_tensor_keys_spelled_differently_are_rejected() {
    // "\u0074" is "t": keys are compared after unescaping.
    let json = r#"{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"\u0074":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 4]));
    assert!(
        matches!(error.kind(), Error::DuplicateKey { key, .. } if key == "t"),
        "{error:?}"
    );
}

#[test]
fn duplicate_metadata_keys_are_rejected() {
    let error = parse_error(&file_bytes(r#"{"__metadata__":{"a":"1","a":"2"}}"#, &[]));
    assert!(
        matches!(error.kind(), Error::DuplicateKey { within, key } if within == "__metadata__" && key == "a"),
        "{error:?}"
    );
    let error = parse_error(&file_bytes(r#"{"__metadata__":{},"__metadata__":{}}"#, &[]));
    assert!(
        matches!(error.kind(), Error::DuplicateKey { key, .. } if key == "__metadata__"),
        "{error:?}"
    );
}

#[test]
fn duplicate_field_inside_a_tensor_entry_is_rejected() {
    for entry in [
        r#"{"dtype":"U8","dtype":"U8","shape":[2],"data_offsets":[0,2]}"#,
        r#"{"dtype":"U8","shape":[2],"shape":[2],"data_offsets":[0,2]}"#,
        r#"{"dtype":"U8","shape":[2],"data_offsets":[0,2],"data_offsets":[0,2]}"#,
    ] {
        let error = parse_error(&one_tensor(entry, 2));
        assert!(
            matches!(error.kind(), Error::DuplicateKey { within, .. } if within.contains("\"t\"")),
            "{entry}: {error:?}"
        );
    }
}

/// The reference ignores unknown fields, but the published JSON schema sets
/// `additionalProperties: false`, and a field one reader ignores may mean
/// something to another (say, a "byte_order" or "offset" some tool adds):
/// two readers would then disagree about the same file. We reject them.
#[test]
fn unknown_field_in_a_tensor_entry_is_rejected() {
    let entry = r#"{"dtype":"U8","shape":[2],"data_offsets":[0,2],"byte_order":"big"}"#;
    let error = parse_error(&one_tensor(entry, 2));
    assert!(
        matches!(error.kind(), Error::UnknownField { tensor, field } if tensor == "t" && field == "byte_order"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
}

#[test]
fn tensor_entry_that_is_not_an_object_is_rejected() {
    for entry in ["[]", "\"F32\"", "1", "null"] {
        let error = parse_error(&one_tensor(entry, 0));
        assert!(
            matches!(error.kind(), Error::InvalidField { tensor, .. } if tensor == "t"),
            "{entry}: {error:?}"
        );
    }
}

// ---- hostile nesting --------------------------------------------------------

fn nested(open: &str, depth: usize) -> String {
    open.repeat(depth)
}

#[test]
fn a_million_open_brackets_do_not_overflow_the_stack() {
    let depth = 1_000_000;
    let cases = [
        (nested("[", depth), "top"),
        (
            format!(r#"{{"t":{{"dtype":"U8","shape":{}"#, nested("[", depth)),
            "shape",
        ),
        (
            format!(
                r#"{{"t":{{"dtype":"U8","data_offsets":{}"#,
                nested("[", depth)
            ),
            "offsets",
        ),
        (
            format!(r#"{{"__metadata__":{{"k":{}"#, nested("[", depth)),
            "metadata value",
        ),
        (
            format!(r#"{{"__metadata__":{}"#, nested("[", depth)),
            "metadata",
        ),
        (
            format!(r#"{{"t":{{"extra":{}"#, nested("{", depth)),
            "unknown field",
        ),
        (format!(r#"{{"t":{}"#, nested("{\"a\":", depth)), "entry"),
        (nested("{", depth), "objects"),
    ];
    for (json, what) in cases {
        let error = parse_error(&file_bytes(&json, &[]));
        assert!(error.is_invalid_data(), "{what}: {error:?}");
    }
}

// ---- things the format allows ---------------------------------------------

#[test]
fn zero_size_tensors_are_accepted() {
    let json = r#"{"a":{"dtype":"F32","shape":[2,0],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"c":{"dtype":"I64","shape":[0],"data_offsets":[1,1]}}"#;
    let bytes = file_bytes(json, &[7]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("a").unwrap().shape(), &[2, 0]);
    assert!(parsed.tensor("a").unwrap().data().is_empty());
    assert!(parsed.tensor("c").unwrap().data().is_empty());
    assert_eq!(parsed.tensor("b").unwrap().data(), &[7]);
}

#[test]
fn rank_zero_tensors_are_accepted() {
    let json = r#"{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]}}"#;
    let data = 2.5f64.to_le_bytes();
    let bytes = file_bytes(json, &data);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    let scalar = parsed.tensor("s").unwrap();
    assert!(scalar.shape().is_empty());
    assert_eq!(scalar.info().numel(), 1);
    assert_eq!(scalar.data(), &data);
}

#[test]
fn nan_and_inf_values_are_accepted() {
    let mut data = Vec::new();
    for value in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0] {
        data.extend_from_slice(&value.to_le_bytes());
    }
    let json = r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let bytes = file_bytes(json, &data);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("t").unwrap().data(), &data[..]);
}

#[test]
fn a_file_with_no_tensors_is_accepted() {
    let bytes = file_bytes("{}", &[]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert!(parsed.is_empty());
    let bytes = file_bytes(r#"{"__metadata__":{"format":"pt"}}"#, &[]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert!(parsed.is_empty());
    assert_eq!(parsed.metadata().unwrap()["format"], "pt");
}

#[test]
fn a_header_with_a_million_tensors_parses() {
    // The speed of this is measured in the benchmarks, not asserted here.
    let count = 1_000_000;
    let mut json = String::with_capacity(count * 64);
    json.push('{');
    for i in 0..count {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#""t{i}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#,
            i + 1
        ));
    }
    json.push('}');
    let header = Header::parse(json.as_bytes(), count as u64).unwrap();
    assert_eq!(header.len(), count);
    assert_eq!(header.tensor("t999999").unwrap().begin, 999_999);
    assert_eq!(header.data_len(), count as u64);
}

// ---- foreign formats ---------------------------------------------------------

fn assert_foreign(bytes: &[u8], expected: FileKind) {
    let error = parse_error(bytes);
    assert!(
        matches!(error.kind(), Error::ForeignFormat(found) if *found == expected),
        "{expected:?}: {error:?}"
    );
    // Through a file, with both backends, too.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    for backend in [Backend::Mmap, Backend::Pread] {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let error = SafetensorsFile::open_with(&path, &options).unwrap_err();
        assert!(
            matches!(error.kind(), Error::ForeignFormat(found) if *found == expected),
            "{expected:?} via {backend:?}: {error:?}"
        );
    }
}

#[test]
fn zip_archive_is_reported_as_a_zip() {
    let mut zip = b"PK\x03\x04\x00\x00\x08\x08\x00\x00".to_vec();
    zip.extend_from_slice(b"archive/data.pkl");
    zip.extend_from_slice(&[0; 64]);
    assert_foreign(&zip, FileKind::Zip);
    assert_foreign(b"PK\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00", FileKind::Zip);
}

#[test]
fn zip_whose_first_bytes_read_as_a_plausible_length_is_still_a_zip() {
    // With zero version and flag fields the first 8 bytes read as a header
    // length of 67,324,752, under the limit; the "header" is then not JSON.
    let mut zip = vec![0u8; 67_324_752 + 8 + 100];
    zip[..4].copy_from_slice(b"PK\x03\x04");
    assert_foreign(&zip, FileKind::Zip);
}

#[test]
fn git_lfs_pointer_is_reported_as_such() {
    let pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    assert_foreign(pointer, FileKind::GitLfsPointer);
    let error = parse_error(pointer);
    assert!(error.to_string().contains("git lfs pull"), "{error}");
}

#[test]
fn html_page_is_reported_as_such() {
    assert_foreign(
        b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>",
        FileKind::Html,
    );
    assert_foreign(
        b"\n  <html lang=\"en\"><body>Access denied</body></html>",
        FileKind::Html,
    );
    assert_foreign(b"<html>", FileKind::Html);
}

#[test]
fn pickle_stream_is_reported_as_a_pickle() {
    // The start of a legacy torch.save file: PROTO 2, LONG1 magic number.
    let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.";
    assert_foreign(legacy, FileKind::Pickle);
    assert_foreign(
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",
        FileKind::Pickle,
    );
}

#[test]
fn numpy_file_is_reported_as_such() {
    let mut npy =
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }".to_vec();
    npy.resize(128, b' ');
    npy.extend_from_slice(&[0; 12]);
    assert_foreign(&npy, FileKind::Numpy);
}

#[test]
fn truncated_safetensors_file_is_not_mistaken_for_a_pickle() {
    // A header length of 640 starts with 0x80 0x02, like a pickle.
    let json = format!("{ONE_F32:<640}");
    let bytes = file_bytes(&json, &[0; 8]);
    assert_eq!(&bytes[..2], b"\x80\x02");
    assert_eq!(SafeTensors::parse(&bytes).unwrap().len(), 1);
    let error = parse_error(&bytes[..100]);
    assert!(
        matches!(error.kind(), Error::HeaderBeyondFile { len: 640, .. }),
        "{error:?}"
    );
}

#[test]
fn foreign_format_is_not_claimed_for_ordinary_corruption() {
    for json in ["{\"t\" 1}", "{,}", "{\"t\":{\"dtype\" \"U8\"}}"] {
        let error = parse_error(&file_bytes(json, &[]));
        assert!(
            matches!(error.kind(), Error::InvalidJson { .. }),
            "{json}: {error:?}"
        );
    }
}
