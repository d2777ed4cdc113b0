//! The streaming writer: bounded memory, refusal of incomplete or oversized
//! tensors, and atomic replacement of the destination.

mod common;

use common::pattern;
use safeweights::read::{Backend, OpenOptions, SafeTensors, SafetensorsFile};
use safeweights::slice::SliceArg;
use safeweights::write::{
    serialize, serialize_to_file, StreamingWriter, TensorRef, TensorSpec, WriteOptions,
};
use safeweights::{Dtype, Error};
use safeweights_testkit::files::listing;

fn specs() -> Vec<TensorSpec> {
    vec![
        TensorSpec::new("a", Dtype::F32, vec![4]),
        TensorSpec::new("b", Dtype::U8, vec![3]),
    ]
}

#[test]
fn streamed_file_equals_the_in_memory_serialization() {
    let a = pattern(16, 1);
    let b = pattern(3, 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    let planned: Vec<_> = writer
        .tensors()
        .iter()
        .map(|t| (t.name.clone(), t.begin, t.end))
        .collect();
    assert_eq!(planned, [("a".to_owned(), 0, 16), ("b".to_owned(), 16, 19)]);
    writer.write("b", &b).unwrap();
    writer.write("a", &a[..5]).unwrap();
    writer.write("a", &[]).unwrap();
    writer.write("a", &a[5..]).unwrap();
    assert!(
        !path.exists(),
        "nothing reaches the destination before finish"
    );
    writer.finish().unwrap();
    let expected = serialize(
        &[
            ("a", TensorRef::new(Dtype::F32, vec![4], &a)),
            ("b", TensorRef::new(Dtype::U8, vec![3], &b)),
        ],
        None,
        &WriteOptions::default(),
    )
    .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), expected);
    assert_eq!(listing(dir.path()), ["s.safetensors"]);
}

#[test]
fn finish_refuses_an_incomplete_tensor_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("a", &[0; 16]).unwrap();
    writer.write("b", &[0; 2]).unwrap();
    let error = writer.finish().unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidTensor { tensor, .. } if tensor == "b"),
        "{error:?}"
    );
    assert!(error.to_string().contains("2 of 3"), "{error}");
    assert!(!path.exists());
    assert!(listing(dir.path()).is_empty(), "temporary file removed");
}

#[test]
fn a_tensor_never_written_is_incomplete_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("b", &[1, 2, 3]).unwrap();
    let error = writer.finish().unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidTensor { tensor, .. } if tensor == "a"),
        "{error:?}"
    );
    assert!(!path.exists());
}

#[test]
fn write_refuses_too_many_bytes_without_losing_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("b", &[1, 2]).unwrap();
    let error = writer.write("b", &[3, 4]).unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidTensor { tensor, .. } if tensor == "b"),
        "{error:?}"
    );
    let error = writer.write("a", &[0; 17]).unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidTensor { tensor, .. } if tensor == "a"),
        "{error:?}"
    );
    // The refused writes changed nothing: the rest can still be written.
    writer.write("b", &[3]).unwrap();
    writer.write("a", &[9; 16]).unwrap();
    writer.finish().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let parsed = SafeTensors::parse(&bytes).unwrap();
    assert_eq!(parsed.tensor("b").unwrap().data(), &[1, 2, 3]);
    assert_eq!(parsed.tensor("a").unwrap().data(), &[9; 16]);
}

#[test]
fn write_to_an_undeclared_tensor_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    let error = writer.write("c", &[0]).unwrap_err();
    assert!(
        matches!(error.kind(), Error::TensorNotFound { name } if name == "c"),
        "{error:?}"
    );
}

#[test]
fn invalid_specs_are_refused_before_creating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let bad = [TensorSpec::new("q", Dtype::F4, vec![3])];
    let error = StreamingWriter::create(&path, &bad, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), Error::InvalidTensor { tensor, .. } if tensor == "q"),
        "{error:?}"
    );
    let duplicate = [
        TensorSpec::new("x", Dtype::U8, vec![1]),
        TensorSpec::new("x", Dtype::U8, vec![1]),
    ];
    let error =
        StreamingWriter::create(&path, &duplicate, None, &WriteOptions::default()).unwrap_err();
    assert!(
        matches!(error.kind(), Error::DuplicateTensorName { name } if name == "x"),
        "{error:?}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn a_dropped_writer_leaves_no_file_at_the_destination() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("a", &[0; 16]).unwrap();
    writer.write("b", &[0; 3]).unwrap();
    drop(writer);
    assert!(!path.exists());
    assert!(listing(dir.path()).is_empty(), "temporary file removed");
}

