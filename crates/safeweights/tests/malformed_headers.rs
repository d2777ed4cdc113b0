//! One test per rule of the format: a file breaking it is rejected with the
//! specific error, and the files the format allows are accepted.

mod common;

use std::io::Write;

use common::{file_bytes, parse_error};
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::{Error, ForeignFormat, Header, HeaderLimits};

/// `{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}` and its data.
const ONE_F32: &str = r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

fn one_tensor(entry: &str, data_len: usize) -> Vec<u8> {
    file_bytes(&format!(r#"{{"t":{entry}}}"#), &vec![0u8; data_len])
}

fn assert_names_tensor(error: &Error, name: &str) {
    let text = error.to_string();
    assert!(
        text.contains(&format!("{name:?}")),
        "message does not name {name:?}: {text}"
    );
}

// ---- the length prefix -------------------------------------------------

#[test]
fn file_shorter_than_8_bytes_is_too_small() {
    for len in 0..8 {
        let error = parse_error(&vec![0u8; len]);
        assert!(
            matches!(error.kind(), Error::FileTooSmall { len: l } if *l == len as u64),
            "{error:?}"
        );
    }
}

#[test]
fn header_length_beyond_the_file_is_rejected() {
    let mut bytes = file_bytes(ONE_F32, &[0; 8]);
    bytes[..8].copy_from_slice(&1000u64.to_le_bytes());
    let error = parse_error(&bytes);
    assert!(
        matches!(error.kind(), Error::HeaderBeyondFile { len: 1000, available } if *available == bytes.len() as u64 - 8),
        "{error:?}"
    );
}

#[test]
fn header_length_that_overflows_when_added_to_the_prefix_is_rejected() {
    let limits = HeaderLimits {
        max_header_size: u64::MAX,
    };
    let bytes = u64::MAX.to_le_bytes();
    let error = SafeTensors::parse_with_limits(&bytes, &limits).unwrap_err();
    assert!(
        matches!(error.kind(), Error::HeaderBeyondFile { .. }),
        "{error:?}"
    );
}

#[test]
fn header_over_the_default_100mb_limit_is_rejected_before_reading_it() {
    let mut bytes = 100_000_001u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    let error = parse_error(&bytes);
    assert!(
        matches!(
            error.kind(),
            Error::HeaderTooLarge {
                len: 100_000_001,
                limit: 100_000_000
            }
        ),
        "{error:?}"
    );
}

#[test]
fn header_limit_is_configurable_down_and_up() {
    let bytes = file_bytes(ONE_F32, &[0; 8]);
    let json_len = ONE_F32.len() as u64;
    let tight = HeaderLimits {
        max_header_size: json_len - 1,
    };
    let error = SafeTensors::parse_with_limits(&bytes, &tight).unwrap_err();
    assert!(
        matches!(error.kind(), Error::HeaderTooLarge { .. }),
        "{error:?}"
    );
    let exact = HeaderLimits {
        max_header_size: json_len,
    };
    assert_eq!(
        SafeTensors::parse_with_limits(&bytes, &exact)
            .unwrap()
            .len(),
        1
    );

    // Raised above the default, a 150 MB claim is no longer "too large": it
    // is judged against the file, which is far shorter.
    let mut huge = 150_000_000u64.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    let raised = HeaderLimits {
        max_header_size: 200_000_000,
    };
    let error = SafeTensors::parse_with_limits(&huge, &raised).unwrap_err();
    assert!(
        matches!(
            error.kind(),
            Error::HeaderBeyondFile {
                len: 150_000_000,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn huge_claimed_header_in_a_small_file_fails_before_allocating_with_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("claims-90mb.safetensors");
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(&90_000_000u64.to_le_bytes()).unwrap();
    file.write_all(b"{}").unwrap();
    drop(file);
    for backend in [Backend::Mmap, Backend::Pread] {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let error = SafetensorsFile::open_with(&path, &options).unwrap_err();
        assert!(
            matches!(
                error.kind(),
                Error::HeaderBeyondFile {
                    len: 90_000_000,
                    available: 2
                }
            ),
            "{backend:?}: {error:?}"
        );
        assert_eq!(error.path(), Some(path.as_path()));
    }
}

// ---- JSON level --------------------------------------------------------

#[test]
fn header_not_utf8_is_rejected_with_the_offset() {
    let mut json = br#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.to_vec();
    json[2] = 0xff;
    let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(&[0; 8]);
    let error = parse_error(&bytes);
    assert!(
        matches!(error.kind(), Error::HeaderNotUtf8 { offset: 2 }),
        "{error:?}"
    );
}

#[test]
fn header_not_json_is_rejected() {
    for json in [
        "{",
        "{\"t\"",
        "{\"t\":}",
        "{'t':1}",
        "{\"t\":{\"dtype\":F32}}",
        "",
        "   ",
    ] {
        let error = parse_error(&file_bytes(json, &[]));
        assert!(
            matches!(
                error.kind(),
                Error::InvalidJson { .. } | Error::InvalidField { .. }
            ),
            "{json:?}: {error:?}"
        );
    }
    let error = parse_error(&file_bytes("{\"t\"}", &[]));
    assert!(
        matches!(error.kind(), Error::InvalidJson { offset: 4, .. }),
        "{error:?}"
    );
}

#[test]
fn header_not_an_object_is_rejected() {
    for json in ["[]", "[1,2]", "\"t\"", "42", "null", "true"] {
        let error = parse_error(&file_bytes(json, &[]));
        assert!(
            matches!(error.kind(), Error::HeaderNotObject),
            "{json:?}: {error:?}"
        );
    }
}

#[test]
fn trailing_non_whitespace_after_the_object_is_rejected() {
    for (json, offset) in [("{}x", 2), ("{} }", 3), ("{}{}", 2), ("{}  \0", 4)] {
        let error = parse_error(&file_bytes(json, &[]));
        assert!(
            matches!(error.kind(), Error::TrailingCharacters { offset: o } if *o == offset),
            "{json:?}: {error:?}"
        );
    }
}

#[test]
fn trailing_whitespace_padding_is_accepted() {
    let json = format!("{ONE_F32} \t\r\n   ");
    assert_eq!(
        SafeTensors::parse(&file_bytes(&json, &[0; 8]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn leading_json_whitespace_is_accepted() {
    let json = format!(" \n\t\r{ONE_F32}");
    let bytes = file_bytes(&json, &[0; 8]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("t").unwrap().shape(), &[2]);
}

// ---- tensor entries ----------------------------------------------------

#[test]
fn missing_fields_are_named() {
    let cases = [
        (r#"{"shape":[2],"data_offsets":[0,8]}"#, "dtype"),
        (r#"{"dtype":"F32","data_offsets":[0,8]}"#, "shape"),
        (r#"{"dtype":"F32","shape":[2]}"#, "data_offsets"),
        ("{}", "dtype"),
    ];
    for (entry, field) in cases {
        let error = parse_error(&one_tensor(entry, 8));
        assert!(
            matches!(error.kind(), Error::MissingField { tensor, field: f } if tensor == "t" && *f == field),
            "{entry}: {error:?}"
        );
        assert_names_tensor(&error, "t");
    }
}

#[test]
fn data_offsets_with_three_elements_are_rejected() {
    for offsets in ["[0,8,16]", "[0]", "[]"] {
        let entry = format!(r#"{{"dtype":"F32","shape":[2],"data_offsets":{offsets}}}"#);
        let error = parse_error(&one_tensor(&entry, 8));
        assert!(
            matches!(
                error.kind(),
                Error::InvalidField {
                    field: "data_offsets",
                    ..
                }
            ),
            "{offsets}: {error:?}"
        );
        assert_names_tensor(&error, "t");
    }
}

#[test]
fn non_integer_data_offsets_are_rejected() {
    for offsets in [
        "[0,8.0]",
        "[-1,8]",
        "[\"0\",8]",
        "{}",
        "[0,18446744073709551616]",
    ] {
        let entry = format!(r#"{{"dtype":"F32","shape":[2],"data_offsets":{offsets}}}"#);
        let error = parse_error(&one_tensor(&entry, 8));
        assert!(
            matches!(
                error.kind(),
                Error::InvalidField {
                    field: "data_offsets",
                    ..
                }
            ),
            "{offsets}: {error:?}"
        );
    }
}

#[test]
fn unknown_dtype_is_rejected() {
    for dtype in ["F128", "float32", "", "Q4_0"] {
        let entry = format!(r#"{{"dtype":"{dtype}","shape":[2],"data_offsets":[0,8]}}"#);
        let error = parse_error(&one_tensor(&entry, 8));
        assert!(
            matches!(error.kind(), Error::UnknownDtype { tensor, dtype: d } if tensor == "t" && d == dtype),
            "{dtype}: {error:?}"
        );
        assert_names_tensor(&error, "t");
    }
}

#[test]
fn wrongly_cased_dtype_is_rejected() {
    for dtype in ["f32", "Bf16", "bool", "f8_e4m3"] {
        let entry = format!(r#"{{"dtype":"{dtype}","shape":[2],"data_offsets":[0,8]}}"#);
        let error = parse_error(&one_tensor(&entry, 8));
        assert!(
            matches!(error.kind(), Error::UnknownDtype { .. }),
            "{dtype}: {error:?}"
        );
    }
}

#[test]
fn dtype_that_is_not_a_string_is_rejected() {
    let error = parse_error(&one_tensor(
        r#"{"dtype":32,"shape":[2],"data_offsets":[0,8]}"#,
        8,
    ));
    assert!(
        matches!(error.kind(), Error::InvalidField { field: "dtype", .. }),
        "{error:?}"
    );
}

#[test]
fn negative_dims_are_rejected() {
    for shape in ["[-2]", "[2,-1]", "[-0]"] {
        let entry = format!(r#"{{"dtype":"U8","shape":{shape},"data_offsets":[0,0]}}"#);
        let error = parse_error(&one_tensor(&entry, 0));
        assert!(
            matches!(error.kind(), Error::InvalidShape { tensor, .. } if tensor == "t"),
            "{shape}: {error:?}"
        );
        assert!(error.to_string().contains("negative"), "{error}");
    }
}

#[test]
fn non_integer_dims_are_rejected() {
    for shape in ["[2.0]", "[1.5]", "[1e2]", "[2E0]"] {
        let entry = format!(r#"{{"dtype":"U8","shape":{shape},"data_offsets":[0,2]}}"#);
        let error = parse_error(&one_tensor(&entry, 2));
        assert!(
            matches!(error.kind(), Error::InvalidShape { .. }),
            "{shape}: {error:?}"
        );
    }
    for shape in ["[\"2\"]", "[null]", "[true]", "[[2]]", "2", "{}", "null"] {
        let entry = format!(r#"{{"dtype":"U8","shape":{shape},"data_offsets":[0,2]}}"#);
        let error = parse_error(&one_tensor(&entry, 2));
        assert!(
            matches!(error.kind(), Error::InvalidField { field: "shape", .. }),
            "{shape}: {error:?}"
        );
    }
    let entry = r#"{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,2]}"#;
    let error = parse_error(&one_tensor(entry, 2));
    assert!(
        matches!(error.kind(), Error::InvalidShape { .. }),
        "{error:?}"
    );
}

#[test]
fn shape_times_dtype_overflow_is_rejected_even_when_it_would_wrap_to_zero() {
    // Each of these products wraps to exactly 0 in 64-bit arithmetic, which
    // would make the tensor look empty and match `[0, 0]`.
    let cases = [
        ("U8", "[9223372036854775808,2]"),
        ("U8", "[4294967296,4294967296]"),
        ("F32", "[4611686018427387904]"),
        ("F64", "[2305843009213693952]"),
        ("F4", "[4611686018427387904,4]"),
        ("F32", "[18446744073709551615,18446744073709551615]"),
    ];
    for (dtype, shape) in cases {
        let entry = format!(r#"{{"dtype":"{dtype}","shape":{shape},"data_offsets":[0,0]}}"#);
        let error = parse_error(&one_tensor(&entry, 0));
        assert!(
            matches!(error.kind(), Error::ShapeOverflow { tensor } if tensor == "t"),
            "{shape}: {error:?}"
        );
        assert_names_tensor(&error, "t");
    }
}

#[test]
fn a_zero_dimension_after_an_overflowing_prefix_is_still_an_overflow() {
    // The reference computes the product left to right with checked
    // multiplication, so it rejects this too; readers must agree.
    let entry = r#"{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}"#;
    let error = parse_error(&one_tensor(entry, 0));
    assert!(
        matches!(error.kind(), Error::ShapeOverflow { .. }),
        "{error:?}"
    );
}

#[test]
fn end_before_begin_is_rejected() {
    let json = r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"t":{"dtype":"U8","shape":[2],"data_offsets":[4,2]}}"#;
    let error = parse_error(&file_bytes(json, &[0; 4]));
    assert!(
        matches!(error.kind(), Error::EndBeforeBegin { tensor, begin: 4, end: 2 } if tensor == "t"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
}

#[test]
fn byte_length_different_from_shape_times_dtype_is_rejected() {
    let error = parse_error(&one_tensor(
        r#"{"dtype":"F32","shape":[2],"data_offsets":[0,12]}"#,
        12,
    ));
    assert!(
        matches!(error.kind(), Error::LengthMismatch { tensor, expected: 8, actual: 12 } if tensor == "t"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
}

#[test]
fn sub_byte_dtype_without_whole_bytes_is_rejected() {
    let error = parse_error(&one_tensor(
        r#"{"dtype":"F4","shape":[3],"data_offsets":[0,2]}"#,
        2,
    ));
    assert!(
        matches!(error.kind(), Error::PartialByte { tensor, bits: 12 } if tensor == "t"),
        "{error:?}"
    );
    assert_names_tensor(&error, "t");
    let error = parse_error(&one_tensor(
        r#"{"dtype":"F6_E2M3","shape":[2,1],"data_offsets":[0,2]}"#,
        2,
    ));
    assert!(
        matches!(error.kind(), Error::PartialByte { bits: 12, .. }),
        "{error:?}"
    );
}

#[test]
fn sub_byte_dtypes_with_whole_bytes_are_accepted() {
    let json = r#"{"a":{"dtype":"F4","shape":[2,2],"data_offsets":[0,2]},"b":{"dtype":"F6_E3M2","shape":[4],"data_offsets":[2,5]}}"#;
    let bytes = file_bytes(json, &[1, 2, 3, 4, 5]);
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("a").unwrap().data(), &[1, 2]);
    assert_eq!(parsed.tensor("b").unwrap().data(), &[3, 4, 5]);
}

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

fn assert_foreign(bytes: &[u8], expected: ForeignFormat) {
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
    assert_foreign(&zip, ForeignFormat::Zip);
    assert_foreign(
        b"PK\x05\x06\x00\x00\x00\x00\x00\x00\x00\x00",
        ForeignFormat::Zip,
    );
}

#[test]
fn zip_whose_first_bytes_read_as_a_plausible_length_is_still_a_zip() {
    // With zero version and flag fields the first 8 bytes read as a header
    // length of 67,324,752, under the limit; the "header" is then not JSON.
    let mut zip = vec![0u8; 67_324_752 + 8 + 100];
    zip[..4].copy_from_slice(b"PK\x03\x04");
    assert_foreign(&zip, ForeignFormat::Zip);
}

#[test]
fn git_lfs_pointer_is_reported_as_such() {
    let pointer = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";
    assert_foreign(pointer, ForeignFormat::GitLfsPointer);
    let error = parse_error(pointer);
    assert!(error.to_string().contains("git lfs pull"), "{error}");
}

#[test]
fn html_page_is_reported_as_such() {
    assert_foreign(
        b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>",
        ForeignFormat::Html,
    );
    assert_foreign(
        b"\n  <html lang=\"en\"><body>Access denied</body></html>",
        ForeignFormat::Html,
    );
    assert_foreign(b"<html>", ForeignFormat::Html);
}

#[test]
fn pickle_stream_is_reported_as_a_pickle() {
    // The start of a legacy torch.save file: PROTO 2, LONG1 magic number.
    let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.";
    assert_foreign(legacy, ForeignFormat::Pickle);
    assert_foreign(
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94.",
        ForeignFormat::Pickle,
    );
}

#[test]
fn numpy_file_is_reported_as_such() {
    let mut npy =
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }".to_vec();
    npy.resize(128, b' ');
    npy.extend_from_slice(&[0; 12]);
    assert_foreign(&npy, ForeignFormat::Numpy);
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
