//! One test per rule of the format, part 1: the length prefix, the JSON
//! itself and each tensor entry. A file breaking a rule is rejected with
//! the specific error. Part 2 is `malformed_layout.rs`.

mod common;

use std::io::Write;

use common::{assert_names_tensor, file_bytes, one_tensor, parse_error, ONE_F32};
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::{Error, HeaderLimits};

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