#[test]
fn an_unfinished_writer_leaves_an_existing_destination_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.safetensors");
    let old = pattern(4, 5);
    serialize_to_file(
        &[("old", TensorRef::new(Dtype::U8, vec![4], &old))],
        None,
        &path,
        &WriteOptions::default(),
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();

    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("a", &[1; 16]).unwrap();
    drop(writer);
    assert_eq!(std::fs::read(&path).unwrap(), before);

    let mut writer =
        StreamingWriter::create(&path, &specs(), None, &WriteOptions::default()).unwrap();
    writer.write("a", &[1; 16]).unwrap();
    assert!(writer.finish().is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(listing(dir.path()), ["s.safetensors"]);
}

#[test]
fn overwriting_a_mapped_file_is_safe_for_the_old_map() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let old = pattern(1 << 16, 1);
    let new = pattern(1 << 16, 2);
    let write = |data: &[u8]| {
        serialize_to_file(
            &[("w", TensorRef::new(Dtype::F32, vec![1 << 14], data))],
            None,
            &path,
            &WriteOptions::default(),
        )
        .unwrap()
    };
    write(&old);
    let mapped = SafetensorsFile::open(&path).unwrap();
    assert_eq!(mapped.backend(), Backend::Mmap);
    assert_eq!(&mapped.tensor_bytes("w").unwrap()[..], &old[..]);

    write(&new);
    assert_eq!(
        &mapped.tensor_bytes("w").unwrap()[..],
        &old[..],
        "the old map still sees the old file"
    );
    let reopened = SafetensorsFile::open(&path).unwrap();
    assert_eq!(&reopened.tensor_bytes("w").unwrap()[..], &new[..]);

    // The same through the streaming writer.
    let mut writer = StreamingWriter::create(
        &path,
        &[TensorSpec::new("w", Dtype::F32, vec![1 << 14])],
        None,
        &WriteOptions::default(),
    )
    .unwrap();
    writer.write("w", &old).unwrap();
    writer.finish().unwrap();
    assert_eq!(&reopened.tensor_bytes("w").unwrap()[..], &new[..]);
    assert_eq!(&mapped.tensor_bytes("w").unwrap()[..], &old[..]);
    assert_eq!(
        &SafetensorsFile::open(&path)
            .unwrap()
            .tensor_bytes("w")
            .unwrap()[..],
        &old[..]
    );
}

#[test]
fn streaming_a_file_with_no_tensors_writes_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.safetensors");
    let metadata = [("k".to_owned(), "v".to_owned())].into_iter().collect();
    StreamingWriter::create(&path, &[], Some(&metadata), &WriteOptions::default())
        .unwrap()
        .finish()
        .unwrap();
    let file = SafetensorsFile::open(&path).unwrap();
    assert!(file.header().is_empty());
    assert_eq!(file.header().metadata(), Some(&metadata));
}

#[test]
fn aligned_streamed_files_start_their_data_on_the_boundary() {
    for alignment in [64usize, 4096] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let options = WriteOptions {
            alignment,
            sync: true,
            ..WriteOptions::default()
        };
        let mut writer = StreamingWriter::create(&path, &specs(), None, &options).unwrap();
        writer.write("a", &[7; 16]).unwrap();
        writer.write("b", &[8; 3]).unwrap();
        writer.finish().unwrap();
        let file = SafetensorsFile::open(&path).unwrap();
        assert_eq!(file.header().data_start() % alignment as u64, 0);
        assert_eq!(&file.tensor_bytes("b").unwrap()[..], &[8; 3]);
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            safetensors::SafeTensors::deserialize(&bytes).is_ok(),
            "the reference reads it"
        );
    }
}

// ---- bounded memory ---------------------------------------------------------

const CHILD_ENV: &str = "SAFEWEIGHTS_STREAMING_RSS_DIR";
const TENSORS: usize = 4;
const TENSOR_BYTES: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

#[cfg(target_os = "linux")]
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Run in a child process (its own peak RSS) by the test below.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "helper: run in a child process by streaming_256mib_in_1mib_chunks_keeps_memory_bounded"]
fn child_streams_256mib() {
    let dir =
        std::path::PathBuf::from(std::env::var_os(CHILD_ENV).expect("run by the parent test"));
    let path = dir.join("big.safetensors");
    let specs: Vec<_> = (0..TENSORS)
        .map(|i| TensorSpec::new(format!("t{i}"), Dtype::U8, vec![TENSOR_BYTES]))
        .collect();
    let mut chunk = vec![0u8; CHUNK];
    let before = status_kib("VmRSS:");
    let mut writer =
        StreamingWriter::create(&path, &specs, None, &WriteOptions::default()).unwrap();
    for i in 0..TENSORS {
        for k in 0..TENSOR_BYTES / CHUNK {
            chunk[..8].copy_from_slice(&((i * 1000 + k) as u64).to_le_bytes());
            writer.write(&format!("t{i}"), &chunk).unwrap();
        }
    }
    writer.finish().unwrap();
    let peak = status_kib("VmHWM:");
    println!("\nRSS_GROWTH_KIB={}", peak.saturating_sub(before));
}

#[cfg(target_os = "linux")]
#[test]
fn streaming_256mib_in_1mib_chunks_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_streams_256mib",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let growth_kib: u64 = stdout
        .lines()
        .find_map(|l| l.split("RSS_GROWTH_KIB=").nth(1))
        .expect("child printed its RSS growth")
        .parse()
        .unwrap();
    assert!(
        growth_kib < 64 * 1024,
        "peak RSS grew by {growth_kib} KiB while streaming 256 MiB"
    );

    let path = dir.path().join("big.safetensors");
    let file = SafetensorsFile::open_with(
        &path,
        &OpenOptions {
            backend: Backend::Pread,
            ..OpenOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        file.header().data_start() + (TENSORS * TENSOR_BYTES) as u64
    );
    for (i, k) in [(0, 0), (1, 17), (3, 63)] {
        let start = (k * CHUNK) as i64;
        let (_, bytes) = file
            .read_slice(
                &format!("t{i}"),
                &[SliceArg::Range {
                    start: Some(start),
                    stop: Some(start + 8),
                    step: None,
                }],
            )
            .unwrap();
        assert_eq!(bytes, ((i * 1000 + k) as u64).to_le_bytes());
    }
}
