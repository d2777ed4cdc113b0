//! Reading files: the mmap and pread backends agree, buffers are checked,
//! and large batched reads (the parallel path) are correct.

mod common;

use std::path::Path;

use common::pattern;
use safeweights::read::{Backend, OpenOptions, SafetensorsFile};
use safeweights::write::{serialize_to_file, TensorRef, WriteOptions};
use safeweights::{Dtype, Error};

fn open(path: &Path, backend: Backend) -> SafetensorsFile {
    SafetensorsFile::open_with(
        path,
        &OpenOptions {
            backend,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

/// Fast enough in debug builds for tens of megabytes.
fn big_pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Name, dtype, shape and bytes of each tensor.
type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

fn sample_file(dir: &Path) -> (std::path::PathBuf, Tensors) {
    let mut tensors = Vec::new();
    for (i, dtype) in Dtype::ALL.into_iter().enumerate() {
        let shape = vec![3, 4 * (i % 3) + 4];
        let len = dtype.bytes_for(shape.iter().product()).unwrap();
        tensors.push((
            format!("t{i}.{dtype}"),
            dtype,
            shape,
            pattern(len, i as u64),
        ));
    }
    tensors.push(("empty".into(), Dtype::F32, vec![0], vec![]));
    tensors.push(("scalar".into(), Dtype::I64, vec![], pattern(8, 77)));
    let refs: Vec<_> = tensors
        .iter()
        .map(|(n, d, s, data)| (n.as_str(), TensorRef::new(*d, s.clone(), data)))
        .collect();
    let path = dir.join("sample.safetensors");
    serialize_to_file(&refs, None, &path, &WriteOptions::default()).unwrap();
    (path, tensors)
}

#[test]
fn mmap_and_pread_backends_give_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tensors) = sample_file(dir.path());
    let mapped = open(&path, Backend::Mmap);
    let pread = open(&path, Backend::Pread);
    assert_eq!(mapped.backend(), Backend::Mmap);
    assert_eq!(pread.backend(), Backend::Pread);
    assert!(mapped.header().tensors().eq(pread.header().tensors()));
    assert_eq!(mapped.header().data_start(), pread.header().data_start());
    for (name, dtype, shape, data) in &tensors {
        for file in [&mapped, &pread] {
            let info = file.info(name).unwrap();
            assert_eq!((info.dtype, info.shape), (*dtype, &shape[..]));
            assert_eq!(&file.tensor_bytes(name).unwrap()[..], &data[..], "{name}");
            let mut buffer = vec![0xEE; data.len()];
            file.read_into(name, &mut buffer).unwrap();
            assert_eq!(&buffer, data, "{name}");
        }
        assert_eq!(mapped.view(name).unwrap().unwrap().data(), &data[..]);
        assert!(pread.view(name).unwrap().is_none());
    }
    assert!(mapped
        .mapped_bytes()
        .is_some_and(|b| b.len() as u64 == std::fs::metadata(&path).unwrap().len()));
    assert!(pread.mapped_bytes().is_none());
}

#[test]
fn buffers_of_the_wrong_size_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = sample_file(dir.path());
    for backend in [Backend::Mmap, Backend::Pread] {
        let file = open(&path, backend);
        let mut small = vec![0u8; 3];
        let error = file.read_into("scalar", &mut small).unwrap_err();
        assert!(
            matches!(error.kind(), Error::BufferSize { tensor, expected: 8, actual: 3 } if tensor == "scalar"),
            "{error:?}"
        );
        let mut requests = [("scalar", &mut small[..])];
        let error = file.read_many_into(&mut requests).unwrap_err();
        assert!(
            matches!(error.kind(), Error::BufferSize { .. }),
            "{error:?}"
        );
        let mut buffer = [0u8; 1];
        let error = file.read_into("absent", &mut buffer).unwrap_err();
        assert!(
            matches!(error.kind(), Error::TensorNotFound { name } if name == "absent"),
            "{error:?}"
        );
        assert_eq!(error.path(), Some(path.as_path()));
    }
}

