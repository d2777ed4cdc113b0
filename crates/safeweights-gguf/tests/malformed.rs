//! The malformed-GGUF catalogue: one test per rejection rule, each next to
//! the valid file it was made from, so that a test fails if the rule is
//! dropped *or* if the reader starts rejecting the valid file.
mod common;

use common::{string, Writer};
use safeweights_gguf::{Error, GgmlType, Gguf, Place, Value};

const F32: u32 = 0;
const Q4_0: u32 = 2;
const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const BOOL: u32 = 7;

/// A valid file: two F32 tensors of 2x2 and one Q4_0 row of 64.
fn valid() -> Writer {
    Writer::new()
        .kv("general.architecture", STRING, string("llama"))
        .tensor("a", &[2, 2], F32, 0)
        .tensor("b", &[2, 2], F32, 32)
        .tensor("q", &[64], Q4_0, 64)
        .data((0..64 + 36).map(|i| i as u8).collect())
}

fn error(bytes: &[u8]) -> Error {
    match Gguf::parse(bytes) {
        Ok(parsed) => panic!("expected an error, parsed {:?}", parsed.tensors()),
        Err(error) => error,
    }
}

#[test]
fn valid_file_parses_with_zero_copy_bytes() {
    let bytes = valid().build();
    let gguf = Gguf::parse(&bytes).unwrap();
    assert_eq!(gguf.version(), 3);
    assert_eq!(
        gguf.get("general.architecture"),
        Some(&Value::String("llama"))
    );
    assert_eq!(gguf.alignment(), 32);
    let q = gguf.tensor("q").unwrap();
    assert_eq!(
        (q.ggml_type, q.byte_len, q.shape()),
        (GgmlType::Q4_0, 36, vec![64])
    );
    let b = gguf.tensor_bytes("b").unwrap();
    assert_eq!(b, &bytes[gguf.data_offset() as usize + 32..][..16]);
    assert_eq!(
        b.as_ptr(),
        bytes[gguf.data_offset() as usize + 32..].as_ptr()
    );
    assert_eq!(
        gguf.tensor_bytes("zz"),
        Err(Error::TensorNotFound { name: "zz".into() })
    );
}

#[test]
fn version_2_is_read_like_3() {
    let mut w = valid();
    w.version = 2;
    assert_eq!(Gguf::parse(&w.build()).unwrap().version(), 2);
}

#[test]
fn rejects_bad_magic_and_versions() {
    assert_eq!(
        error(b"GGU"),
        Error::BadMagic {
            found: b"GGU".to_vec()
        }
    );
    for version in [1, 4, 0x0300_0000] {
        let mut w = valid();
        w.version = version;
        assert_eq!(error(&w.build()), Error::UnsupportedVersion { version });
    }
}

#[test]
fn rejects_duplicate_keys() {
    let w = valid().kv("general.architecture", STRING, string("gpt2"));
    assert_eq!(
        error(&w.build()),
        Error::DuplicateKey {
            key: "general.architecture".into()
        }
    );
}

#[test]
fn rejects_duplicate_tensor_names() {
    let w = valid().tensor("a", &[2, 2], F32, 128);
    assert_eq!(
        error(&w.build()),
        Error::DuplicateTensor { name: "a".into() }
    );
}

#[test]
fn rejects_overlapping_tensors() {
    let mut w = valid();
    w.tensors[1].offset = 0;
    assert_eq!(
        error(&w.build()),
        Error::OverlappingTensors {
            first: "a".into(),
            second: "b".into()
        }
    );
}

#[test]
fn rejects_misaligned_tensors() {
    let mut w = valid();
    w.tensors[1].offset = 16;
    let expected = Error::MisalignedTensor {
        tensor: "b".into(),
        offset: 16,
        alignment: 32,
    };
    assert_eq!(error(&w.build()), expected);
}

#[test]
fn rejects_more_than_four_dimensions() {
    let w = valid().tensor("five", &[1, 1, 1, 1, 1], F32, 128);
    assert_eq!(
        error(&w.build()),
        Error::TooManyDimensions {
            tensor: "five".into(),
            n_dims: 5
        }
    );
}

