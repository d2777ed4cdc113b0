//! Copies out of a map of a file truncated under it are errors naming the
//! file, never a `SIGBUS` (issue 15); only zero-copy views rely on the
//! bus-error handler.

use std::path::{Path, PathBuf};

use safeweights::read::SafetensorsFile;
use safeweights::slice::SliceArg;
use safeweights_testkit::files::{one_u8_tensor_head, truncate};

/// One U8 tensor of `len` bytes (value 7), mapped, then cut to one page.
fn truncated_after_open(name: &str, len: usize) -> (PathBuf, SafetensorsFile) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("truncated_map");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let mut bytes = one_u8_tensor_head(len as u64);
    bytes.extend(vec![7u8; len]);
    std::fs::write(&path, bytes).unwrap();
    let opened = SafetensorsFile::open(&path).unwrap();
    truncate(&path, 4096);
    (path, opened)
}

fn assert_truncated(error: safeweights::Error, path: &Path) {
    assert_eq!(error.path(), Some(path));
    match error.kind() {
        safeweights::Error::Io(io) => {
            assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(error.to_string().contains("became shorter"), "{error}");
}

#[test]
fn read_into_from_a_map_truncated_under_it_is_an_error() {
    let (path, file) = truncated_after_open("read_into.safetensors", 1 << 16);
    let mut buffer = vec![0u8; 1 << 16];
    assert_truncated(file.read_into("w", &mut buffer).unwrap_err(), &path);
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_slice_of_a_map_truncated_under_it_is_an_error() {
    let (path, file) = truncated_after_open("slice.safetensors", 1 << 16);
    let args = [SliceArg::Range {
        start: Some(-8),
        stop: None,
        step: None,
    }];
    assert_truncated(file.read_slice("w", &args).unwrap_err(), &path);
    std::fs::remove_file(path).unwrap();
}