#[test]
fn read_many_into_is_correct_on_the_parallel_path() {
    // Over the 32 MiB threshold, with tensors larger than the 16 MiB pieces.
    let dir = tempfile::tempdir().unwrap();
    let sizes = [20 << 20, 9 << 20, 5 << 20, 1, 0, 3 << 20];
    let data: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| big_pattern(n, i as u64 + 1))
        .collect();
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("w{i}")).collect();
    let refs: Vec<_> = names
        .iter()
        .zip(&data)
        .map(|(n, d)| (n.as_str(), TensorRef::new(Dtype::U8, vec![d.len()], d)))
        .collect();
    let path = dir.path().join("big.safetensors");
    serialize_to_file(&refs, None, &path, &WriteOptions::default()).unwrap();
    assert!(sizes.iter().sum::<usize>() > 32 << 20);
    for backend in [Backend::Mmap, Backend::Pread] {
        let file = open(&path, backend);
        let mut buffers: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0xEE; n]).collect();
        // Ask in an order unrelated to the file's.
        let order = [3, 0, 5, 2, 4, 1];
        let mut slots: Vec<Option<&mut Vec<u8>>> = buffers.iter_mut().map(Some).collect();
        let mut requests: Vec<(&str, &mut [u8])> = order
            .iter()
            .map(|&i| (names[i].as_str(), &mut slots[i].take().unwrap()[..]))
            .collect();
        file.read_many_into(&mut requests).unwrap();
        for (i, buffer) in buffers.iter().enumerate() {
            assert!(buffer == &data[i], "{backend:?}: tensor {i} differs");
        }
    }
}

#[test]
fn missing_and_tiny_files_report_a_clear_error_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.safetensors");
    let tiny = dir.path().join("tiny.safetensors");
    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&tiny, [1, 2, 3]).unwrap();
    std::fs::write(&empty, []).unwrap();
    for backend in [Backend::Mmap, Backend::Pread] {
        let options = OpenOptions {
            backend,
            ..OpenOptions::default()
        };
        let error = SafetensorsFile::open_with(&missing, &options).unwrap_err();
        assert!(
            matches!(error.kind(), Error::Io(e) if e.kind() == std::io::ErrorKind::NotFound),
            "{error:?}"
        );
        assert_eq!(error.path(), Some(missing.as_path()));
        assert!(!error.is_invalid_data());
        for (path, len) in [(&tiny, 3), (&empty, 0)] {
            let error = SafetensorsFile::open_with(path, &options).unwrap_err();
            assert!(
                matches!(error.kind(), Error::FileTooSmall { len: l } if *l == len),
                "{error:?}"
            );
            assert!(error.is_invalid_data());
            assert!(
                error.to_string().contains(&*path.to_string_lossy()),
                "{error}"
            );
        }
    }
}

#[test]
fn pread_reports_a_file_truncated_after_opening() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tensors) = sample_file(dir.path());
    let file = open(&path, Backend::Pread);
    let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    handle.set_len(file.header().data_start() + 4).unwrap();
    let (name, ..) = tensors.iter().find(|t| t.3.len() > 64).unwrap();
    let error = file.tensor_bytes(name).unwrap_err();
    assert!(
        matches!(error.kind(), Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{error:?}"
    );
    assert_eq!(error.path(), Some(path.as_path()));
}

#[test]
fn a_larger_header_limit_opens_a_file_the_default_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (path, tensors) = sample_file(dir.path());
    let header_len = open(&path, Backend::Pread).header().header_len();
    for backend in [Backend::Mmap, Backend::Pread] {
        let tight = OpenOptions {
            backend,
            limits: safeweights::HeaderLimits {
                max_header_size: header_len - 1,
            },
        };
        let error = SafetensorsFile::open_with(&path, &tight).unwrap_err();
        assert!(
            matches!(error.kind(), Error::HeaderTooLarge { .. }),
            "{error:?}"
        );
        let enough = OpenOptions {
            backend,
            limits: safeweights::HeaderLimits {
                max_header_size: header_len,
            },
        };
        assert_eq!(
            SafetensorsFile::open_with(&path, &enough)
                .unwrap()
                .header()
                .len(),
            tensors.len()
        );
    }
}