#[test]
fn rejects_unknown_ggml_types() {
    for type_id in [4, 31, 1000] {
        let mut w = valid();
        w.tensors[0].ggml_type = type_id;
        assert_eq!(
            error(&w.build()),
            Error::UnknownGgmlType {
                tensor: "a".into(),
                type_id
            }
        );
    }
}

#[test]
fn rejects_rows_that_are_not_whole_blocks() {
    // 32 rows of 2 elements: the right number of elements, the wrong rows.
    let mut w = valid();
    w.tensors[2].dims = vec![2, 32];
    let expected = Error::PartialBlock {
        tensor: "q".into(),
        ggml_type: "Q4_0",
        row: 2,
        block_size: 32,
    };
    assert_eq!(error(&w.build()), expected);
}

#[test]
fn rejects_data_beyond_the_end_of_the_file() {
    let mut w = valid();
    w.data.pop();
    let bytes = w.build();
    let end = bytes.len() as u64 + 1;
    let expected = Error::DataBeyondEnd {
        tensor: "q".into(),
        end,
        file_len: end - 1,
    };
    assert_eq!(error(&bytes), expected);
    let mut w = valid();
    w.tensors[0].offset = u64::MAX - 31;
    assert!(matches!(error(&w.build()), Error::DataBeyondEnd { tensor, .. } if tensor == "a"));
}

#[test]
fn rejects_huge_counts_before_allocating() {
    let mut bytes = valid().head();
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        error(&bytes),
        Error::CountTooLarge {
            at: Place::Header,
            count: u64::MAX,
            ..
        }
    ));
    let mut bytes = valid().head();
    bytes[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        error(&bytes),
        Error::CountTooLarge {
            at: Place::Header,
            ..
        }
    ));
    // An array of 2^60 strings in a tiny file.
    let mut value = STRING.to_le_bytes().to_vec();
    value.extend_from_slice(&(1u64 << 60).to_le_bytes());
    let w = valid().kv("tokenizer.ggml.tokens", ARRAY, value);
    let expected_at = Place::Value {
        key: "tokenizer.ggml.tokens".into(),
    };
    assert!(matches!(error(&w.build()), Error::CountTooLarge { at, .. } if at == expected_at));
    // A string length of 2^63.
    let w = valid().kv("k", STRING, (1u64 << 63).to_le_bytes().to_vec());
    assert!(
        matches!(error(&w.build()), Error::Truncated { at: Place::Value { key }, .. } if key == "k")
    );
}

#[test]
fn rejects_sizes_that_overflow() {
    let w = valid().tensor("big", &[1 << 32, 1 << 32], F32, 128);
    assert_eq!(
        error(&w.build()),
        Error::SizeOverflow {
            tensor: "big".into()
        }
    );
    let w = valid().tensor("zero_but_huge", &[0, u64::MAX, 2], F32, 128);
    assert_eq!(
        error(&w.build()),
        Error::SizeOverflow {
            tensor: "zero_but_huge".into()
        }
    );
}

#[test]
fn rejects_every_truncation() {
    let bytes = valid().build();
    for len in 0..bytes.len() {
        assert!(
            Gguf::parse(&bytes[..len]).is_err(),
            "accepted {len} of {} bytes",
            bytes.len()
        );
    }
}

#[test]
fn rejects_bad_alignment() {
    let w = valid().kv("general.alignment", U32, 24u32.to_le_bytes().to_vec());
    assert_eq!(error(&w.build()), Error::BadAlignment { alignment: 24 });
    let w = valid().kv("general.alignment", U32, 0u32.to_le_bytes().to_vec());
    assert_eq!(error(&w.build()), Error::BadAlignment { alignment: 0 });
    let w = valid().kv("general.alignment", STRING, string("32"));
    assert_eq!(error(&w.build()), Error::AlignmentType { found: "STRING" });
}

#[test]
fn custom_alignment_moves_the_data_section() {
    let mut w = valid().kv("general.alignment", U32, 64u32.to_le_bytes().to_vec());
    w.alignment = 64;
    w.tensors[1].offset = 64;
    w.tensors[2].offset = 128;
    w.data = vec![7; 128 + 36];
    let bytes = w.build();
    let gguf = Gguf::parse(&bytes).unwrap();
    assert_eq!(gguf.data_offset() % 64, 0);
    assert_eq!(gguf.tensor_bytes("q").unwrap(), &[7; 36][..]);
    // The same offsets misaligned under the default.
    let mut w = valid();
    w.tensors[1].offset = 48;
    assert!(matches!(
        error(&w.build()),
        Error::MisalignedTensor { alignment: 32, .. }
    ));
}

#[test]
fn rejects_unknown_value_types_bad_bools_and_bad_utf8() {
    let w = valid().kv("k", 13, vec![0; 8]);
    assert_eq!(
        error(&w.build()),
        Error::UnknownValueType {
            key: "k".into(),
            type_id: 13
        }
    );
    let w = valid().kv("flag", BOOL, vec![2]);
    assert_eq!(
        error(&w.build()),
        Error::InvalidBool {
            key: "flag".into(),
            byte: 2
        }
    );
    let mut bools = BOOL.to_le_bytes().to_vec();
    bools.extend_from_slice(&3u64.to_le_bytes());
    bools.extend_from_slice(&[1, 0, 9]);
    let w = valid().kv("flags", ARRAY, bools);
    assert_eq!(
        error(&w.build()),
        Error::InvalidBool {
            key: "flags".into(),
            byte: 9
        }
    );
    let w = valid().kv(
        "k",
        STRING,
        [2u64.to_le_bytes().to_vec(), vec![0xff, 0xfe]].concat(),
    );
    assert_eq!(
        error(&w.build()),
        Error::InvalidUtf8 {
            at: Place::Value { key: "k".into() }
        }
    );
}

#[test]
fn rejects_arrays_nested_too_deep() {
    let nest = |depth: usize| {
        let mut value = U32.to_le_bytes().to_vec();
        value.extend_from_slice(&0u64.to_le_bytes());
        for _ in 1..depth {
            let mut outer = ARRAY.to_le_bytes().to_vec();
            outer.extend_from_slice(&1u64.to_le_bytes());
            outer.extend_from_slice(&value);
            value = outer;
        }
        value
    };
    let ok = valid().kv("deep", ARRAY, nest(safeweights_gguf::MAX_ARRAY_DEPTH));
    assert!(Gguf::parse(&ok.build()).is_ok());
    let w = valid().kv("deep", ARRAY, nest(safeweights_gguf::MAX_ARRAY_DEPTH + 1));
    assert_eq!(
        error(&w.build()),
        Error::ArrayTooDeep { key: "deep".into() }
    );
}

#[test]
fn rejects_tensor_names_of_64_bytes() {
    let name = "n".repeat(64);
    let w = valid().tensor(&name, &[1], F32, 128);
    assert_eq!(error(&w.build()), Error::TensorNameTooLong { name });
    let w = valid()
        .tensor(&"n".repeat(63), &[], F32, 128)
        .data(vec![0; 132]);
    assert!(Gguf::parse(&w.build()).is_ok());
}

#[test]
fn errors_name_the_key_or_tensor() {
    let w = valid().tensor("blk.0.attn_q.weight", &[3], Q4_0, 128);
    let text = error(&w.build()).to_string();
    assert!(
        text.contains("\"blk.0.attn_q.weight\"") && text.contains("Q4_0"),
        "{text}"
    );
}

#[test]
fn files_are_mapped_and_missing_files_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, valid().build()).unwrap();
    let file = safeweights_gguf::GgufFile::open(&path).unwrap();
    assert_eq!(file.parse().unwrap().tensor_bytes("a").unwrap().len(), 16);
    let missing = safeweights_gguf::GgufFile::open(dir.path().join("nope")).unwrap_err();
    assert!(matches!(
        missing,
        Error::Io {
            kind: std::io::ErrorKind::NotFound,
            ..
        }
    ));
    std::fs::write(&path, b"").unwrap();
    let empty = safeweights_gguf::GgufFile::open(&path).unwrap();
    assert_eq!(
        empty.parse().unwrap_err(),
        Error::BadMagic { found: vec![] }
    );
}
